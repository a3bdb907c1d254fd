// GitHub's rate limits, as the twin enforces them (docs: "Rate limits for the REST API").
//
// - Primary: requests an hour per identity (an installation 5,000; the app itself with its JWT
//   5,000; a personal token 5,000; anonymous 60), in a fixed hourly window, announced on every
//   answer by the x-ratelimit-* headers. Past it: 403 "API rate limit exceeded" with
//   x-ratelimit-remaining 0 and the reset time.
// - Secondary: content-generating requests, at most 80 a minute and 500 an hour per identity,
//   and at most 100 requests in flight at once. GitHub does not say which endpoints generate
//   content; the twin counts every request that is not GET or HEAD (a POST that only reads, such
//   as creating an installation token, counts too: the conservative reading). Past them: 403 or
//   429 (GitHub uses both) with a message that names the secondary rate limit, and a
//   `retry-after` header giving the seconds until the window has room again; `retryAfter: false`
//   answers without it, as GitHub sometimes does (clients then wait a minute).
// - A storm: for a while every request of an identity gets the secondary answer, whatever the
//   counts say, to test a client's backoff.
//
// A limited request is not counted (it did not generate content), and not carried out.

export interface TwinLimits {
  /** Primary limit: requests an hour per identity (anonymous: 60). */
  primaryPerHour: number;
  /** Secondary: content-generating requests a minute, and an hour, per identity. */
  writesPerMinute: number;
  writesPerHour: number;
  /** Secondary: requests in flight at once. */
  concurrent: number;
  /** How a secondary limit answers: 403 or 429. */
  secondaryStatus: 403 | 429;
  /** Whether a secondary answer carries retry-after (seconds). */
  retryAfter: boolean;
}

/** GitHub.com's documented limits. */
export const GITHUB_LIMITS: TwinLimits = Object.freeze({
  primaryPerHour: 5000,
  writesPerMinute: 80,
  writesPerHour: 500,
  concurrent: 100,
  secondaryStatus: 403,
  retryAfter: true,
});

export const SECONDARY_MESSAGE =
  "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.";

export interface LimitAnswer {
  status: 403 | 429;
  message: string;
  headers: Record<string, string>;
  kind: "primary" | "secondary" | "concurrent" | "storm";
}

/** One answer the limits gave instead of carrying a request out. */
export interface LimitEvent {
  identity: string;
  method: string;
  path: string;
  kind: LimitAnswer["kind"];
  status: number;
  /** The retry-after it announced (seconds), or null when it sent none. */
  retryAfter: number | null;
  /** When (ms since the epoch, the twin's clock). */
  at: number;
}

interface Storm {
  until: number;
  status: 403 | 429;
  retryAfter: boolean;
  identity: string | null;
}

const HOUR = 3_600_000;
const MINUTE = 60_000;

export class RateLimiter {
  private readonly primary = new Map<string, { windowStart: number; used: number }>();
  private readonly writes = new Map<string, number[]>();
  private storms: Storm[] = [];
  private inFlight = 0;
  /** Every request the limits refused, in order. */
  readonly events: LimitEvent[] = [];

  constructor(
    readonly limits: TwinLimits,
    private readonly now: () => number,
  ) {}

  /**
   * Every request of `identity` (or of every identity) gets the secondary answer until
   * `durationMs` from now; with `retryAfter` (the default) its retry-after is the seconds left of
   * the storm, without it there is no header.
   */
  storm(opts: { durationMs: number; status?: 403 | 429; retryAfter?: boolean; identity?: string | null }): void {
    this.storms.push({
      until: this.now() + opts.durationMs,
      status: opts.status ?? 429,
      retryAfter: opts.retryAfter ?? true,
      identity: opts.identity ?? null,
    });
  }

  /** A request starts: in flight until `done()`. */
  enter(): void {
    this.inFlight++;
  }

  done(): void {
    this.inFlight--;
  }

  /**
   * Admit one request of `identity` (write: content-generating). Returns the rate-limit headers
   * to send with its answer, or the limit's answer instead of carrying it out.
   */
  admit(identity: string, method: string, path: string, write: boolean): { headers: Record<string, string> } | LimitAnswer {
    const now = this.now();
    const limit = identity === "anonymous" ? 60 : this.limits.primaryPerHour;
    let bucket = this.primary.get(identity);
    if (!bucket || now - bucket.windowStart >= HOUR) {
      bucket = { windowStart: now, used: 0 };
      this.primary.set(identity, bucket);
    }
    const reset = Math.ceil((bucket.windowStart + HOUR) / 1000);
    const headers = (used: number) => ({
      "x-ratelimit-limit": String(limit),
      "x-ratelimit-remaining": String(Math.max(0, limit - used)),
      "x-ratelimit-used": String(used),
      "x-ratelimit-reset": String(reset),
      "x-ratelimit-resource": "core",
    });
    const refuse = (answer: LimitAnswer): LimitAnswer => {
      const retry = answer.headers["retry-after"];
      this.events.push({ identity, method, path, kind: answer.kind, status: answer.status, retryAfter: retry === undefined ? null : Number(retry), at: now });
      return answer;
    };
    const secondary = (kind: LimitAnswer["kind"], status: 403 | 429, retryAfter: number | null): LimitAnswer =>
      refuse({
        status,
        message: SECONDARY_MESSAGE,
        kind,
        headers: { ...headers(bucket!.used), ...(retryAfter === null ? {} : { "retry-after": String(Math.max(1, retryAfter)) }) },
      });

    this.storms = this.storms.filter((s) => s.until > now);
    const storm = this.storms.find((s) => s.identity === null || s.identity === identity);
    if (storm) {
      const left = storm.retryAfter ? Math.max(1, Math.ceil((storm.until - now) / 1000)) : null;
      return secondary("storm", storm.status, left);
    }
    if (bucket.used >= limit) {
      return refuse({
        status: 403,
        message: `API rate limit exceeded for ${identity}.`,
        kind: "primary",
        headers: headers(bucket.used),
      });
    }
    if (this.inFlight > this.limits.concurrent) {
      return secondary("concurrent", this.limits.secondaryStatus, this.limits.retryAfter ? 1 : null);
    }
    if (write) {
      const times = (this.writes.get(identity) ?? []).filter((t) => now - t < HOUR);
      this.writes.set(identity, times);
      const lastMinute = times.filter((t) => now - t < MINUTE);
      let freeAt: number | null = null;
      if (lastMinute.length >= this.limits.writesPerMinute) freeAt = lastMinute[lastMinute.length - this.limits.writesPerMinute]! + MINUTE;
      if (times.length >= this.limits.writesPerHour) freeAt = Math.max(freeAt ?? 0, times[times.length - this.limits.writesPerHour]! + HOUR);
      if (freeAt !== null) {
        return secondary("secondary", this.limits.secondaryStatus, this.limits.retryAfter ? Math.ceil((freeAt - now) / 1000) : null);
      }
      times.push(now);
    }
    bucket.used++;
    return { headers: headers(bucket.used) };
  }
}

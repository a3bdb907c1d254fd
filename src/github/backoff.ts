// Backing off when GitHub says so. Past a secondary rate limit GitHub answers 403 or 429,
// usually with `retry-after` (seconds), and warns that a client that keeps sending may be
// banned; past the primary limit it answers 403 with `x-ratelimit-remaining: 0` and the reset
// time. Probot's throttling plugin only logs a secondary limit, its retry plugin sends a 429
// again, and a 403 fails its call (the next pass sends it again); meanwhile the bot's other
// requests would still go out. So every HTTP attempt of an installation's client
// passes one gate: a refusal closes it until the time GitHub named (a minute when it named
// none), and nothing of that installation is sent before it opens again. Requests already on
// the wire when the refusal arrived cannot be called back; nothing starts after it.

import { isBudgetedWrite, type WriteBudget } from "./budget.js";

/** Seconds to wait after a secondary-limit answer without retry-after (GitHub's guidance: a minute). */
export const DEFAULT_RETRY_AFTER_SECONDS = 60;

export interface GateEvent {
  /** When the gate closed (ms since the epoch) and until when. */
  at: number;
  until: number;
  status: number;
  kind: "secondary" | "primary";
}

/** One installation's gate. */
export class BackoffGate {
  private openAt = 0;
  /** Every time it closed, for logs and the morning report. */
  readonly events: GateEvent[] = [];

  constructor(
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
    private readonly onClose?: (e: GateEvent) => void,
  ) {}

  /** Resolves once requests may go out. */
  async wait(): Promise<void> {
    for (;;) {
      const left = this.openAt - this.now();
      if (left <= 0) return;
      await this.sleep(left);
    }
  }

  /** Closed until `until` (never shortened by a later, shorter answer). */
  close(until: number, status: number, kind: GateEvent["kind"]): void {
    if (until <= this.openAt) return;
    this.openAt = until;
    const e = { at: this.now(), until, status, kind };
    this.events.push(e);
    this.onClose?.(e);
  }

  /** Close the gate when a response is a rate-limit refusal (a 403 for missing access is not). */
  async observe(res: Response): Promise<void> {
    if (res.status !== 403 && res.status !== 429) return;
    const retryAfter = res.headers.get("retry-after");
    const remaining = res.headers.get("x-ratelimit-remaining");
    const reset = Number(res.headers.get("x-ratelimit-reset"));
    const text = retryAfter === null ? await res.clone().text().catch(() => "") : "";
    if (retryAfter !== null || /secondary rate limit/i.test(text)) {
      const seconds = Number(retryAfter);
      const wait = retryAfter !== null && Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_RETRY_AFTER_SECONDS;
      this.close(this.now() + wait * 1000, res.status, "secondary");
    } else if (remaining === "0" && Number.isFinite(reset) && reset > 0) {
      this.close(reset * 1000 + 1000, res.status, "primary");
    } else if (res.status === 429) {
      this.close(this.now() + DEFAULT_RETRY_AFTER_SECONDS * 1000, res.status, "secondary");
    }
  }

  /** A fetch for Octokit's `request.fetch`: every attempt waits at the gate and is observed. */
  fetch(inner: typeof fetch = globalThis.fetch, timeoutMs?: number, budget?: WriteBudget): typeof fetch {
    return async (input, init) => {
      // A write first takes its place in the installation's budget (src/github/budget.ts).
      const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
      if (budget && isBudgetedWrite(init?.method ?? (input instanceof Request ? input.method : "GET"), url)) await budget.acquire();
      await this.wait();
      // The deadline counts from the attempt, not from a wait at the gate.
      const signals = [init?.signal, timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined].filter((s): s is AbortSignal => !!s);
      const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
      const res = await inner(input, { ...init, ...(signal ? { signal } : {}) });
      await this.observe(res);
      return res;
    };
  }
}

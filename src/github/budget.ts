// The installation's write budget. GitHub allows at most 80 content-generating requests a
// minute and 500 an hour (secondary rate limits; it does not say which endpoints count, so
// every request that is not a read counts here), and may ban an integration that keeps going
// past them. Every write of the installation takes a place in both windows first and waits
// when there is none, so the bot never sends past the budget, however many repositories and
// slots share it. Reconcile asks how much is left before it starts work that can wait (branch
// clean-up, the morning report) and before it proposes another experiment.

export interface WriteLimits {
  perMinute: number;
  perHour: number;
}

/** GitHub.com's documented secondary limits; GitHub Enterprise Server sets its own. */
export const GITHUB_WRITE_LIMITS: WriteLimits = { perMinute: 80, perHour: 500 };

const MINUTE = 60_000;
const HOUR = 3_600_000;
/** How long the hourly figures are kept (a night and a day) for the morning report. */
const KEEP_HOURS = 48;

/** What reconcile sees of the budget. */
export interface WriteBudgetView {
  readonly limits: WriteLimits;
  /** Writes that may still go out now: in the minute window and in the hour window. */
  left(): { minute: number; hour: number };
  /** When (ms since the epoch) `n` more writes fit the hour window. */
  fitsAt(n: number): number;
  /** Record that new experiments were held back because the budget could not carry them. */
  heldBack(): void;
  /** Writes made and hold-backs between two times (whole hours, as far as they are known). */
  usage(from: number, to: number): { writes: number; peakHour: number; heldBack: number; since: number };
}

export class WriteBudget implements WriteBudgetView {
  /** Times of the writes of the last hour, oldest first. */
  private recent: number[] = [];
  /** Writes and hold-backs per hour (start of the hour → counts). */
  private hours = new Map<number, { writes: number; heldBack: number }>();
  private readonly started: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly limits: WriteLimits = GITHUB_WRITE_LIMITS,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.started = now();
  }

  private trim(t: number): void {
    while (this.recent.length && this.recent[0]! <= t - HOUR) this.recent.shift();
  }

  left(): { minute: number; hour: number } {
    const t = this.now();
    this.trim(t);
    const minute = this.recent.filter((x) => x > t - MINUTE).length;
    return { minute: Math.max(0, this.limits.perMinute - minute), hour: Math.max(0, this.limits.perHour - this.recent.length) };
  }

  fitsAt(n: number): number {
    const t = this.now();
    this.trim(t);
    const over = this.recent.length + n - this.limits.perHour;
    if (over <= 0) return t;
    const freed = this.recent[Math.min(over, this.recent.length) - 1];
    return freed === undefined ? t : freed + HOUR;
  }

  /** How long the next write must wait (0: it may go now). */
  private waitMs(): number {
    const t = this.now();
    this.trim(t);
    let wait = 0;
    if (this.recent.length >= this.limits.perHour) wait = this.recent[this.recent.length - this.limits.perHour]! + HOUR - t;
    const inMinute = this.recent.filter((x) => x > t - MINUTE);
    if (inMinute.length >= this.limits.perMinute) wait = Math.max(wait, inMinute[inMinute.length - this.limits.perMinute]! + MINUTE - t);
    return Math.max(0, wait);
  }

  /** Take a place for one write, waiting (in order of arrival) until there is one. */
  acquire(): Promise<void> {
    const turn = this.queue.then(async () => {
      for (let w = this.waitMs(); w > 0; w = this.waitMs()) await this.sleep(w);
      const t = this.now();
      this.recent.push(t);
      this.bump(t, "writes");
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  heldBack(): void {
    this.bump(this.now(), "heldBack");
  }

  private bump(t: number, what: "writes" | "heldBack"): void {
    const hour = Math.floor(t / HOUR) * HOUR;
    const h = this.hours.get(hour) ?? { writes: 0, heldBack: 0 };
    h[what] += 1;
    this.hours.set(hour, h);
    for (const k of this.hours.keys()) if (k < hour - KEEP_HOURS * HOUR) this.hours.delete(k);
  }

  usage(from: number, to: number): { writes: number; peakHour: number; heldBack: number; since: number } {
    let writes = 0;
    let heldBack = 0;
    let peakHour = 0;
    for (const [hour, h] of this.hours) {
      if (hour + HOUR <= from || hour > to) continue;
      writes += h.writes;
      heldBack += h.heldBack;
      peakHour = Math.max(peakHour, h.writes);
    }
    return { writes, peakHour, heldBack, since: this.started };
  }
}

/** A request that counts against the write budget: anything but a read, except minting a token. */
export function isBudgetedWrite(method: string, url: string): boolean {
  const m = method.toUpperCase();
  if (m === "GET" || m === "HEAD") return false;
  // Minting an installation token (the narrowed token a run downloads with) is the app's own
  // request, authenticated as the app; it creates no content in a repository.
  return !/\/app\/installations\/\d+\/access_tokens$/.test(new URL(url, "http://x").pathname);
}

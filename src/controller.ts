// Schedules reconcile passes: at most one pass per repository at a time, coalescing the
// triggers that arrive meanwhile (webhooks, runs ending, the resync timer) into one more
// pass, and at most `maxConcurrentPasses` passes at once over all repositories (a resync of a
// large installation must not open hundreds of passes against GitHub together). A failed pass
// is retried with jittered backoff, so that repositories failing together (GitHub down) do not
// come back in step; the resync timer covers missed webhooks.
import type { Config } from "./config.js";
import { newHousekeeping, reconcile, type Housekeeping, type Logger, type ReconcileDeps, type ReconcileReport } from "./reconcile/index.js";
import { systemClock, type Clock } from "./log.js";
import { COMMAND_LOOKBACK_MS, handleClick, steer, type Answerer, type Click } from "./steering/index.js";
import type { GitHubPort, ProposerPort, RepoRef, RunnerPort } from "./types.js";

export interface ControllerOptions {
  runner: RunnerPort;
  /** GitHub port for a repo of an installation. */
  github(installationId: number, repo: RepoRef): Promise<GitHubPort>;
  /** Every (installation, repo) the app can see; used by the resync timer. */
  listRepos(): Promise<{ installationId: number; repo: RepoRef }[]>;
  proposerFor(config: Config): ProposerPort;
  env?: Record<string, string | undefined>;
  log: Logger;
  /** Full resync period (GitHub does not redeliver missed webhooks). */
  resyncMs?: number;
  now?: Clock;
  /** Passes running at once over all repositories (default 4). */
  maxConcurrentPasses?: number;
  /** A number in [0, 1) for the backoff's jitter (default Math.random). */
  random?: () => number;
  /** Called after every pass (the demo prints progress from it). */
  onPass?(repo: RepoRef, report: ReconcileReport, ms: number): void;
  /**
   * Whether this process leads (src/leader/): a follower drops its triggers and stops a pass
   * loop at once (the leader's passes see the same state). Absent: always.
   */
  isLeader?: () => boolean;
  /** Read comments (commands, reviewer notes) before each pass; without it comments are not read. */
  steering?: {
    /** The app's slug (mentions of @slug are questions; `<slug>[bot]` is the bot's login). */
    appSlug(): Promise<string | null>;
    answer: Answerer | null;
  };
  /** The pass itself (default: reconcile); the scheduling's tests replace it to script reports. */
  reconcile?(deps: ReconcileDeps): Promise<ReconcileReport>;
}

interface RepoState {
  installationId: number;
  repo: RepoRef;
  running: Promise<void> | null;
  dirty: boolean;
  failures: number;
  retryTimer: NodeJS.Timeout | null;
  /** Comments before this time were read already (a restart reads the whole lookback again). */
  steeredAt: string | null;
  passes: number;
  /** Check-run button clicks to carry out before the next pass (under this repo's lock). */
  clicks: { click: Click; tries: number }[];
  /** Comments must be read before the next pass (a comment webhook, the resync, the first pass). */
  steerDue: boolean;
  /** A pass asked to run again at a time (the write budget): its timer. */
  wakeTimer: NodeJS.Timeout | null;
  house: Housekeeping;
}

/** A click that fails (GitHub down) is tried again this often, then given up with a log line. */
const CLICK_TRIES = 3;

const key = (r: RepoRef) => `${r.owner}/${r.repo}`.toLowerCase();

/** At most `size` holders at a time; the others wait in arrival order. */
class Slots {
  private held = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly size: number) {}

  async acquire(): Promise<void> {
    if (this.held < this.size) {
      this.held++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight to the next waiter
    else this.held--;
  }
}

export class Controller {
  private readonly repos = new Map<string, RepoState>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly slots: Slots;
  private readonly now: Clock;

  constructor(private readonly opts: ControllerOptions) {
    this.slots = new Slots(Math.max(1, opts.maxConcurrentPasses ?? 4));
    this.now = opts.now ?? systemClock;
    const wake = (repo: RepoRef) => {
      const s = this.repos.get(key(repo));
      if (s) this.trigger(s.installationId, repo);
      else void this.resync();
    };
    opts.runner.onFinished((_runId, repo) => wake(repo));
    // A pass that waited on the runner (a full disk) goes on as soon as it can, not at the resync.
    opts.runner.onReady?.(wake);
  }

  private leads(): boolean {
    return this.opts.isLeader?.() ?? true;
  }

  /** Ask for a pass on this repo soon; returns at once (webhook handlers must answer fast). */
  trigger(installationId: number, repo: RepoRef, opts: { steer?: boolean } = {}): void {
    if (this.stopped || !this.leads()) return;
    let s = this.repos.get(key(repo));
    if (!s) {
      s = {
        installationId, repo, running: null, dirty: false, failures: 0, retryTimer: null, steeredAt: null, passes: 0, clicks: [],
        steerDue: true, wakeTimer: null, house: newHousekeeping(),
      };
      this.repos.set(key(repo), s);
    }
    s.installationId = installationId;
    if (opts.steer) s.steerDue = true;
    if (s.running) {
      s.dirty = true;
      return;
    }
    s.running = this.loop(s).finally(() => {
      s.running = null;
    });
  }

  /**
   * Carry out a check-run button click before this repository's next pass: passes and clicks
   * on one repository never interleave, so a click cannot lose a pass's record update (or the
   * other way round).
   */
  click(installationId: number, repo: RepoRef, click: Click): void {
    if (this.stopped || !this.leads()) return; // the leader got the same webhook, or GitHub's redelivery
    this.trigger(installationId, repo);
    const s = this.repos.get(key(repo))!;
    s.clicks.push({ click, tries: 0 });
    s.dirty = true;
  }

  private async runClicks(s: RepoState, gh: GitHubPort): Promise<void> {
    for (const item of s.clicks.splice(0)) {
      try {
        await handleClick(gh, item.click, this.opts.log, this.now);
      } catch (err) {
        item.tries += 1;
        const msg = `${key(s.repo)}: the ${item.click.command} click by ${item.click.user} failed: ${(err as Error).message}`;
        if (item.tries < CLICK_TRIES) {
          this.opts.log.warn(`${msg} (tried again with the next pass)`);
          s.clicks.push(item);
        } else this.opts.log.error(`${msg}; given up after ${CLICK_TRIES} tries (click again)`);
      }
    }
  }

  private async loop(s: RepoState): Promise<void> {
    do {
      s.dirty = false;
      if (!this.leads()) return;
      await this.slots.acquire();
      try {
        await this.pass(s);
      } finally {
        this.slots.release();
      }
    } while (s.dirty && !this.stopped);
  }

  /** One pass on a repository: its clicks, its comments when due, then reconcile. */
  private async pass(s: RepoState): Promise<void> {
    try {
      const gh = await this.opts.github(s.installationId, s.repo);
      await this.runClicks(s, gh);
      // Reading comments costs two requests or more: only when one was written (its webhook),
      // on the resync and on the first pass (comments written while the bot was down).
      if (this.opts.steering && s.steerDue) {
        s.steerDue = false;
        const started = this.now();
        const slug = await this.opts.steering.appSlug();
        try {
          await steer({
            gh,
            since: s.steeredAt ?? new Date(started.getTime() - COMMAND_LOOKBACK_MS).toISOString(),
            appSlug: slug,
            botLogin: slug ? `${slug}[bot]` : null,
            answer: this.opts.steering.answer,
            log: this.opts.log,
            now: this.now,
          });
          // A minute of overlap: a comment written while the last listing ran is not missed.
          s.steeredAt = new Date(started.getTime() - 60_000).toISOString();
        } catch (err) {
          s.steerDue = true;
          this.opts.log.error(`${key(s.repo)}: reading comments failed: ${(err as Error).message} (retried on the next pass)`);
        }
      }
      const firstPass = s.passes++ === 0;
      const passStarted = Date.now();
      const report = await (this.opts.reconcile ?? reconcile)({
        firstPass,
        house: s.house,
        gh,
        runner: this.opts.runner,
        proposerFor: this.opts.proposerFor,
        env: this.opts.env,
        now: this.now,
        log: this.opts.log,
      });
      this.opts.onPass?.(s.repo, report, Date.now() - passStarted);
      s.failures = report.errors.length ? s.failures + 1 : 0;
      if (report.again) s.dirty = true;
      else if (report.errors.length) this.retryLater(s);
      if (report.retryAt !== undefined) this.wakeAt(s, report.retryAt);
    } catch (err) {
      s.failures += 1;
      this.opts.log.error(`${key(s.repo)}: reconcile failed: ${(err as Error).message}`);
      this.retryLater(s);
    }
  }

  /** Run a pass at `at` (ms since the epoch), unless one is set for earlier. */
  private wakeAt(s: RepoState, at: number): void {
    if (this.stopped) return;
    if (s.wakeTimer) clearTimeout(s.wakeTimer);
    s.wakeTimer = setTimeout(() => {
      s.wakeTimer = null;
      this.trigger(s.installationId, s.repo);
    }, Math.max(1000, at - Date.now()));
    s.wakeTimer.unref();
  }

  private retryLater(s: RepoState): void {
    if (s.retryTimer || this.stopped) return;
    // About 5 s, 10 s, 20 s … capped at the resync period; each between half and all of that.
    const cap = Math.min(5000 * 2 ** Math.min(Math.max(0, s.failures - 1), 10), this.opts.resyncMs ?? 300_000);
    const delay = Math.round(cap / 2 + (cap / 2) * (this.opts.random ?? Math.random)());
    s.retryTimer = setTimeout(() => {
      s.retryTimer = null;
      this.trigger(s.installationId, s.repo);
    }, delay);
    s.retryTimer.unref();
  }

  /** Trigger a pass on every repository of every installation. */
  async resync(): Promise<void> {
    // A follower lists nothing: its passes would be dropped, and the leader's resync covers them
    // (a bot that becomes leader resyncs at once).
    if (this.stopped || !this.leads()) return;
    try {
      for (const { installationId, repo } of await this.opts.listRepos()) this.trigger(installationId, repo, { steer: true });
    } catch (err) {
      this.opts.log.error(`resync failed: ${(err as Error).message}`);
    }
  }

  start(): void {
    void this.resync();
    this.timer = setInterval(() => void this.resync(), this.opts.resyncMs ?? 300_000);
    this.timer.unref();
  }

  /** Resolves when no pass is running or pending. */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [...this.repos.values()].map((s) => s.running).filter((p): p is Promise<void> => p !== null);
      if (!busy.length) return;
      await Promise.all(busy);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const s of this.repos.values()) {
      if (s.retryTimer) clearTimeout(s.retryTimer);
      if (s.wakeTimer) clearTimeout(s.wakeTimer);
    }
    await this.idle();
  }
}

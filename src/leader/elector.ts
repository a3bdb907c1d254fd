// Leader election: when two bot processes serve the same installations, only one of them, the
// leader, runs reconcile passes and writes to GitHub or the runner. Passes are level-triggered,
// so a follower simply drops the triggers it gets (webhooks may arrive at either): the leader's
// own passes and its resync see the same state.
//
// Holding is bounded in time on both sides, so that two leaders never overlap:
//   - the leader renews every `renewMs`; it steps down (no pass starts, every write is refused)
//     the moment a renewal fails or finds the lock taken, and in any case `holdMs` after the
//     last renewal was *sent* (holdMs < durationMs: before anyone else may take over);
//   - a candidate takes over only after it has seen the same record, unrenewed, for
//     `durationMs` by its own clock, counted from when it *read* it (after it was written).
// Implementations: a Kubernetes Lease (./lease.ts) and a lock file (./lockfile.ts).
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import type { Logger } from "../log.js";

/** What the election says: the bot's logger (src/log.ts), of which it uses info and warn. */
export type LeaderLogger = Pick<Logger, "info" | "warn">;

export interface LeaderElector {
  /** Who this process is in the lock (host, pid and a random part). */
  readonly identity: string;
  /** What holds the leadership, in words (a Lease and its namespace, a lock file). */
  readonly describe: string;
  /** May this process run passes and write now? Checked before every pass and every write. */
  isLeader(): boolean;
  /** Called when this process becomes leader (true) or steps down (false). */
  onChange(listener: (leader: boolean) => void): void;
  start(): void;
  /** Step down, give the lock up for the next one (unless `release` is false: a hung bot's), and stop trying. */
  stop(release?: boolean): Promise<void>;
}

export interface Timing {
  /** How long a holder that stopped renewing keeps others out; default 15 s. */
  durationMs: number;
  /** How often the leader renews; default durationMs / 3. */
  renewMs: number;
  /** How long after a renewal was sent the leader stops writing without a newer one; default 2/3 of durationMs. */
  holdMs: number;
  /** How often a follower looks whether it may take over; default renewMs. */
  retryMs: number;
}

export function timing(durationMs = 15_000, over: Partial<Timing> = {}): Timing {
  const renewMs = over.renewMs ?? Math.floor(durationMs / 3);
  const t = { durationMs, renewMs, holdMs: over.holdMs ?? Math.floor((durationMs * 2) / 3), retryMs: over.retryMs ?? renewMs };
  if (!(t.renewMs < t.holdMs && t.holdMs < t.durationMs)) {
    throw new Error(`leader election needs renew < hold < duration, not ${t.renewMs} ms, ${t.holdMs} ms, ${t.durationMs} ms`);
  }
  return t;
}

export function newIdentity(): string {
  return `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`;
}

/** A monotonic clock in ms (timeouts between processes are measured on each one's own). */
export const monotonic = (): number => performance.now();

/** The loop shared by every lock: try, hold until a deadline, step down when that fails. */
export abstract class TimedElector implements LeaderElector {
  abstract readonly describe: string;
  private leader = false;
  private validUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private round: Promise<void> | null = null;
  private readonly listeners: ((leader: boolean) => void)[] = [];

  constructor(
    readonly identity: string,
    protected readonly t: Timing,
    protected readonly log?: LeaderLogger,
  ) {}

  /** Take or renew the lock: true when this process holds it now; throws when it cannot tell. */
  protected abstract acquireOrRenew(): Promise<boolean>;
  /** Give the lock up (this process held it and has stepped down). */
  protected abstract release(): Promise<void>;

  isLeader(): boolean {
    if (this.leader && monotonic() >= this.validUntil) this.stepDown("its last renewal is too old (the lock was not renewed in time)");
    return this.leader;
  }

  onChange(listener: (leader: boolean) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(release = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round;
    if (this.leader) {
      this.stepDown("the bot is stopping");
      if (!release) return;
      try {
        await this.release();
      } catch (err) {
        this.log?.warn(`leader election: giving up ${this.describe} failed (${(err as Error).message}); another bot takes over when it expires`);
      }
    }
  }

  /** One try now (tests; the timer does this on its own). */
  async tick(): Promise<void> {
    const sent = monotonic();
    let held = false;
    let why = "";
    try {
      held = await this.acquireOrRenew();
      if (!held) why = "another bot holds it";
    } catch (err) {
      why = `it could not be renewed: ${(err as Error).message}`;
    }
    if (this.stopped) return;
    if (held) {
      this.validUntil = sent + this.t.holdMs;
      if (!this.leader && monotonic() < this.validUntil) {
        this.leader = true;
        this.log?.info(`leader election: this bot (${this.identity}) leads: it runs the passes (${this.describe})`);
        this.emit(true);
      }
    } else if (this.leader) {
      this.stepDown(why);
    }
  }

  private stepDown(why: string): void {
    if (!this.leader) return;
    this.leader = false;
    this.validUntil = 0;
    this.log?.warn(`leader election: this bot (${this.identity}) stopped leading, ${why}: no pass runs here (${this.describe})`);
    this.emit(false);
  }

  private emit(leader: boolean): void {
    for (const l of this.listeners) {
      try {
        l(leader);
      } catch (err) {
        this.log?.warn(`leader election: a listener failed: ${(err as Error).message}`);
      }
    }
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.round = this.tick().finally(() => {
        this.round = null;
        this.schedule(this.leader ? this.t.renewMs : this.t.retryMs);
      });
    }, ms);
    this.timer.unref();
  }
}

/** One process, no election: it always leads (AUTORESEARCH_LEADER=off). */
export class SoleLeader implements LeaderElector {
  readonly identity = newIdentity();
  readonly describe = "no leader election (AUTORESEARCH_LEADER=off)";
  isLeader(): boolean {
    return true;
  }
  onChange(): void {}
  start(): void {}
  async stop(): Promise<void> {}
}

/** Thrown by a write that a process which is not the leader tried. */
export class NotLeaderError extends Error {
  constructor(what: string) {
    super(`${what} refused: this bot is not the leader (another bot runs the passes)`);
    this.name = "NotLeaderError";
  }
}

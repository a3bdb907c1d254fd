// A full disk under the local runner's run folder. A write refused for lack of room (ENOSPC,
// or EDQUOT for a quota) is the machine's problem, not an experiment's: the runner stops
// starting runs, says so once with the folder and its free space, and looks for room again
// after a delay that doubles up to a bound, instead of starting a harness on every poll.
import * as fs from "node:fs";
import * as path from "node:path";

export interface DiskLogger {
  info(msg: string): void;
  error(msg: string): void;
}

/** What a run needs free to be worth starting: a probe of this size must fit. */
export const ROOM_BYTES = 1 << 20;

/** The write failed because the disk, or the user's quota, is full. */
export function isNoSpace(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} bytes`;
}

/** Free space (for this user) of the file system holding `dir`, in words. */
export function freeSpace(dir: string): string {
  try {
    const s = fs.statfsSync(dir);
    return formatBytes(s.bavail * s.bsize);
  } catch {
    return "an unknown amount of space";
  }
}

/**
 * Does `dir` take `bytes` more? Writes a probe file and removes it: statfs alone misses quotas.
 * The refusal when there is no room; null when there is (or when the probe failed otherwise:
 * the real write then says what is wrong).
 */
export function noRoomIn(dir: string, bytes = ROOM_BYTES): NodeJS.ErrnoException | null {
  const probe = path.join(dir, `.room-probe-${process.pid}`);
  try {
    fs.writeFileSync(probe, Buffer.alloc(bytes));
    return null;
  } catch (err) {
    return isNoSpace(err) ? err : null;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

interface Full {
  file: string;
  code: string;
  tries: number;
  retryAt: number;
}

export class DiskFullGate {
  private full: Full | null = null;

  constructor(
    /** The folder whose file system is watched (the run folder). */
    private readonly dir: string,
    private readonly o: { retryMs: number; maxRetryMs: number; logger?: DiskLogger; onRoom?: () => void },
  ) {}

  get isFull(): boolean {
    return this.full !== null;
  }

  /** A write of `file` was refused for lack of room: no run starts until there is room again. */
  refused(file: string, err: NodeJS.ErrnoException): void {
    const tries = (this.full?.tries ?? 0) + 1;
    const wait = Math.min(this.o.retryMs * 2 ** (tries - 1), this.o.maxRetryMs);
    const first = this.full === null;
    this.full = { file, code: err.code ?? "ENOSPC", tries, retryAt: Date.now() + wait };
    if (first) {
      this.o.logger?.error(
        `the disk is full: ${file} could not be written (${this.full.code}); ${this.dir} has ${freeSpace(this.dir)} free. ` +
          `No run starts until there is room: looked at again in ${seconds(wait)}, then less often (at most every ${seconds(this.o.maxRetryMs)})`,
      );
    }
  }

  /** May runs start? While full, false until a look after the delay finds room (said once). */
  ready(): boolean {
    if (!this.full) return true;
    if (Date.now() < this.full.retryAt) return false;
    const refusal = noRoomIn(this.dir);
    if (refusal) {
      this.refused(this.full.file, refusal);
      return false;
    }
    this.full = null;
    this.o.logger?.info(`there is room again in ${this.dir} (${freeSpace(this.dir)} free): runs start again`);
    this.o.onRoom?.();
    return true;
  }

  /** What keeps runs from starting, for people (the check run): where, how much room, the fix. */
  describe(): string {
    if (!this.full) return "";
    const next = Math.max(0, this.full.retryAt - Date.now());
    return (
      `the disk of the local runner is full: ${this.full.file} could not be written (${this.full.code}) and ` +
      `${this.dir} has ${freeSpace(this.dir)} free. Free space on that disk (or move AUTORESEARCH_RUNS_DIR): ` +
      `runs start again by themselves (the next look is in ${seconds(next)})`
    );
  }
}

function seconds(ms: number): string {
  return `${Math.ceil(ms / 1000)} s`;
}

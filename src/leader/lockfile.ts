// Leader election on one machine: a lock file beside the local runner's run folders.
//
//   - taken with O_CREAT|O_EXCL (only one process can create it), holding
//     {"identity", "pid", "host", "since"};
//   - its mtime is the heartbeat: the leader touches it every renewMs, and checks on each beat
//     that the file still names it;
//   - stale when its mtime is older than durationMs, or when it names a process of this host
//     that no longer exists (a bot killed with -9 is followed at once). A stale lock is broken
//     under a second, short-lived O_EXCL lock (`<file>.break`) after checking again that it is
//     the same file, so that of two bots breaking it at once neither removes the other's new one.
import * as fs from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { TimedElector, type LeaderLogger, type Timing } from "./elector.js";

interface Holder {
  identity: string;
  pid: number;
  host: string;
  since: string;
}

function readHolder(file: string): Holder | null {
  try {
    const h = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<Holder>;
    return typeof h.identity === "string" && typeof h.pid === "number" && typeof h.host === "string" ? (h as Holder) : null;
  } catch {
    return null;
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class LockFileElector extends TimedElector {
  readonly describe: string;

  constructor(
    private readonly file: string,
    identity: string,
    t: Timing,
    log?: LeaderLogger,
  ) {
    super(identity, t, log);
    this.describe = `lock file ${file}`;
  }

  protected async acquireOrRenew(): Promise<boolean> {
    const holder = readHolder(this.file);
    if (holder?.identity === this.identity) {
      const now = new Date();
      fs.utimesSync(this.file, now, now);
      return true;
    }
    if (this.create()) return true;
    if (!this.stale()) return false;
    this.breakStale();
    return this.create();
  }

  private create(): boolean {
    let fd: number;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      fd = fs.openSync(this.file, "wx", 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
    try {
      const holder: Holder = { identity: this.identity, pid: process.pid, host: hostname(), since: new Date().toISOString() };
      fs.writeSync(fd, JSON.stringify(holder) + "\n");
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(this.file, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    return true;
  }

  private stale(file = this.file): boolean {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      return true; // gone meanwhile: free
    }
    if (Date.now() - st.mtimeMs > this.t.durationMs) return true;
    const h = readHolder(file);
    // A lock being written (no content yet) is not stale; one of a dead process of this host is.
    return h !== null && h.host === hostname() && h.pid !== process.pid && !processExists(h.pid);
  }

  private breakStale(): void {
    const guard = `${this.file}.break`;
    // A guard left by a bot that died while breaking: it is only ever held for a moment.
    try {
      if (Date.now() - fs.statSync(guard).mtimeMs > this.t.durationMs) fs.rmSync(guard, { force: true });
    } catch {
      // no guard
    }
    let fd: number;
    try {
      fd = fs.openSync(guard, "wx");
    } catch {
      return; // another bot is breaking it: it will hold the lock, or it is free on the next try
    }
    try {
      const before = fs.statSync(this.file, { throwIfNoEntry: false });
      if (before && this.stale()) {
        fs.rmSync(this.file, { force: true });
        this.log?.info(`leader election: ${this.file} was stale (its holder stopped renewing it); taking over`);
      }
    } finally {
      fs.closeSync(fd);
      fs.rmSync(guard, { force: true });
    }
  }

  protected async release(): Promise<void> {
    if (readHolder(this.file)?.identity === this.identity) fs.rmSync(this.file, { force: true });
  }
}

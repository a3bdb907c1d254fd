// The embedded runner: runs trainer/harness.py as detached local processes, one directory per
// run under `runsDir`. The directory is the whole state (level-triggered, like the rest of the
// bot): a restarted bot builds a new LocalRunner on the same directory and finds its queued,
// running and finished runs there, so a run is neither lost nor started twice.
//
// Every run is sandboxed (bubblewrap, through the harness's --sandbox bwrap): the training sees
// its own copy of the repository and read-only prepared data, no network, none of this
// process's files, environment or processes, and nothing it starts outlives it. A runner that
// cannot sandbox refuses to start; AUTORESEARCH_SANDBOX=off is the only way past, and it is
// said on every check run.
//
// The read token for the download never touches the disk: it is kept in memory while the run
// is queued and handed to the harness on a pipe (--token-stdin). A queued run whose token was
// lost with a restart is dropped, so that the next pass submits it again with a fresh token.
//
// On a machine with GPUs each slot trains on its own (CUDA_VISIBLE_DEVICES per run): runs that
// trained at the same time on one GPU would slow each other down, and their val_bpb with them.
//
// Run directory (runsDir/<safe run id>/):
//   spec.json    the RunSpec without its token, plus `queued` while waiting for a slot
//   pid          {"pid", "startTime", "startedAt", "gpus"} of the harness (its own process group)
//   cancelled    present once cancel() was asked for
//   result.json  the harness's result (--result)
//   train.log    the full training log (--log)
//   harness.log  the harness's own stdout and stderr
//   exit         {"code", "signal"} of the harness, when this process saw it end
//
// A full disk (src/runner/disk.ts) is the machine's failure: no harness starts while the run
// folder has no room, a run whose result the disk swallowed is an infrastructure failure (run
// again, never held against the change), and validate() says where and how much room is left.

import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import type { RepoRef, RunObservation, RunnerPort, RunSpec, TrainerResult } from "../types.js";
import { DiskFullGate, freeSpace, isNoSpace, noRoomIn } from "./disk.js";
import { parseHarnessResultText } from "./result.js";
import type { Logger } from "../log.js";

/** The bot's one logger type (src/log.ts). */
export type RunnerLogger = Logger;

export interface LocalRunnerOptions {
  /** Directory holding one subdirectory per run (e.g. `.runs`); created when missing. */
  runsDir: string;
  /** The harness script; default trainer/harness.py of this package. */
  harnessPath?: string;
  /** Interpreter that runs the harness itself (standard library only); default `python3`. */
  python?: string;
  /**
   * Interpreter the training commands get as `python3` (--python). Default: env
   * AUTORESEARCH_PYTHON, else the first of `python3` on PATH and `/usr/bin/python3` that can
   * `import torch`, else unset (the run then reports the error).
   */
  trainPython?: string;
  /** Prepared data, one folder per repository below it; default ~/.cache/autoresearch-bot. */
  cacheDir?: string;
  /**
   * bwrap (default, from env AUTORESEARCH_SANDBOX) or off. With bwrap the runner checks at
   * construction that bubblewrap can build a sandbox here and throws SandboxUnavailableError
   * naming the fix when it cannot.
   */
  sandbox?: "bwrap" | "off";
  /** The bubblewrap executable; default `bwrap`. */
  bwrap?: string;
  /** Whether data preparation has network in the sandbox (training never has); default true. */
  prepareNetwork?: boolean;
  /** Further folders the sandboxed commands may read (e.g. a Python environment elsewhere). */
  sandboxReadOnly?: string[];
  /**
   * The GPUs to share out among the slots: each run gets its slot's own (CUDA_VISIBLE_DEVICES),
   * so runs that train at the same time never share a GPU while there are enough. "auto" (the
   * default): CUDA_VISIBLE_DEVICES of this process, else the GPUs `nvidia-smi` lists, else none.
   */
  gpus?: "auto" | string[];
  /** Runs at once; default 1. Further runs wait in a persisted queue. */
  slots?: number;
  /** How often finished runs and free slots are looked for; default 1000 ms. */
  pollMs?: number;
  /** Extra environment for the harness and the training (e.g. AUTORESEARCH_CORPUS). */
  env?: Record<string, string>;
  /** How long cancel() waits after SIGTERM before SIGKILL; default 15000 ms. */
  killGraceMs?: number;
  /**
   * With the disk full, runs start again only after a look for room: first after this long,
   * then twice as long each time, at most every 5 minutes; default 5000 ms.
   */
  diskFullRetryMs?: number;
  /**
   * False while another bot process leads (src/leader/): queued runs are started only by the
   * leader's runner, never by two at once. Default: always true.
   */
  active?: () => boolean;
  logger?: RunnerLogger;
}

/** A run could not be written: the disk of the run folder is full. The message says where. */
export class DiskFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DiskFullError";
  }
}

/** The local runner cannot isolate experiments here; the message names the fix. */
export class SandboxUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SandboxUnavailableError";
  }
}

export const SANDBOX_FIX =
  "install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap) and allow unprivileged user namespaces " +
  "(Debian: sudo sysctl -w kernel.unprivileged_userns_clone=1; Ubuntu 24.04: sudo sysctl -w " +
  "kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap). Only if you accept that " +
  "LLM-written code runs with this process's access to files, network and credentials: AUTORESEARCH_SANDBOX=off";

/** The sandbox setting of the environment: bwrap unless AUTORESEARCH_SANDBOX=off. */
export function sandboxFromEnv(env: Record<string, string | undefined>): "bwrap" | "off" {
  const raw = (env.AUTORESEARCH_SANDBOX ?? "").trim().toLowerCase();
  if (raw === "" || raw === "bwrap" || raw === "on") return "bwrap";
  if (raw === "off") return "off";
  throw new Error(`AUTORESEARCH_SANDBOX must be bwrap (the default) or off, not ${JSON.stringify(env.AUTORESEARCH_SANDBOX)}`);
}

const probed = new Map<string, string | null>();

/**
 * Can `bwrap` build the namespaces a run needs (the same options the harness uses)? Null when it
 * can, else what went wrong. Asked once per executable and process.
 */
export function probeSandbox(bwrap = "bwrap"): string | null {
  if (probed.has(bwrap)) return probed.get(bwrap)!;
  let problem: string | null = null;
  try {
    execFileSync(
      bwrap,
      ["--unshare-all", "--unshare-user", "--die-with-parent", "--disable-userns", "--cap-drop", "ALL",
        "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"],
      { stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 },
    );
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    problem =
      e.code === "ENOENT"
        ? `${bwrap} was not found`
        : `${bwrap} cannot create a sandbox: ${(e.stderr?.toString("utf8").trim() || e.message).split("\n")[0]}`;
  }
  probed.set(bwrap, problem);
  return problem;
}

/** spec.json: the RunSpec minus its token, plus bookkeeping. */
interface StoredSpec extends Omit<RunSpec, "source"> {
  source: { url: string; token: null };
  hasToken: boolean;
  queued: boolean;
  submittedAt: string;
  startedAt?: string;
}

interface PidRecord {
  pid: number;
  /** The CUDA_VISIBLE_DEVICES the run got (its slot's GPUs); absent without GPUs. */
  gpus?: string;
  /** Start time from /proc/<pid>/stat (clock ticks since boot), null where there is no /proc. */
  startTime: number | null;
  startedAt: string;
}

type RunState =
  | { phase: "absent" }
  | { phase: "pending"; spec: StoredSpec }
  | { phase: "running"; spec: StoredSpec; pid: PidRecord }
  | { phase: "finished"; spec: StoredSpec; result: TrainerResult };

const LOG_TAIL_BYTES = 4000;
const SAFE_ENV = new Set([
  "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
  "LD_LIBRARY_PATH", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
]);
const SAFE_ENV_PREFIXES = [
  "LC_", "CUDA_", "NVIDIA_", "PYTORCH_", "TORCH", "TRITON_", "OMP_", "MKL_", "OPENBLAS_", "HF_", "AUTORESEARCH_",
  "PYTHON", "PYENV", "CONDA_", "VIRTUAL_ENV",
];
const SECRET_NAME = /TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|API_?KEY|WEBHOOK/i;

/**
 * The GPUs of this machine as CUDA numbers them for this process: CUDA_VISIBLE_DEVICES when it
 * is set (ids or UUIDs; empty or -1: none), else the indices `nvidia-smi` lists, else none.
 */
export function detectGpus(env: NodeJS.ProcessEnv, listGpus: () => string = nvidiaSmiIndices): string[] {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) {
    const ids = visible.split(",").map((id) => id.trim()).filter(Boolean);
    return ids[0] === "-1" ? [] : ids;
  }
  return listGpus().split("\n").map((line) => line.trim()).filter((line) => /^\d+$/.test(line));
}

/** nvidia-smi's arguments that list the GPUs' indices, one per line. */
export const NVIDIA_SMI_INDICES = ["--query-gpu=index", "--format=csv,noheader"];

function nvidiaSmiIndices(): string {
  try {
    return execFileSync("nvidia-smi", NVIDIA_SMI_INDICES, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 20_000 });
  } catch {
    return ""; // no nvidia-smi, no driver, or no GPU
  }
}

/**
 * The GPUs of each slot: with at least as many GPUs as slots, each slot its own share (the
 * remainder unused); with fewer, slots share them round-robin. Each entry is a
 * CUDA_VISIBLE_DEVICES value; none without GPUs.
 */
export function gpuSets(gpus: readonly string[], slots: number): string[] {
  if (gpus.length === 0) return [];
  if (gpus.length < slots) return Array.from({ length: slots }, (_, i) => gpus[i % gpus.length]!);
  const per = Math.floor(gpus.length / slots);
  return Array.from({ length: slots }, (_, i) => gpus.slice(i * per, (i + 1) * per).join(","));
}

/**
 * What is wrong with training `slots` runs at once on these GPUs, or null: fewer GPUs than
 * slots, so runs share one (said at the runner's start and by doctor).
 */
export function sharedGpus(gpus: readonly string[], slots: number): string | null {
  if (gpus.length === 0 || gpus.length >= slots) return null;
  return (
    `${slots} slots share ${gpus.length} GPU${gpus.length === 1 ? "" : "s"} (${gpus.join(",")}): runs that train at the same time ` +
    "on one GPU slow each other down, and their val_bpb with them"
  );
}

/**
 * The folders no sandboxed command may see, not even through a read-only folder that holds
 * them: the bot's working folder (.env, the private key), the runs and every repository's data.
 */
export function privateFolders(cwd: string, runsDir: string, cacheDir: string): string[] {
  return [...new Set([cwd, runsDir, cacheDir])];
}

/** The prepared-data folder of one repository: runs of different repositories share nothing. */
export function repoCacheDir(cacheDir: string, repo: RepoRef): string {
  const part = (s: string) => s.toLowerCase().replace(/[^a-z0-9._-]+/g, "_").replace(/^[.]+/, "_") || "_";
  return path.join(cacheDir, "repos", part(repo.owner), part(repo.repo));
}

/** Map a run id onto a directory name that is safe on any filesystem and cannot escape. */
export function runDirName(runId: string): string {
  const cleaned = runId.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[.]+/, "_").slice(0, 100);
  if (cleaned === runId && cleaned.length > 0) return cleaned;
  const hash = createHash("sha256").update(runId).digest("hex").slice(0, 10);
  return `${cleaned || "run"}-${hash}`;
}

/** trainer/harness.py of this package (works from src/ and from the compiled dist/src/). */
export function defaultHarnessPath(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, "trainer", "harness.py");
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return path.resolve("trainer", "harness.py");
}

/** The environment the harness (and the code it runs) gets: no credentials of the bot. */
export function harnessEnv(base: NodeJS.ProcessEnv, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(base)) {
    if (value === undefined || SECRET_NAME.test(key)) continue;
    if (SAFE_ENV.has(key) || SAFE_ENV_PREFIXES.some((p) => key.startsWith(p))) env[key] = value;
  }
  return { ...env, ...extra };
}

/** Field 22 of /proc/<pid>/stat (start time), and whether the process is a zombie. */
function procStat(pid: number): { startTime: number; zombie: boolean } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may contain spaces.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const startTime = Number(fields[19]);
  return { startTime, zombie: fields[0] === "Z" || fields[0] === "X" };
}

const hasProc = fs.existsSync("/proc/self/stat");

function isAlive(rec: PidRecord): boolean {
  if (hasProc) {
    const stat = procStat(rec.pid);
    if (!stat || stat.zombie) return false;
    return rec.startTime === null || stat.startTime === rec.startTime;
  }
  try {
    process.kill(rec.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Every descendant of `pid` (Linux only), found through the ppid links in /proc. */
function descendants(pid: number): number[] {
  if (!hasProc) return [];
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const ppid = Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop() as number) ?? []) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

/** Environment variable naming the run directory; the training inherits it from the harness. */
export const RUN_DIR_ENV = "AUTORESEARCH_RUN_DIR";

/**
 * Processes (other than this one) whose environment names `dir` as their run directory (Linux
 * only): the harness and everything it started, including training processes that outlived a
 * killed harness in their own session.
 */
function processesOfRun(dir: string): number[] {
  if (!hasProc) return [];
  const marker = Buffer.from(`\0${RUN_DIR_ENV}=${dir}\0`);
  const first = Buffer.from(`${RUN_DIR_ENV}=${dir}\0`);
  const out: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let environ: Buffer;
    try {
      environ = fs.readFileSync(`/proc/${entry}/environ`);
    } catch {
      continue;
    }
    if (environ.includes(marker) || environ.subarray(0, first.length).equals(first)) out.push(Number(entry));
  }
  return out;
}

function signal(target: number, sig: NodeJS.Signals): void {
  try {
    process.kill(target, sig);
  } catch {
    // already gone
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

function writeFileAtomic(file: string, text: string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, text, { mode });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true }); // a partial file on a full disk holds what little room is left
    throw err;
  }
}

function tail(file: string, bytes = LOG_TAIL_BYTES): string {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch {
    return "";
  }
  try {
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, size - length);
    return buf.toString("utf8");
  } finally {
    fs.closeSync(fd);
  }
}

function crashResult(reason: string, logTail: string, stage: TrainerResult["stage"] = "train"): TrainerResult {
  return { status: "crash", val_bpb: null, exit_code: null, reason, log_tail: logTail, summary: {}, stage };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Does `python` import torch? (the interpreter training commands should get). */
function canImportTorch(python: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(python, ["-c", "import torch"], { timeout: 60_000 }, (err) => resolve(!err));
  });
}

export class LocalRunner implements RunnerPort {
  readonly name = "local";
  readonly slots: number;
  /** Runs beyond the slots wait in the runs folder, and the poller starts the oldest as a slot frees. */
  readonly queues = true;
  readonly runsDir: string;
  /** False only with AUTORESEARCH_SANDBOX=off: every check run says so. */
  readonly sandboxed: boolean;

  private readonly harnessPath: string;
  private readonly python: string;
  private readonly cacheDir: string;
  private readonly bwrap: string;
  private readonly prepareNetwork: boolean;
  private readonly sandboxReadOnly: string[];
  /** CUDA_VISIBLE_DEVICES of each slot (gpuSets); empty without GPUs. */
  private readonly gpuSets: string[];
  /** CUDA_DEVICE_ORDER for the runs, when the ids are nvidia-smi's. */
  private readonly gpuOrder: string | undefined;
  /** Read tokens of queued runs, by run id: in memory only, handed over on the harness's stdin. */
  private readonly tokens = new Map<string, string>();
  private readonly pollMs: number;
  private readonly extraEnv: Record<string, string>;
  private readonly killGraceMs: number;
  private readonly logger: RunnerLogger | undefined;
  private trainPython: Promise<string | undefined> | undefined;
  private readonly listeners: ((runId: string, repo: RepoRef) => void)[] = [];
  /** Run directories whose end this instance has reported (each once per instance). */
  private readonly reported = new Set<string>();
  /** Run directories whose leftover processes this instance has looked for. */
  private readonly reaped = new Set<string>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private ticking = false;
  private closed = false;
  private readonly disk: DiskFullGate;
  /** How harnesses this process started ended (the `exit` file may not fit on a full disk). */
  private readonly exits = new Map<string, { code: number | null; signal: string | null }>();
  /** Results of runs whose harness ended without one, by run directory: the same on every look. */
  private readonly lost = new Map<string, TrainerResult>();
  /** Repositories told that runs cannot start (validate): told again when they can. */
  private readonly waiting = new Map<string, RepoRef>();
  private readonly readyListeners: ((repo: RepoRef) => void)[] = [];
  private readonly active: (() => boolean) | undefined;

  constructor(options: LocalRunnerOptions) {
    this.runsDir = path.resolve(options.runsDir);
    this.harnessPath = path.resolve(options.harnessPath ?? defaultHarnessPath());
    this.python = options.python ?? "python3";
    this.cacheDir = path.resolve(
      options.cacheDir ?? path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "autoresearch-bot"),
    );
    this.slots = Math.max(1, Math.floor(options.slots ?? 1));
    this.pollMs = options.pollMs ?? 1000;
    this.extraEnv = options.env ?? {};
    this.killGraceMs = options.killGraceMs ?? 15_000;
    this.logger = options.logger;
    const sandbox = options.sandbox ?? sandboxFromEnv(process.env);
    this.sandboxed = sandbox !== "off";
    this.bwrap = options.bwrap ?? "bwrap";
    this.prepareNetwork = options.prepareNetwork ?? true;
    this.sandboxReadOnly = options.sandboxReadOnly ?? [];
    const auto = options.gpus === undefined || options.gpus === "auto";
    const env = { ...process.env, ...this.extraEnv };
    const gpus = auto ? detectGpus(env) : (options.gpus as string[]);
    this.gpuSets = gpuSets(gpus, this.slots);
    // nvidia-smi's indices are in PCI bus order; CUDA numbers by speed unless told otherwise.
    // Ids the operator gave keep the order the operator chose.
    this.gpuOrder = auto && env.CUDA_VISIBLE_DEVICES === undefined && env.CUDA_DEVICE_ORDER === undefined ? "PCI_BUS_ID" : undefined;
    const shared = sharedGpus(gpus, this.slots);
    if (shared) {
      this.logger?.warn(`${shared}; set AUTORESEARCH_SLOTS to at most ${gpus.length}`);
    } else if (gpus.length > 0) {
      this.logger?.info(`GPUs ${gpus.join(",")}: each slot trains on its own (${this.gpuSets.join(" | ")})`);
    }
    this.active = options.active;
    this.disk = new DiskFullGate(this.runsDir, {
      retryMs: options.diskFullRetryMs ?? 5000,
      maxRetryMs: 300_000,
      logger: this.logger,
      onRoom: () => this.roomAgain(),
    });
    if (this.sandboxed) {
      const problem = probeSandbox(this.bwrap);
      if (problem) {
        throw new SandboxUnavailableError(`the local runner cannot sandbox experiments: ${problem}. Fix: ${SANDBOX_FIX}`);
      }
    } else {
      this.logger?.warn(
        "AUTORESEARCH_SANDBOX=off: experiments run WITHOUT a sandbox, with this process's access to files, network " +
          "and credentials; every check run says so",
      );
    }
    const fromEnv = options.trainPython ?? this.extraEnv.AUTORESEARCH_PYTHON ?? process.env.AUTORESEARCH_PYTHON;
    if (fromEnv) this.trainPython = Promise.resolve(fromEnv);
    fs.mkdirSync(this.runsDir, { recursive: true });
    this.timer = setInterval(() => void this.tick(), this.pollMs);
    this.timer.unref();
  }

  // ------------------------------------------------------------------ RunnerPort

  async submit(spec: RunSpec): Promise<void> {
    if (this.closed) throw new Error("LocalRunner is closed");
    const dir = this.dirOf(spec.runId);
    const existing = this.readSpec(dir);
    if (existing && existing.sha === spec.sha && existing.runId === spec.runId) return; // queued, running or finished
    if (existing) {
      // The same run id for another commit (a number reused after a record was lost): that
      // run is not this one, and its result must never be read as this one's.
      this.logger?.warn(`run ${spec.runId}: a run of ${existing.sha.slice(0, 12)} holds this id; replacing it with ${spec.sha.slice(0, 12)}`);
      await this.cancel(spec.runId);
      fs.rmSync(dir, { recursive: true, force: true });
      this.reported.delete(path.basename(dir));
      this.reaped.delete(dir);
      this.lost.delete(dir);
      this.exits.delete(dir);
    }
    const stored: StoredSpec = {
      ...spec,
      source: { url: spec.source.url, token: null },
      hasToken: Boolean(spec.source.token),
      queued: true,
      submittedAt: new Date().toISOString(),
    };
    try {
      fs.mkdirSync(dir, { recursive: true });
      // spec.json is the run's existence marker: written last, atomically.
      writeFileAtomic(path.join(dir, "spec.json"), JSON.stringify(stored, null, 2) + "\n");
    } catch (err) {
      if (!isNoSpace(err)) throw err;
      fs.rmSync(dir, { recursive: true, force: true });
      this.disk.refused(path.join(dir, "spec.json"), err);
      throw new DiskFullError(`run ${spec.runId} was not queued: ${this.disk.describe()}`);
    }
    if (spec.source.token) this.tokens.set(spec.runId, spec.source.token);
    this.logger?.info(`run ${spec.runId} submitted (${spec.repo.owner}/${spec.repo.repo}#${spec.pull} at ${spec.sha.slice(0, 12)})`);
    await this.pump();
  }

  async observe(runId: string): Promise<RunObservation> {
    const state = this.stateOf(this.dirOf(runId));
    switch (state.phase) {
      case "absent":
        return { phase: "missing", runId };
      case "pending":
      case "running":
        return { phase: state.phase, runId };
      case "finished":
        return { phase: "finished", runId, result: state.result };
    }
  }

  async cancel(runId: string): Promise<void> {
    const dir = this.dirOf(runId);
    const state = this.stateOf(dir);
    if (state.phase === "pending") {
      fs.rmSync(dir, { recursive: true, force: true });
      this.tokens.delete(runId);
      this.logger?.info(`run ${runId} dropped from the queue`);
      return;
    }
    if (state.phase !== "running") return;
    try {
      fs.writeFileSync(path.join(dir, "cancelled"), new Date().toISOString() + "\n");
    } catch (err) {
      if (!isNoSpace(err)) throw err; // the marker only words the reason; the run is stopped all the same
    }
    this.logger?.info(`run ${runId} cancelled; stopping harness pid ${state.pid.pid}`);
    // The harness stops its training process group on SIGTERM and writes a result.
    signal(-state.pid.pid, "SIGTERM");
    const deadline = Date.now() + this.killGraceMs;
    while (isAlive(state.pid) && Date.now() < deadline) await sleep(100);
    if (isAlive(state.pid)) {
      this.logger?.warn(`run ${runId}: harness still alive after ${this.killGraceMs} ms; killing it`);
      const pids = [...descendants(state.pid.pid), ...processesOfRun(dir)];
      signal(-state.pid.pid, "SIGKILL");
      for (const pid of pids) signal(pid, "SIGKILL");
      const hardDeadline = Date.now() + 5000;
      while (isAlive(state.pid) && Date.now() < hardDeadline) await sleep(50);
    }
    this.reapOrphans(dir, runId);
    await this.tick();
  }

  async list(repo: RepoRef): Promise<string[]> {
    const ids: string[] = [];
    for (const name of this.runDirs()) {
      const spec = this.readSpec(path.join(this.runsDir, name));
      if (!spec) continue;
      if (spec.repo.owner.toLowerCase() === repo.owner.toLowerCase() && spec.repo.repo.toLowerCase() === repo.repo.toLowerCase()) {
        ids.push(spec.runId);
      }
    }
    return ids.sort();
  }

  onFinished(listener: (runId: string, repo: RepoRef) => void): void {
    this.listeners.push(listener);
  }

  /** Remove a finished run's directory (after its result is recorded). Refuses live runs. */
  async cleanup(runId: string): Promise<void> {
    const dir = this.dirOf(runId);
    const state = this.stateOf(dir);
    if (state.phase === "pending" || state.phase === "running") {
      throw new Error(`run ${runId} is ${state.phase}; cancel it before cleaning it up`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    this.reported.delete(path.basename(dir));
    this.reaped.delete(dir);
    this.lost.delete(dir);
    this.exits.delete(dir);
  }

  /**
   * Why runs cannot start here now: the disk of the run folder is full (where, how much room is
   * left, what to do). Empty when they can.
   */
  async validate(repo: RepoRef): Promise<string[]> {
    if (this.disk.ready()) return [];
    this.waiting.set(`${repo.owner}/${repo.repo}`.toLowerCase(), repo);
    return [this.disk.describe()];
  }

  /** Called with each repository validate() turned away, once runs can start again. */
  onReady(listener: (repo: RepoRef) => void): void {
    this.readyListeners.push(listener);
  }

  /** Stop watching (the poller). Runs in flight keep going; a new LocalRunner picks them up. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Look for finished runs and free slots now (the poller does this every pollMs). */
  async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      this.reportFinished();
      await this.pump();
    } catch (err) {
      this.logger?.error(`local runner poll failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.ticking = false;
    }
  }

  // ------------------------------------------------------------------ internals

  private dirOf(runId: string): string {
    return path.join(this.runsDir, runDirName(runId));
  }

  private runDirs(): string[] {
    try {
      return fs
        .readdirSync(this.runsDir, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name);
    } catch {
      return [];
    }
  }

  private readSpec(dir: string): StoredSpec | undefined {
    const spec = readJson(path.join(dir, "spec.json")) as StoredSpec | undefined;
    return spec && typeof spec === "object" && typeof spec.runId === "string" ? spec : undefined;
  }

  /** What the files of a run directory say about it. */
  private stateOf(dir: string): RunState {
    const spec = this.readSpec(dir);
    if (!spec) return { phase: "absent" };
    const result = this.readResult(dir);
    if (result) return { phase: "finished", spec, result };
    const pid = readJson(path.join(dir, "pid")) as PidRecord | undefined;
    if (pid && typeof pid.pid === "number") {
      if (isAlive(pid)) return { phase: "running", spec, pid };
      // It may have written its result just before exiting.
      const late = this.readResult(dir);
      if (late) return { phase: "finished", spec, result: late };
      this.reapOrphans(dir, spec.runId);
      return { phase: "finished", spec, result: this.lostResult(dir) };
    }
    if (spec.queued) return { phase: "pending", spec };
    return {
      phase: "finished",
      spec,
      result: crashResult("the run was started but its harness pid was never recorded; see harness.log", tail(path.join(dir, "harness.log"))),
    };
  }

  /**
   * Kill what is left of a run whose harness is gone (the training survives a SIGKILLed harness
   * when it runs in its own session): it would hold the GPU outside the slot count. Once per
   * run directory and instance.
   */
  private reapOrphans(dir: string, runId: string): void {
    if (this.reaped.has(dir)) return;
    this.reaped.add(dir);
    const pids = processesOfRun(dir);
    if (pids.length === 0) return;
    this.logger?.warn(`run ${runId}: killing ${pids.length} process(es) left behind by its harness: ${pids.join(", ")}`);
    for (const pid of pids) signal(pid, "SIGKILL");
  }

  /** The result of a run whose harness is gone without writing one (the same on every look). */
  private lostResult(dir: string): TrainerResult {
    let result = this.lost.get(dir);
    if (!result) this.lost.set(dir, (result = this.explainLost(dir)));
    return result;
  }

  private explainLost(dir: string): TrainerResult {
    const logTail = tail(path.join(dir, "harness.log"));
    if (fs.existsSync(path.join(dir, "cancelled"))) {
      return crashResult("the run was cancelled and its harness stopped without a result; see harness.log", logTail);
    }
    const exit = this.exits.get(dir) ?? (readJson(path.join(dir, "exit")) as { code: number | null; signal: string | null } | undefined);
    // The harness writes a result whatever happens to the experiment; none, on a disk without
    // room, is the disk's doing (its exit 3 says it could not write it).
    const refusal = noRoomIn(dir);
    if (refusal) {
      this.disk.refused(path.join(dir, "result.json"), refusal);
      const result = crashResult(`the disk is full: the harness could not write the run's result in ${dir} (${freeSpace(dir)} free there)`, logTail);
      result.infrastructure = true;
      if (exit && typeof exit.code === "number") result.exit_code = exit.code;
      return result;
    }
    if (exit && exit.code === 3) {
      const result = crashResult("the harness could not write its result (exit 3: a failure of the machine, not the experiment); see harness.log", logTail);
      result.infrastructure = true;
      result.exit_code = 3;
      return result;
    }
    if (exit && exit.code === 2) {
      // argparse's usage error: the bot's configuration, not the experiment (retried as infrastructure).
      const lastLine = logTail.trim().split("\n").pop() ?? "";
      const result = crashResult(`the harness refused its arguments (exit 2): ${lastLine}`, logTail, "fetch");
      result.exit_code = 2;
      return result;
    }
    const how = exit ? (exit.signal ? ` (${exit.signal})` : ` (exit ${exit.code})`) : " (killed?)";
    const result = crashResult(`the harness process ended without a result${how}; see harness.log`, logTail);
    if (exit && typeof exit.code === "number") result.exit_code = exit.code;
    return result;
  }

  private readResult(dir: string): TrainerResult | undefined {
    const file = path.join(dir, "result.json");
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      return undefined;
    }
    try {
      return parseHarnessResultText(text, "result.json");
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      return crashResult(`unreadable harness result: ${reason}`, tail(path.join(dir, "harness.log")));
    }
  }

  private reportFinished(): void {
    const present = new Set<string>();
    for (const name of this.runDirs()) {
      present.add(name);
      if (this.reported.has(name) || this.listeners.length === 0) continue;
      const dir = path.join(this.runsDir, name);
      const state = this.stateOf(dir);
      if (state.phase !== "finished") continue;
      this.reported.add(name);
      const { result, spec } = state;
      const bpb = result.val_bpb === null ? "" : ` val_bpb=${result.val_bpb}`;
      this.logger?.info(`run ${spec.runId} finished: ${result.status}${bpb}${result.reason ? ` (${result.reason.slice(0, 200)})` : ""}`);
      for (const listener of this.listeners) {
        try {
          listener(spec.runId, spec.repo);
        } catch (err) {
          this.logger?.error(`onFinished listener failed for ${spec.runId}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    for (const name of this.reported) if (!present.has(name)) this.reported.delete(name);
  }

  /** Start queued runs (urgent ones first, then the oldest) while slots are free. */
  private async pump(): Promise<void> {
    if (this.closed) return;
    if (this.active && !this.active()) return;
    // No harness starts on a full disk: its start, or its result, would not fit.
    if (!this.disk.ready()) return;
    const hasQueued = () => this.runDirs().some((n) => this.readSpec(path.join(this.runsDir, n))?.queued === true);
    if (!hasQueued()) return;
    const trainPython = await this.resolveTrainPython();
    if (this.closed) return;
    // From here on everything is synchronous: no other call interleaves with the slot count.
    const queued: { dir: string; spec: StoredSpec }[] = [];
    let running = 0;
    const inUse: string[] = [];
    for (const name of this.runDirs()) {
      const dir = path.join(this.runsDir, name);
      const state = this.stateOf(dir);
      if (state.phase === "running") {
        running++;
        if (state.pid.gpus !== undefined) inUse.push(state.pid.gpus);
      } else if (state.phase === "pending") queued.push({ dir, spec: state.spec });
    }
    // Urgent runs first (a baseline, a further run of an experiment: others wait on them), then oldest first.
    queued.sort((a, b) => Number(b.spec.urgent === true) - Number(a.spec.urgent === true) || a.spec.submittedAt.localeCompare(b.spec.submittedAt) || a.spec.runId.localeCompare(b.spec.runId));
    for (const { dir, spec } of queued) {
      if (spec.hasToken && !this.tokens.has(spec.runId)) {
        // Queued before a restart: its token was only in memory. Forget the run; the next pass
        // finds it missing and submits it again with a fresh token.
        fs.rmSync(dir, { recursive: true, force: true });
        this.logger?.info(`run ${spec.runId}: queued before a restart without its token; dropped to be submitted again`);
        continue;
      }
      if (running >= this.slots) break;
      const gpus = this.freeGpuSet(inUse);
      if (!this.start(dir, spec, trainPython, gpus)) break;
      running++;
      if (gpus !== undefined) inUse.push(gpus);
    }
  }

  /** A run's GPUs, as CUDA_VISIBLE_DEVICES (and the order its ids are in). */
  private gpuEnv(gpus: string | undefined): Record<string, string> {
    if (gpus === undefined) return {};
    return { CUDA_VISIBLE_DEVICES: gpus, ...(this.gpuOrder ? { CUDA_DEVICE_ORDER: this.gpuOrder } : {}) };
  }

  /** The GPU set of a slot that no running run holds (the least held one when slots share GPUs). */
  private freeGpuSet(inUse: readonly string[]): string | undefined {
    if (this.gpuSets.length === 0) return undefined;
    const held = (set: string) => inUse.filter((u) => u === set).length;
    return [...new Set(this.gpuSets)].reduce((best, set) => (held(set) < held(best) ? set : best));
  }

  /** The folders no sandboxed command may see (privateFolders). */
  privateFolders(): string[] {
    return privateFolders(process.cwd(), this.runsDir, this.cacheDir);
  }

  private resolveTrainPython(): Promise<string | undefined> {
    this.trainPython ??= (async () => {
      for (const candidate of ["python3", "/usr/bin/python3"]) {
        if (await canImportTorch(candidate)) {
          this.logger?.info(`training interpreter: ${candidate}`);
          return candidate;
        }
      }
      this.logger?.warn("no python3 that can import torch was found; set AUTORESEARCH_PYTHON");
      return undefined;
    })();
    return this.trainPython;
  }

  private harnessArgs(dir: string, spec: StoredSpec, trainPython: string | undefined): string[] {
    const args = [this.harnessPath, "--repo", spec.source.url, "--commit", spec.sha];
    if (this.tokens.has(spec.runId)) args.push("--token-stdin");
    args.push("--workdir", spec.workdir || ".", "--train-cmd", spec.trainCmd);
    if (spec.prepareCmd) args.push("--prepare-cmd", spec.prepareCmd);
    if (trainPython) args.push("--python", trainPython);
    for (const glob of spec.prepareFiles ?? []) args.push("--prepare-files", glob);
    args.push("--cache-dir", repoCacheDir(this.cacheDir, spec.repo));
    args.push("--sandbox", this.sandboxed ? "bwrap" : "none", "--bwrap", this.bwrap);
    args.push("--prepare-network", this.prepareNetwork ? "on" : "off");
    for (const ro of this.sandboxReadOnly) args.push("--sandbox-ro", ro);
    for (const folder of this.privateFolders()) args.push("--private", folder);
    args.push("--budget", String(spec.budgetSeconds), "--eval-allowance", String(spec.evalAllowanceSeconds ?? 120));
    if (spec.seed !== undefined) args.push("--seed", String(spec.seed));
    if (spec.evaluation) {
      const e = spec.evaluation;
      args.push("--score-cmd", e.scoreCmd, "--serve-cmd", e.serveCmd, "--eval-repo", e.url, "--eval-commit", e.sha);
    }
    if (spec.timeoutSeconds) args.push("--timeout", String(spec.timeoutSeconds));
    args.push("--result", path.join(dir, "result.json"), "--log", path.join(dir, "train.log"), "--run-id", spec.runId);
    return args;
  }

  /**
   * Spawn the harness for a queued run, detached, and record its pid. Synchronous. False when
   * the disk had no room for it: nothing of the run is left running and it stays queued.
   */
  private start(dir: string, spec: StoredSpec, trainPython: string | undefined, gpus?: string): boolean {
    const harnessLog = path.join(dir, "harness.log");
    let logFd: number | undefined;
    try {
      // A first line before the harness exists: a disk without room refuses it here, before
      // anything is started.
      logFd = fs.openSync(harnessLog, "a");
      fs.writeSync(logFd, `==> [runner] starting the harness at ${new Date().toISOString()}\n`);
    } catch (err) {
      if (logFd !== undefined) fs.closeSync(logFd);
      if (!isNoSpace(err)) throw err;
      this.disk.refused(harnessLog, err);
      return false;
    }
    let pid: number | undefined;
    let spawnError: string | undefined;
    let abandoned = false;
    const token = this.tokens.get(spec.runId);
    try {
      const child = spawn(this.python, this.harnessArgs(dir, spec, trainPython), {
        cwd: dir,
        detached: true,
        stdio: [token ? "pipe" : "ignore", logFd, logFd],
        env: { ...harnessEnv(process.env, this.extraEnv), ...this.gpuEnv(gpus), [RUN_DIR_ENV]: dir },
      });
      if (token && child.stdin) {
        // The token travels on a pipe; the harness reads it for the download and keeps it in memory.
        child.stdin.on("error", () => undefined);
        child.stdin.end(token);
      }
      child.on("error", (err) => {
        this.logger?.error(`run ${spec.runId}: harness process error: ${err.message}`);
      });
      child.on("exit", (code, sig) => {
        // Kept for the synthesized result when the harness wrote none (usage error, killed, a
        // full disk): in memory too, for a disk with no room for the file.
        if (abandoned) return; // stopped by start() itself: the run is still queued
        this.exits.set(dir, { code, signal: sig });
        try {
          if (!fs.existsSync(path.join(dir, "result.json"))) {
            fs.writeFileSync(path.join(dir, "exit"), JSON.stringify({ code, signal: sig }) + "\n");
          }
        } catch {
          // the run directory was removed
        }
        if (!this.closed) setTimeout(() => void this.tick(), 50).unref();
      });
      child.unref();
      pid = child.pid;
    } catch (err) {
      spawnError = err instanceof Error ? err.message : String(err);
    } finally {
      fs.closeSync(logFd);
    }
    const startedAt = new Date().toISOString();
    const written = (file: string, text: string): boolean => {
      try {
        writeFileAtomic(file, text);
        return true;
      } catch (err) {
        if (!isNoSpace(err)) throw err;
        this.disk.refused(file, err);
        return false;
      }
    };
    if (pid === undefined) {
      const reason = `could not start the harness (${this.python} ${this.harnessPath})${spawnError ? `: ${spawnError}` : ""}`;
      this.logger?.error(`run ${spec.runId}: ${reason}`);
      const result = { status: "crash", val_bpb: null, exit_code: null, reason, log_tail: "", stage: "fetch", run_id: spec.runId, commit: spec.sha };
      if (!written(path.join(dir, "result.json"), JSON.stringify(result) + "\n")) return false;
      this.tokens.delete(spec.runId);
    } else {
      const record: PidRecord = { pid, startTime: procStat(pid)?.startTime ?? null, startedAt, ...(gpus !== undefined ? { gpus } : {}) };
      if (!written(path.join(dir, "pid"), JSON.stringify(record) + "\n")) {
        // A harness whose pid is not recorded could not be followed, and would be started a
        // second time: stopped before it does anything; the run stays queued with its token.
        abandoned = true;
        signal(-pid, "SIGKILL");
        return false;
      }
      this.tokens.delete(spec.runId);
      this.logger?.info(`run ${spec.runId} started: harness pid ${pid} (${spec.repo.owner}/${spec.repo.repo}#${spec.pull} at ${spec.sha.slice(0, 12)})`);
    }
    // Without room for this the run is still running (its pid record says so) or finished.
    written(path.join(dir, "spec.json"), JSON.stringify({ ...spec, queued: false, startedAt }, null, 2) + "\n");
    return true;
  }

  /**
   * The disk has room again: results the disk swallowed are written down (a restarted bot finds
   * them too), and the repositories that were told to wait are told that runs can start.
   */
  private roomAgain(): void {
    for (const [dir, result] of this.lost) {
      if (!result.infrastructure || !fs.existsSync(path.join(dir, "spec.json")) || fs.existsSync(path.join(dir, "result.json"))) continue;
      try {
        const { status, val_bpb, exit_code, reason, log_tail, stage } = result;
        writeFileAtomic(path.join(dir, "result.json"), JSON.stringify({ status, val_bpb, exit_code, reason, log_tail, stage, infrastructure: true }) + "\n");
      } catch (err) {
        this.logger?.warn(`the result of ${dir} could not be written: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const repos = [...this.waiting.values()];
    this.waiting.clear();
    for (const repo of repos) {
      for (const listener of this.readyListeners) {
        try {
          listener(repo);
        } catch (err) {
          this.logger?.error(`onReady listener failed for ${repo.owner}/${repo.repo}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
  }
}

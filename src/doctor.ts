// `autoresearch-bot doctor` (npm run doctor) and the start-up gate of `npm start`: every thing
// the bot needs, checked one by one, each problem with its fix.
//
// A check is a small function of injectable dependencies (environment, PATH lookup, process
// spawning, fetch, the kubeconfig), so that tests drive every failure through a test double or
// a missing binary on PATH. Each result belongs to an area:
//
//   environment  Node, settings, git, Python and PyTorch, BLAS, the sandbox (and PyTorch and the
//                GPU inside it), the runner's folders or its cluster: what a run needs on this
//                machine. A failure here is FATAL at `npm start`: the bot would accept webhooks
//                and fail every experiment.
//   credentials  APP_ID, the private key (and that GitHub accepts it), WEBHOOK_SECRET. Never
//                fatal at start: without credentials Probot serves its registration page instead
//                of loading the app, and with them a failure is logged as an error.
//   llm          the OpenAI-compatible endpoint. Never fatal at start: a remote service that is
//                down now may be up by the first proposal.
//
// `doctor` exits 0 only when nothing failed (warnings are allowed): the configured path can run
// an experiment.
import { execFile } from "node:child_process";
import { createPrivateKey, sign, type KeyObject } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseEnv } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { getPrivateKey } from "@probot/get-private-key";
import OpenAI from "openai";
import { z } from "zod";
import { DEFAULT_CONFIG } from "./config.js";
import { defaultKubeConfig, KubernetesRunner, parseJobTemplate, templateSource } from "./runner/kubernetes.js";
import {
  defaultHarnessPath,
  detectGpus,
  gpuSets,
  harnessEnv,
  NVIDIA_SMI_INDICES,
  privateFolders,
  probeSandbox,
  SANDBOX_FIX,
  sharedGpus,
} from "./runner/local.js";
import { namespaceFor } from "./runner/select.js";
import { describeProblem, readSettings, readVariable, type RunnerKind } from "./settings.js";
import type { RepoRef, RunSpec } from "./types.js";

export type Env = Record<string, string | undefined>;
export type Level = "ok" | "warn" | "fail";
export type Area = "environment" | "credentials" | "llm";

export interface CheckResult {
  /** Short name of what was checked ("sandbox", "private key" …). */
  check: string;
  level: Level;
  area: Area;
  /** What was found. */
  message: string;
  /** For a warning or failure: what to do about it. */
  fix?: string;
}

export interface ExecResult {
  /** Exit code; null when the program could not start, was killed or timed out. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Why it did not run to an exit code (ENOENT, timeout …). */
  error?: string;
}

export interface DoctorDeps {
  env: Env;
  /** Relative folders (AUTORESEARCH_RUNS_DIR …) resolve against this, as in the bot. */
  cwd: string;
  /** The running Node.js version (process.versions.node). */
  nodeVersion: string;
  /** package.json's engines.node, or null when package.json cannot be found. */
  nodeEngines: string | null;
  /** An executable on env.PATH (or a path to one): its absolute path, else null. */
  which(command: string): string | null;
  /** Run a program with the environment the harness would get; never rejects. */
  exec(file: string, args: string[], timeoutMs: number): Promise<ExecResult>;
  /** bubblewrap's probe (null: it can build the run's namespaces; else what went wrong). */
  probeSandbox(bwrap: string): string | null;
  fetch: typeof globalThis.fetch;
  /** The cluster configuration the Kubernetes runner would use; may throw. */
  kubeConfig(): k8s.KubeConfig;
  /** trainer/harness.py */
  harnessPath: string;
  /** Deadline of each network request, ms. */
  timeoutMs: number;
}

// ------------------------------------------------------------------ default dependencies

function isExecutable(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `which` over a PATH value: the absolute path of `command`, or null. */
export function whichIn(pathValue: string | undefined, command: string, cwd = process.cwd()): string | null {
  if (command.includes("/")) {
    const file = path.resolve(cwd, command);
    return isExecutable(file) ? file : null;
  }
  for (const dir of (pathValue ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const file = path.resolve(cwd, dir, command);
    if (isExecutable(file)) return file;
  }
  return null;
}

/** engines.node of this package's package.json (found from src/ and from dist/src/). */
export function packageEngines(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as { name?: string; engines?: { node?: string } };
      if (pkg.name === "autoresearch-bot") return pkg.engines?.node ?? null;
    } catch {
      // not here
    }
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

/**
 * The environment `npm start` runs with: Probot (`probot run`) assigns `.env` of the working
 * folder over the process environment, so doctor reads it the same way to check what the bot
 * will see.
 */
export function withDotenv(env: Env, cwd: string): { env: Env; dotenv: string | null } {
  const file = path.join(cwd, ".env");
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return { env, dotenv: null };
  }
  return { env: { ...env, ...parseEnv(text) }, dotenv: file };
}

export function defaultDoctorDeps(env: Env = process.env, overrides: Partial<DoctorDeps> = {}): DoctorDeps {
  const cwd = overrides.cwd ?? process.cwd();
  return {
    env,
    cwd,
    nodeVersion: process.versions.node,
    nodeEngines: packageEngines(),
    which: (command) => whichIn(env.PATH, command, cwd),
    exec: (file, args, timeoutMs) =>
      new Promise((resolve) => {
        // The harness's environment (no credentials of the bot): the interpreter is checked
        // with what it will see when it trains.
        execFile(file, args, { env: harnessEnv(env), cwd, timeout: timeoutMs, maxBuffer: 4 << 20, encoding: "utf8" }, (err, stdout, stderr) => {
          if (!err) return resolve({ code: 0, stdout, stderr });
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          if (typeof e.code === "number") return resolve({ code: e.code, stdout, stderr });
          resolve({ code: null, stdout, stderr, error: e.killed ? `no answer within ${seconds(timeoutMs)}` : e.code ?? e.message });
        });
      }),
    probeSandbox,
    fetch: globalThis.fetch,
    kubeConfig: defaultKubeConfig,
    harnessPath: defaultHarnessPath(),
    timeoutMs: 10_000,
    ...overrides,
  };
}

// ------------------------------------------------------------------ helpers

const ok = (check: string, area: Area, message: string): CheckResult => ({ check, level: "ok", area, message });
const warn = (check: string, area: Area, message: string, fix: string): CheckResult => ({ check, level: "warn", area, message, fix });
const fail = (check: string, area: Area, message: string, fix: string): CheckResult => ({ check, level: "fail", area, message, fix });

function firstLine(text: string, max = 300): string {
  const line = text.trim().split("\n").filter(Boolean).pop() ?? "";
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

function errorText(err: unknown): string {
  if (err instanceof k8s.ApiException) {
    const body = err.body as { message?: string } | string | undefined;
    let msg = typeof body === "string" ? body : body?.message;
    if (typeof body === "string") {
      try {
        msg = (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        // plain text
      }
    }
    return `HTTP ${err.code}${msg ? `: ${firstLine(msg)}` : ""}`;
  }
  if (err instanceof Error) {
    // fetch's "fetch failed" says nothing: the reason (ECONNREFUSED, a certificate …) is in its causes.
    const parts = [err.message];
    let cause = (err as { cause?: unknown }).cause;
    for (let depth = 0; cause && depth < 4; depth++) {
      const c = cause as { message?: unknown; code?: unknown; cause?: unknown };
      const text = typeof cause === "string" ? cause : typeof c.message === "string" && c.message ? c.message : typeof c.code === "string" ? c.code : "";
      if (text && !parts.some((p) => p.includes(text))) parts.push(text);
      cause = typeof cause === "object" ? c.cause : undefined;
    }
    return parts.length > 1 ? `${parts[0]} (${parts.slice(1).join(": ")})` : parts[0]!;
  }
  return String(err);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${seconds(ms)}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** 10000 → "10 s", 300 → "0.3 s". */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

function gib(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(1)} GiB` : `${Math.round(bytes / (1 << 20))} MiB`;
}

// ------------------------------------------------------------------ settings

export type { RunnerKind } from "./settings.js";

/** The runner this environment selects, or null when AUTORESEARCH_RUNNER names none. */
export function runnerKindOf(env: Env): RunnerKind | null {
  const kind = readVariable(env, "AUTORESEARCH_RUNNER");
  return kind.ok ? (kind.value ?? "local") : null;
}

/**
 * Every setting the bot reads from its environment has a usable value: the schema `npm start`
 * parses them with (src/settings.ts), so both report the same problems in the same words.
 */
export function checkSettings(env: Env): CheckResult {
  const r = readSettings(env);
  if (!r.ok) {
    return fail("settings", "environment", r.error.problems.map(describeProblem).join("; "), "correct or unset these variables (an empty value means the default; README: \"Environment variables\")");
  }
  const { runner, resyncSeconds, writes } = r.settings;
  return ok(
    "settings",
    "environment",
    `runner ${runner.kind}, ${runner.slots} slot${runner.slots === 1 ? "" : "s"}, resync every ${resyncSeconds} s, GitHub writes ≤ ${writes.perMinute}/min and ${writes.perHour}/h per installation`,
  );
}

// ------------------------------------------------------------------ Node.js

function versionParts(v: string): [number, number, number] {
  const [a = 0, b = 0, c = 0] = v.replace(/^v/, "").split(/[.+-]/).map((x) => Number(x) || 0);
  return [a, b, c];
}

function atLeast(v: [number, number, number], min: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i]! > min[i]!;
  return true;
}

/**
 * Does `version` satisfy an engines range? Understands what engines ranges are written with:
 * alternatives joined by `||`, each `>=X.Y.Z` or `^X.Y.Z` (or a bare version). Null: the range
 * uses something else.
 */
export function satisfiesEngines(version: string, range: string): boolean | null {
  const v = versionParts(version);
  let understood = true;
  const any = range.split("||").some((alt) => {
    const m = /^\s*(>=|\^)?\s*v?(\d+(?:\.\d+){0,2})\s*$/.exec(alt);
    if (!m) {
      understood = false;
      return false;
    }
    const min = versionParts(m[2]!);
    if (m[1] === "^") return v[0] === min[0] && atLeast(v, min);
    if (m[1] === ">=") return atLeast(v, min);
    return v[0] === min[0] && v[1] === min[1] && v[2] === min[2];
  });
  return any ? true : understood ? false : null;
}

export function checkNode(d: Pick<DoctorDeps, "nodeVersion" | "nodeEngines">): CheckResult {
  if (!d.nodeEngines) return ok("node", "environment", `Node.js ${d.nodeVersion}`);
  const fits = satisfiesEngines(d.nodeVersion, d.nodeEngines);
  if (fits === false) {
    return fail("node", "environment", `Node.js ${d.nodeVersion} is older than package.json's engines (${d.nodeEngines})`,
      `install Node.js ${d.nodeEngines} (https://nodejs.org, or nvm install 22)`);
  }
  if (fits === null) return ok("node", "environment", `Node.js ${d.nodeVersion} (engines ${d.nodeEngines} not interpreted)`);
  return ok("node", "environment", `Node.js ${d.nodeVersion} (package.json: ${d.nodeEngines})`);
}

// ------------------------------------------------------------------ local runner: programs

/**
 * git: the local runner's harness exports a commit with `git archive` when the repository is a
 * local checkout (`npm run demo`, `harness.py --repo .`). Experiments of a GitHub repository
 * arrive as a tarball, and the bot pushes their commits from its own process with no git
 * program, so its absence is a warning.
 */
export async function checkGit(d: DoctorDeps): Promise<CheckResult> {
  const git = d.which("git");
  if (!git) {
    return warn("git", "environment", "git was not found on PATH: repositories given as a local checkout (npm run demo) cannot be read; GitHub repositories can",
      "install git (Debian/Ubuntu: sudo apt-get install git)");
  }
  const r = await d.exec(git, ["--version"], 15_000);
  if (r.code !== 0) return warn("git", "environment", `${git} --version failed: ${firstLine(r.stderr || r.error || "")}`, "reinstall git");
  return ok("git", "environment", `${r.stdout.trim()} (${git})`);
}

/** The harness itself runs on `python3` from PATH (standard library only, Python 3.9+). */
export async function checkHarness(d: DoctorDeps): Promise<CheckResult> {
  if (!fs.existsSync(d.harnessPath)) {
    return fail("harness", "environment", `${d.harnessPath} was not found`,
      "run the bot from a checkout or image that has trainer/ (the Dockerfile copies it)");
  }
  const python = d.which("python3");
  if (!python) {
    return fail("harness", "environment", "python3 was not found on PATH: the local runner runs trainer/harness.py with it",
      "install Python 3.9 or newer (Debian/Ubuntu: sudo apt-get install python3) and put python3 on PATH");
  }
  // --help parses the whole script: an interpreter too old for its syntax fails here, not on a run.
  const r = await d.exec(python, [d.harnessPath, "--help"], 30_000);
  if (r.code !== 0) {
    return fail("harness", "environment", `${python} cannot run ${d.harnessPath}: ${firstLine(r.stderr || r.error || `exit ${r.code}`)}`,
      "put Python 3.9 or newer first on PATH as python3");
  }
  return ok("harness", "environment", `${python} runs ${path.relative(d.cwd, d.harnessPath) || d.harnessPath}`);
}

/**
 * Run in each candidate interpreter: torch's version and device, and the BLAS libraries the
 * process has mapped after a matrix product (some builds load them lazily).
 */
const TORCH_PROBE = `
import json, os, sys
out = {"executable": sys.executable}
try:
    import torch
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))
    sys.exit(0)
out["torch"] = torch.__version__
try:
    out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception:
    out["cuda"] = None
try:
    out["mkl"] = bool(torch.backends.mkl.is_available())
except Exception:
    out["mkl"] = False
a = torch.ones(64, 64)
float((a @ a).sum())
libs = set()
try:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/"):
                name = os.path.basename(parts[5]).lower()
                if "blas" in name or "mkl" in name or "lapack" in name:
                    libs.add(parts[5])
    out["maps"] = True
except OSError:
    out["maps"] = False
out["libs"] = sorted(libs)
print(json.dumps(out))
`;

export interface TorchProbe {
  executable?: string;
  error?: string;
  torch?: string;
  cuda?: string | null;
  mkl?: boolean;
  maps?: boolean;
  libs?: string[];
}

/**
 * Which BLAS torch computes with, from the libraries its process has mapped. Why the mapped
 * libraries: that is what the training will really use, whatever provides it (Debian's
 * alternatives for libblas.so.3, an OpenBLAS bundled in a wheel, MKL linked into torch);
 * the alternatives' symlinks only speak for Debian's own torch, and a timed matrix product is
 * too noisy on a shared machine to tell a 10x slower BLAS apart reliably.
 *
 * Debian: OpenBLAS threaded builds load as libopenblasp-r*.so (pthread) or libopenblaso-r*.so
 * (OpenMP); the serial one as libopenblas-r*.so from openblas-serial/; the reference BLAS
 * (libblas3) as blas/libblas.so.3. Only the last two are slow.
 */
export function classifyBlas(p: TorchProbe): { level: Level; message: string } {
  const libs = p.libs ?? [];
  const names = libs.map((l) => ({ file: l, base: path.basename(l).toLowerCase() }));
  const threaded = names.find((n) => /^libopenblas[po][-_.]/.test(n.base) || /openblas-(pthread|openmp)\//.test(n.file));
  if (threaded) return { level: "ok", message: `OpenBLAS, multithreaded (${threaded.file})` };
  const mkl = names.find((n) => n.base.includes("mkl"));
  if (mkl || p.mkl) return { level: "ok", message: `Intel MKL${mkl ? ` (${mkl.file})` : " (linked into torch)"}` };
  const serial = names.find((n) => n.base.startsWith("libopenblas") || n.file.includes("openblas-serial/"));
  if (serial) return { level: "warn", message: `OpenBLAS, single-threaded (${serial.file}): CPU training uses one core` };
  const reference = names.find((n) => /(^|\/)blas\/libblas\.so/.test(n.file) || n.base.startsWith("libblas"));
  if (reference) return { level: "warn", message: `the reference BLAS (${reference.file}): CPU matrix products are about 10x slower than with OpenBLAS` };
  if (p.maps === false) return { level: "ok", message: "not identified (no /proc on this system)" };
  return { level: "ok", message: "no shared BLAS library loaded (torch links its own)" };
}

const BLAS_FIX =
  "Debian/Ubuntu: sudo apt-get install libopenblas0-pthread (it becomes libblas.so.3; check with " +
  "update-alternatives --display libblas.so.3-$(uname -m)-linux-gnu); elsewhere use a PyTorch build with MKL or threaded OpenBLAS (pip install torch)";

const TORCH_FIX =
  "Debian/Ubuntu: sudo apt-get install python3-torch libopenblas0-pthread, or pip install torch for your python3; " +
  "if the Python that has torch is not python3 on PATH: AUTORESEARCH_PYTHON=/path/to/python3";

/** What checkTorch found: its results, and the interpreter that imports torch with its probe. */
export interface TorchFound {
  results: CheckResult[];
  /** null: no interpreter here imports torch. */
  found: { exe: string; probe: TorchProbe } | null;
}

/**
 * The interpreter training commands get (as the local runner picks it): AUTORESEARCH_PYTHON,
 * else the first of python3 on PATH and /usr/bin/python3 that imports torch; and its BLAS.
 */
export async function checkTorch(d: DoctorDeps): Promise<CheckResult[]> {
  return (await findTorch(d)).results;
}

export async function findTorch(d: DoctorDeps): Promise<TorchFound> {
  const configured = d.env.AUTORESEARCH_PYTHON;
  const candidates = configured ? [configured] : ["python3", "/usr/bin/python3"];
  const tried: string[] = [];
  for (const candidate of candidates) {
    const exe = d.which(candidate);
    if (!exe) {
      tried.push(`${candidate}: not found`);
      continue;
    }
    const r = await d.exec(exe, ["-c", TORCH_PROBE], 180_000);
    let probe: TorchProbe | null = null;
    try {
      probe = JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as TorchProbe;
    } catch {
      probe = null;
    }
    if (!probe || probe.error || !probe.torch) {
      tried.push(`${candidate}: ${probe?.error ?? firstLine(r.stderr || r.error || `exit ${r.code}`)}`);
      continue;
    }
    const device = probe.cuda ? `CUDA: ${probe.cuda}` : "CPU only";
    const results = [ok("pytorch", "environment", `torch ${probe.torch} in ${candidate}${exe !== candidate ? ` (${exe})` : ""}, ${device}`)];
    const blas = classifyBlas(probe);
    const note = probe.cuda && blas.level !== "ok" ? " (training on the GPU does not use it)" : "";
    results.push(blas.level === "ok" ? ok("blas", "environment", blas.message) : warn("blas", "environment", blas.message + note, BLAS_FIX));
    return { results, found: { exe, probe } };
  }
  const what = configured ? `AUTORESEARCH_PYTHON=${configured} cannot import torch` : "no Python here can import torch";
  return { results: [fail("pytorch", "environment", `${what} (${tried.join("; ")}): the template's train.py cannot run`, TORCH_FIX)], found: null };
}

/** What the interpreter finds of PyTorch and CUDA inside the sandbox (harness.py --sandbox-probe). */
const SandboxProbe = z.object({
  torch: z.string().max(200).optional(),
  cuda: z.string().max(200).nullable().optional(),
  cuda_error: z.string().max(2000).optional(),
  error: z.string().max(2000).optional(),
});

const SANDBOX_TORCH_FIX =
  "the sandbox shows the system folders (/usr, /lib…), the interpreter's own prefixes and LD_LIBRARY_PATH's folders; " +
  "add the folder torch (or the GPU driver's libraries) lives in to AUTORESEARCH_SANDBOX_READONLY (README: \"Security model\")";

/**
 * Where a training command runs (bubblewrap: no network, the system read-only), the training
 * interpreter still imports torch, and reaches the GPU it reaches outside: the harness's own
 * probe, with the local runner's options. A GPU that only works outside would make every run
 * train on the CPU. Nothing when there is no sandbox or no torch to compare with.
 */
export async function checkSandboxTorch(d: DoctorDeps, torch: TorchFound, sandbox: CheckResult): Promise<CheckResult[]> {
  const python = d.which("python3");
  const bwrap = d.which("bwrap");
  if (!torch.found || sandbox.level !== "ok" || !python || !bwrap) return [];
  const { exe, probe: outside } = torch.found;
  const args = [d.harnessPath, "--sandbox-probe", "--sandbox", "bwrap", "--bwrap", bwrap, "--python", exe];
  const readonly = readVariable(d.env, "AUTORESEARCH_SANDBOX_READONLY");
  for (const folder of (readonly.ok ? readonly.value : undefined) ?? []) args.push("--sandbox-ro", folder);
  const { runs, cache } = runnerFolders(d);
  for (const folder of privateFolders(d.cwd, runs, cache)) args.push("--private", folder);
  const r = await d.exec(python, args, 360_000);
  let answer: unknown = null;
  try {
    answer = JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {
    answer = null;
  }
  const inside = SandboxProbe.safeParse(answer);
  const name = "torch in sandbox";
  if (!inside.success) {
    return [fail(name, "environment", `the harness's sandbox probe gave no answer: ${firstLine(r.stderr || r.error || `exit ${r.code}`)}`, SANDBOX_TORCH_FIX)];
  }
  const found = inside.data;
  if (found.error || !found.torch) {
    return [fail(name, "environment", `${exe} imports torch ${outside.torch} outside the sandbox but not inside it: ${found.error ?? "no torch version"}`, SANDBOX_TORCH_FIX)];
  }
  if (found.torch !== outside.torch) {
    // Another torch on the system folders answered: runs would train with a torch nobody chose.
    return [fail(name, "environment", `${exe} imports torch ${outside.torch} outside the sandbox but torch ${found.torch} inside it`, SANDBOX_TORCH_FIX)];
  }
  if (outside.cuda && !found.cuda) {
    const why = found.cuda_error ? `: ${found.cuda_error}` : "";
    return [fail(name, "environment", `CUDA works outside the sandbox (${outside.cuda}) but not inside it${why}; every run would train on the CPU`, SANDBOX_TORCH_FIX)];
  }
  return [ok(name, "environment", `torch ${found.torch} imports inside the sandbox, ${found.cuda ? `CUDA: ${found.cuda}` : "CPU only"}`)];
}

// ------------------------------------------------------------------ local runner: sandbox and folders

/** bubblewrap present and able to build the run's namespaces (the local runner's own probe). */
export function checkSandbox(d: DoctorDeps): CheckResult {
  const mode = readVariable(d.env, "AUTORESEARCH_SANDBOX");
  if (!mode.ok) return fail("sandbox", "environment", describeProblem(mode.problem), "set AUTORESEARCH_SANDBOX to bwrap (the default) or unset it");
  if (mode.value === "off") {
    return warn("sandbox", "environment",
      "AUTORESEARCH_SANDBOX=off: LLM-written code runs with this process's access to files, network and credentials (every check run says so)",
      "unset AUTORESEARCH_SANDBOX once bubblewrap works here (install it and allow unprivileged user namespaces; README: \"Security model\")");
  }
  const bwrap = d.which("bwrap");
  if (!bwrap) return fail("sandbox", "environment", "bwrap (bubblewrap) was not found on PATH", SANDBOX_FIX);
  const problem = d.probeSandbox(bwrap);
  if (problem) return fail("sandbox", "environment", problem, SANDBOX_FIX);
  return ok("sandbox", "environment", `${bwrap} builds a sandbox (user, network, PID namespaces)`);
}

interface FolderNeeds {
  check: string;
  variable: string;
  dir: string;
  /** Free space below which a run cannot even write its files. */
  failBelow: number;
  /** Free space below which prepared data (autoresearch's shards) may not fit. */
  warnBelow: number;
}

function checkFolder(f: FolderNeeds): CheckResult {
  // The runner creates the folder when it starts: what counts is the nearest existing one.
  let existing = f.dir;
  while (!fs.existsSync(existing)) {
    const parent = path.dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  const fix = `choose a folder this user can write with ${f.variable}, or fix its owner and mode`;
  let stat: fs.Stats;
  try {
    stat = fs.statSync(existing);
  } catch (err) {
    return fail(f.check, "environment", `${f.dir}: ${(err as Error).message}`, fix);
  }
  if (!stat.isDirectory()) return fail(f.check, "environment", `${f.dir}: ${existing} is not a folder`, fix);
  try {
    fs.accessSync(existing, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(f.check, "environment", `${f.dir}: ${existing} is not writable (${code === "EROFS" ? "read-only file system" : code})`, fix);
  }
  const where = existing === f.dir ? f.dir : `${f.dir} (to be created in ${existing})`;
  let free: number;
  try {
    const s = fs.statfsSync(existing);
    free = s.bavail * s.bsize;
  } catch {
    return ok(f.check, "environment", `${where} is writable`);
  }
  const spaceFix = `free disk space there, or move it with ${f.variable}`;
  if (free < f.failBelow) return fail(f.check, "environment", `${where}: only ${gib(free)} free`, spaceFix);
  if (free < f.warnBelow) return warn(f.check, "environment", `${where}: ${gib(free)} free (less than ${gib(f.warnBelow)})`, spaceFix);
  return ok(f.check, "environment", `${where} is writable, ${gib(free)} free`);
}

/**
 * How the local runner shares the GPUs out among its slots (AUTORESEARCH_GPUS, found as the
 * runner finds them): each slot its own, or a warning when slots must share one, since runs
 * that train at the same time on one GPU slow each other down and their val_bpb with them.
 */
export async function checkGpus(d: DoctorDeps): Promise<CheckResult[]> {
  const setting = readVariable(d.env, "AUTORESEARCH_GPUS");
  const slotsSetting = readVariable(d.env, "AUTORESEARCH_SLOTS");
  if (!setting.ok || !slotsSetting.ok) return []; // the settings line says what is wrong
  const slots = slotsSetting.value ?? 1;
  let gpus: string[];
  if (setting.value === undefined || setting.value === "auto") {
    let listed = "";
    const smi = d.env.CUDA_VISIBLE_DEVICES === undefined ? d.which("nvidia-smi") : null;
    if (smi) {
      const r = await d.exec(smi, NVIDIA_SMI_INDICES, 20_000);
      if (r.code === 0) listed = r.stdout;
    }
    gpus = detectGpus(d.env, () => listed);
  } else {
    gpus = setting.value;
  }
  if (gpus.length === 0) return [ok("gpus", "environment", "none (AUTORESEARCH_GPUS, CUDA_VISIBLE_DEVICES, nvidia-smi): runs train on the CPU")];
  const shared = sharedGpus(gpus, slots);
  if (shared) return [warn("gpus", "environment", shared, `set AUTORESEARCH_SLOTS to at most ${gpus.length}, or AUTORESEARCH_GPUS to more GPUs`)];
  if (slots === 1 && gpus.length === 1) return [ok("gpus", "environment", `${gpus[0]}: one slot, whose runs train on it`)];
  if (slots === 1) {
    return [ok("gpus", "environment",
      `${gpus.join(",")}: one slot, whose runs see all of them (the template trains on one; AUTORESEARCH_SLOTS=${gpus.length} trains ${gpus.length} experiments at once, one GPU each)`)];
  }
  return [ok("gpus", "environment", `${gpus.join(",")}: each of the ${slots} slots trains on its own (${gpuSets(gpus, slots).join(" | ")})`)];
}

/** The local runner's runs folder and data cache, where it puts them (src/runner/select.ts). */
function runnerFolders(d: DoctorDeps): { runs: string; cache: string } {
  const home = d.env.HOME || os.homedir();
  // LocalRunner's default for the prepared data when AUTORESEARCH_CACHE_DIR is unset.
  const cache = d.env.AUTORESEARCH_CACHE_DIR || path.join(d.env.XDG_CACHE_HOME || path.join(home, ".cache"), "autoresearch-bot");
  return { runs: path.resolve(d.cwd, d.env.AUTORESEARCH_RUNS_DIR || ".runs"), cache: path.resolve(d.cwd, cache) };
}

/** The run and prepared-data folders can be written and have room. */
export function checkFolders(d: DoctorDeps): CheckResult[] {
  const { runs, cache } = runnerFolders(d);
  return [
    checkFolder({ check: "runs folder", variable: "AUTORESEARCH_RUNS_DIR", dir: runs, failBelow: 100 << 20, warnBelow: 1 << 30 }),
    checkFolder({ check: "data cache", variable: "AUTORESEARCH_CACHE_DIR", dir: cache, failBelow: 200 << 20, warnBelow: 5 * (1 << 30) }),
  ];
}

// ------------------------------------------------------------------ Kubernetes runner

/**
 * What the Kubernetes runner does in its namespace, from src/runner/kubernetes.ts (k8s/role.yaml
 * grants exactly this).
 */
export const RUNNER_ACCESS: readonly { group: string; resource: string; subresource?: string; verb: string; why: string }[] = [
  { group: "batch", resource: "jobs", verb: "create", why: "createNamespacedJob: the fetch and training Jobs" },
  { group: "batch", resource: "jobs", verb: "get", why: "readNamespacedJob: a run's Jobs" },
  { group: "batch", resource: "jobs", verb: "list", why: "listNamespacedJob: the Job informer's list, a repository's runs" },
  { group: "batch", resource: "jobs", verb: "watch", why: "the Job informer's watch" },
  { group: "batch", resource: "jobs", verb: "delete", why: "deleteNamespacedJob: cancel and clean up" },
  { group: "", resource: "pods", verb: "list", why: "listNamespacedPod: a Job's pods and termination messages" },
  { group: "", resource: "pods", subresource: "log", verb: "get", why: "readNamespacedPodLog: the log tail of a failed run" },
  { group: "", resource: "secrets", verb: "create", why: "createNamespacedSecret: a run's read token" },
  { group: "", resource: "secrets", verb: "delete", why: "deleteNamespacedSecret: cancel and clean up" },
  { group: "coordination.k8s.io", resource: "leases", verb: "create", why: "createNamespacedLease: the leader election's Lease, the first time" },
  { group: "coordination.k8s.io", resource: "leases", verb: "get", why: "readNamespacedLease: who leads" },
  { group: "coordination.k8s.io", resource: "leases", verb: "update", why: "replaceNamespacedLease: taking and renewing the lead" },
];

/**
 * KubeConfig.loadFromDefault, finding no KUBECONFIG, no ~/.kube/config and no service account,
 * does not fail: it settles on a made-up cluster at http://localhost:8080. That is "none found".
 */
export function isPlaceholderKubeConfig(kc: k8s.KubeConfig): boolean {
  const cluster = kc.getCurrentCluster();
  return kc.getCurrentContext() === "loaded-context" && cluster?.name === "cluster" && cluster.server === "http://localhost:8080";
}

const NO_KUBECONFIG_FIX = "set KUBECONFIG (or create ~/.kube/config) for the cluster, or run the bot in the cluster (k8s/deployment.yaml)";

function sampleSpec(repo: RepoRef): RunSpec {
  const sha = "0".repeat(40);
  return {
    runId: `${repo.owner}-${repo.repo}-1-1`,
    repo,
    pull: 1,
    sha,
    source: { url: `https://api.github.com/repos/${repo.owner}/${repo.repo}/tarball/${sha}`, token: "doctor" },
    workdir: DEFAULT_CONFIG.workdir,
    trainCmd: DEFAULT_CONFIG.trainCommand,
    prepareCmd: DEFAULT_CONFIG.prepareCommand,
    prepareFiles: DEFAULT_CONFIG.prepareFiles,
    budgetSeconds: DEFAULT_CONFIG.budgetSeconds,
    evalAllowanceSeconds: DEFAULT_CONFIG.evalAllowanceSeconds,
    seed: 1,
    timeoutSeconds: DEFAULT_CONFIG.timeoutSeconds,
    // The template's own evaluation, so that the scoring and probe Jobs are checked too.
    evaluation: { scoreCmd: "python3 prepare.py score", serveCmd: "python3 train.py serve", sha, url: `https://api.github.com/repos/${repo.owner}/${repo.repo}/tarball/${sha}` },
  };
}

/** The templates a location holds: a file, or a folder's job.yaml and <owner>.<repo>.yaml overrides. */
function templateRepos(location: string): { file: string; repo: RepoRef }[] {
  const fallback = { owner: "autoresearch-doctor", repo: "any" };
  let isDir = false;
  try {
    isDir = fs.statSync(location).isDirectory();
  } catch {
    // reading it reports the problem
  }
  if (!isDir) return [{ file: location, repo: fallback }];
  const out = [{ file: path.join(location, "job.yaml"), repo: fallback }];
  for (const name of fs.readdirSync(location).sort()) {
    const m = /^([^.]+)\.(.+)\.yaml$/.exec(name);
    if (m && name !== "job.yaml") out.push({ file: path.join(location, name), repo: { owner: m[1]!, repo: m[2]! } });
  }
  return out;
}

/**
 * A kubeconfig or in-cluster configuration, the namespace, the Job template (read, checked and
 * rendered by the runner's own code, then created with dryRun=All so that the API server and its
 * admission check every Job of a run (fetch, training, scoring, probe) without creating
 * anything), and the RBAC the runner needs
 * (SelfSubjectAccessReview per verb).
 */
export async function checkKubernetes(d: DoctorDeps): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  let kc: k8s.KubeConfig;
  try {
    kc = d.kubeConfig();
  } catch (err) {
    return [fail("kubeconfig", "environment", `the kubeconfig could not be loaded: ${errorText(err)}`, NO_KUBECONFIG_FIX)];
  }
  if (isPlaceholderKubeConfig(kc)) {
    return [fail("kubeconfig", "environment", "no kubeconfig found: set KUBECONFIG or run in a cluster", NO_KUBECONFIG_FIX)];
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) {
    return [fail("kubeconfig", "environment", `the kubeconfig has no usable current context (${JSON.stringify(kc.getCurrentContext())})`,
      "kubectl config use-context NAME, or set KUBECONFIG to the cluster's kubeconfig")];
  }
  const where = kc.getCurrentContext() === "inClusterContext" ? "in-cluster service account" : `context ${kc.getCurrentContext()}`;
  results.push(ok("kubeconfig", "environment", `${where}, cluster ${cluster.server}`));

  const configured = readVariable(d.env, "AUTORESEARCH_NAMESPACE");
  const namespace = namespaceFor(configured.ok ? (configured.value ?? null) : null, kc);
  const nsSource = configured.ok && configured.value ? "AUTORESEARCH_NAMESPACE" : "the default chain";
  results.push(ok("namespace", "environment", `${namespace} (from ${nsSource})`));

  // The template, through the runner itself: its reading, its checks and its rendering.
  const location = path.resolve(d.cwd, d.env.AUTORESEARCH_JOB_TEMPLATE || "k8s/job.yaml");
  const runner = new KubernetesRunner({ kubeConfig: kc, namespace, template: templateSource(location) });
  const rendered: { file: string; jobs: k8s.V1Job[] }[] = [];
  const templateProblems: string[] = [];
  try {
    for (const { file, repo } of templateRepos(location)) {
      const problems = await runner.validate(repo);
      if (problems.length) {
        templateProblems.push(`${path.relative(d.cwd, file) || file}: ${problems.join("; ")}`);
        continue;
      }
      const template = parseJobTemplate(await templateSource(location)(repo));
      const spec = sampleSpec(repo);
      rendered.push({
        file,
        jobs: [runner.renderFetch(template, spec), runner.render(template, spec), runner.renderEval(template, spec, "score"), runner.renderEval(template, spec, "probe")],
      });
    }
  } catch (err) {
    templateProblems.push(`${path.relative(d.cwd, location) || location}: ${errorText(err)}`);
  }
  const shown = path.relative(d.cwd, location) || location;
  if (templateProblems.length) {
    results.push(fail("job template", "environment", templateProblems.join(" | "),
      "edit the template (README: \"Running on Kubernetes\"), or point AUTORESEARCH_JOB_TEMPLATE at yours"));
  } else {
    results.push(ok("job template", "environment", `${shown}: ${rendered.length} template${rendered.length === 1 ? "" : "s"} checked and rendered (fetch and training Jobs)`));
  }

  // RBAC: one SelfSubjectAccessReview per verb the runner uses.
  const authz = kc.makeApiClient(k8s.AuthorizationV1Api);
  const denied: string[] = [];
  let canCreateJobs = false;
  try {
    for (const a of RUNNER_ACCESS) {
      const review = await withTimeout(
        authz.createSelfSubjectAccessReview({
          body: {
            apiVersion: "authorization.k8s.io/v1",
            kind: "SelfSubjectAccessReview",
            spec: { resourceAttributes: { namespace, group: a.group, resource: a.resource, subresource: a.subresource, verb: a.verb } },
          },
        }),
        d.timeoutMs,
        `the API server at ${cluster.server}`,
      );
      const name = `${a.verb} ${a.subresource ? `${a.resource}/${a.subresource}` : a.resource}`;
      if (review.status?.allowed) {
        if (a.resource === "jobs" && a.verb === "create") canCreateJobs = true;
      } else denied.push(`${name}${review.status?.reason ? ` (${review.status.reason})` : ""}`);
    }
  } catch (err) {
    results.push(fail("rbac", "environment", `could not ask the API server at ${cluster.server}: ${errorText(err)}`,
      "check that the cluster is reachable from here and the kubeconfig's credentials are valid (kubectl auth can-i list jobs)"));
    return results;
  }
  if (denied.length) {
    results.push(fail("rbac", "environment", `in namespace ${namespace} the runner may not: ${denied.join(", ")}`,
      `grant them in ${namespace}: k8s/role.yaml is the Role the runner needs (kubectl apply -n ${namespace} -f k8s/role.yaml binds it to the ServiceAccount autoresearch-bot; outside the cluster bind it to your kubeconfig's user)`));
  } else {
    results.push(ok("rbac", "environment", `${RUNNER_ACCESS.length} permissions in ${namespace}: jobs create/get/list/watch/delete, pods list, pods/log get, secrets create/delete, leases create/get/update`));
  }

  // The API server's own validation and admission of what the runner would create.
  if (templateProblems.length === 0 && canCreateJobs) {
    const batch = kc.makeApiClient(k8s.BatchV1Api);
    const refused: string[] = [];
    for (const { file, jobs } of rendered) {
      for (const body of jobs) {
        try {
          await withTimeout(batch.createNamespacedJob({ namespace, body, dryRun: "All" }), d.timeoutMs, `the API server at ${cluster.server}`);
        } catch (err) {
          if (err instanceof k8s.ApiException && err.code === 404) {
            results.push(fail("job dry run", "environment", `namespace ${namespace} does not exist (${errorText(err)})`,
              `kubectl create namespace ${namespace}, or set AUTORESEARCH_NAMESPACE`));
            return results;
          }
          if (!(err instanceof k8s.ApiException)) {
            results.push(fail("job dry run", "environment", `could not ask the API server at ${cluster.server}: ${errorText(err)}`,
              "check that the cluster is reachable from here"));
            return results;
          }
          refused.push(`${path.relative(d.cwd, file) || file}, Job ${body.metadata?.name}: ${errorText(err)}`);
        }
      }
    }
    if (refused.length) {
      results.push(fail("job dry run", "environment", `the API server refuses the rendered Jobs: ${refused.join(" | ")}`,
        "edit the Job template so that the API server accepts it (kubectl create --dry-run=server shows the same errors)"));
    } else {
      results.push(ok("job dry run", "environment", "the API server accepts the rendered Jobs (dryRun=All: nothing was created)"));
    }
  }
  return results;
}

// ------------------------------------------------------------------ credentials

/**
 * The API the key is checked against: GITHUB_API_URL, else Probot's own GHE_HOST (GitHub
 * Enterprise Server), else github.com.
 */
export function githubApiUrl(env: Env): string {
  if (env.GITHUB_API_URL) return env.GITHUB_API_URL.replace(/\/+$/, "");
  if (env.GHE_HOST) return `${env.GHE_PROTOCOL || "https"}://${env.GHE_HOST}/api/v3`;
  return "https://api.github.com";
}

/** An app JWT (RS256), as GitHub wants it: issued a minute early for clock drift, valid 10 minutes. */
export function appJwt(appId: string, key: KeyObject, nowMs = Date.now()): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const iat = Math.floor(nowMs / 1000) - 60;
  const unsigned = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({ iat, exp: iat + 600, iss: appId })}`;
  return `${unsigned}.${sign("RSA-SHA256", Buffer.from(unsigned), key).toString("base64url")}`;
}

const REGISTER_FIX =
  "register the app: npm start (it builds first) with no credentials serves the registration page on http://localhost:3000 " +
  "and writes APP_ID, PRIVATE_KEY and WEBHOOK_SECRET to .env; or set them from the app's settings page";

/** APP_ID, the private key Probot would load, and whether GitHub accepts the key for that app. */
export async function checkAppCredentials(d: DoctorDeps): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const appId = (d.env.APP_ID ?? "").trim();
  if (!appId && !d.env.PRIVATE_KEY && !d.env.PRIVATE_KEY_PATH) {
    return [fail("app", "credentials", "APP_ID and PRIVATE_KEY are not set: the app is not registered here yet", REGISTER_FIX)];
  }
  if (!appId) results.push(fail("app id", "credentials", "APP_ID is not set", "set APP_ID to the \"App ID\" number on the app's settings page"));
  else if (!/^\d+$/.test(appId)) {
    // Probot reads Number(APP_ID): anything else (a client ID "Iv1…") starts the registration page.
    results.push(fail("app id", "credentials", `APP_ID must be the app's numeric ID, not ${JSON.stringify(appId)}`,
      "copy the \"App ID\" number from the app's settings page (not the client ID)"));
  } else results.push(ok("app id", "credentials", `APP_ID ${appId}`));

  // Found exactly as Probot finds it: PRIVATE_KEY (PEM, escaped newlines or base64),
  // PRIVATE_KEY_PATH, or the one *.pem file in the working folder.
  let pem: string | null;
  try {
    pem = getPrivateKey({ env: d.env as NodeJS.ProcessEnv, cwd: d.cwd });
  } catch (err) {
    results.push(fail("private key", "credentials", (err as Error).message.replace(/^\[@probot\/get-private-key\] /, ""),
      "set PRIVATE_KEY to the content of the .pem file GitHub gave you (\\n for newlines is fine), or PRIVATE_KEY_PATH to the file"));
    return results;
  }
  if (!pem) {
    results.push(fail("private key", "credentials", "neither PRIVATE_KEY nor PRIVATE_KEY_PATH is set (and no *.pem file is in the working folder)", REGISTER_FIX));
    return results;
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    results.push(fail("private key", "credentials", `the private key does not parse: ${(err as Error).message}`,
      "use the .pem file downloaded from the app's settings page (Private keys → Generate a private key), unchanged"));
    return results;
  }
  if (key.asymmetricKeyType !== "rsa") {
    results.push(fail("private key", "credentials", `the private key is ${key.asymmetricKeyType ?? "not asymmetric"}, not RSA: GitHub App keys are RSA`,
      "use the .pem file downloaded from the app's settings page"));
    return results;
  }
  results.push(ok("private key", "credentials", `RSA ${key.asymmetricKeyDetails?.modulusLength ?? "?"} bits`));
  if (!/^\d+$/.test(appId)) return results;

  const api = githubApiUrl(d.env);
  let res: Response;
  try {
    res = await d.fetch(`${api}/app`, {
      headers: {
        accept: "application/vnd.github+json",
        authorization: `Bearer ${appJwt(appId, key)}`,
        "user-agent": "autoresearch-bot-doctor",
        "x-github-api-version": "2022-11-28",
      },
      signal: AbortSignal.timeout(d.timeoutMs),
    });
  } catch (err) {
    const timedOut = (err as Error).name === "TimeoutError";
    results.push(warn("github app", "credentials",
      `could not verify the key with ${api}/app: ${timedOut ? `no answer within ${seconds(d.timeoutMs)}` : errorText(err)}`,
      "run doctor where GitHub is reachable to check that the key belongs to the app (GITHUB_API_URL for GitHub Enterprise)"));
    return results;
  }
  const body = (await res.json().catch(() => ({}))) as { slug?: string; name?: string; message?: string; installations_count?: number; owner?: { login?: string } };
  if (res.status === 401) {
    results.push(fail("github app", "credentials",
      `GitHub refused the app's JWT (401${body.message ? `: ${body.message}` : ""}): the private key does not belong to app ${appId}, or this machine's clock is off`,
      "check APP_ID, generate a new private key on the app's settings page (Private keys), and that the clock is right (timedatectl)"));
    return results;
  }
  if (!res.ok) {
    results.push(warn("github app", "credentials", `could not verify the key: ${api}/app answered HTTP ${res.status}${body.message ? ` (${body.message})` : ""}`,
      "run doctor again later; GITHUB_API_URL names the API for GitHub Enterprise"));
    return results;
  }
  results.push(ok("github app", "credentials", `GitHub accepts the key for app ${body.slug ?? appId}${body.owner?.login ? ` (owned by ${body.owner.login})` : ""}`));
  const slug = d.env.AUTORESEARCH_APP_SLUG;
  if (slug && body.slug && slug !== body.slug) {
    results.push(warn("app slug", "credentials",
      `AUTORESEARCH_APP_SLUG=${slug} but the app is ${body.slug}: the ledger is read from the pull requests of ${slug}[bot], which this app does not open`,
      `set AUTORESEARCH_APP_SLUG=${body.slug}, or unset it (the bot then reads the slug from GitHub)`));
  }
  if (body.installations_count === 0) {
    results.push(warn("installations", "credentials", "the app is not installed on any repository yet",
      `install it on the research repository (the app's page: https://github.com/apps/${body.slug ?? "<slug>"})`));
  }
  return results;
}

/** Without WEBHOOK_SECRET Probot checks deliveries against its "development" secret. */
export function checkWebhookSecret(env: Env): CheckResult {
  if (!env.WEBHOOK_SECRET) {
    return fail("webhook secret", "credentials",
      "WEBHOOK_SECRET is not set: Probot would check every delivery against its default secret \"development\" and refuse GitHub's",
      "set WEBHOOK_SECRET to the secret on the app's settings page (Webhook secret)");
  }
  return ok("webhook secret", "credentials", "WEBHOOK_SECRET is set");
}

// ------------------------------------------------------------------ LLM

/** With OPENAI_API_KEY set: the endpoint lists its models within the timeout. */
export async function checkLlm(d: DoctorDeps): Promise<CheckResult> {
  const apiKey = d.env.OPENAI_API_KEY;
  if (!apiKey) return ok("llm", "llm", "OPENAI_API_KEY is not set: repositories use the built-in mutate proposer");
  // Explicit, so that the client reads nothing from the process environment.
  const baseURL = (d.env.OPENAI_BASE_URL || "https://api.openai.com/v1").replace(/\/+$/, "");
  const client = new OpenAI({ apiKey, baseURL, timeout: d.timeoutMs, maxRetries: 0, fetch: d.fetch });
  const fix = "check OPENAI_BASE_URL (an OpenAI-compatible /v1 URL) and that the server is up and reachable from here";
  try {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    const answer = d.env.AUTORESEARCH_ANSWER_MODEL;
    if (answer && ids.length && !ids.includes(answer)) {
      return warn("llm", "llm", `${baseURL} does not list AUTORESEARCH_ANSWER_MODEL=${answer} (it serves ${ids.slice(0, 8).join(", ")})`,
        "set AUTORESEARCH_ANSWER_MODEL to one of the served models");
    }
    const list = ids.length ? `: ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", …" : ""}` : "";
    return ok("llm", "llm", `${baseURL} answers, ${ids.length} model${ids.length === 1 ? "" : "s"}${list}`);
  } catch (err) {
    if (err instanceof OpenAI.AuthenticationError) {
      return fail("llm", "llm", `${baseURL} refuses OPENAI_API_KEY (401)`, "set OPENAI_API_KEY to a valid key for this endpoint");
    }
    if (err instanceof OpenAI.APIConnectionTimeoutError) {
      return fail("llm", "llm", `${baseURL}/models: no answer within ${seconds(d.timeoutMs)}`, fix);
    }
    if (err instanceof OpenAI.APIConnectionError) return fail("llm", "llm", `${baseURL}/models: ${errorText(err)}`, fix);
    if (err instanceof OpenAI.APIError && err.status === 404) {
      // Some compatible servers have no /models; chat completions may still work.
      return warn("llm", "llm", `${baseURL} answers but has no /models (404): the models could not be listed`, fix);
    }
    return fail("llm", "llm", `${baseURL}/models: ${errorText(err)}`, fix);
  }
}

// ------------------------------------------------------------------ all together

/** Every check for the configured runner, in the order they are printed. */
export async function runDoctor(d: DoctorDeps): Promise<CheckResult[]> {
  const results: CheckResult[] = [checkNode(d)];
  const settings = checkSettings(d.env);
  results.push(settings);
  const kind = runnerKindOf(d.env);
  if (kind === "local") {
    results.push(await checkGit(d), await checkHarness(d));
    const torch = await findTorch(d);
    const sandbox = checkSandbox(d);
    results.push(...torch.results, sandbox, ...(await checkSandboxTorch(d, torch, sandbox)), ...(await checkGpus(d)), ...checkFolders(d));
  } else if (kind === "kubernetes") {
    results.push(...(await checkKubernetes(d)));
  }
  results.push(...(await checkAppCredentials(d)), checkWebhookSecret(d.env), await checkLlm(d));
  return results;
}

/** 0 when the configured path can run an experiment (warnings allowed), else 1. */
export function exitCodeOf(results: CheckResult[]): 0 | 1 {
  return results.some((r) => r.level === "fail") ? 1 : 0;
}

/** The failures that keep `npm start` from starting (see the areas at the top). */
export function fatalAtStart(results: CheckResult[]): CheckResult[] {
  return results.filter((r) => r.level === "fail" && r.area === "environment");
}

/** One line for a log: the check, what was found and the fix. */
export function describeResult(r: CheckResult): string {
  return `${r.check}: ${r.message}${r.fix ? `. Fix: ${r.fix}` : ""}`;
}

const TAG: Record<Level, string> = { ok: "ok  ", warn: "warn", fail: "FAIL" };

/** The report `doctor` prints: one line per check, the fix under each problem, a verdict. */
export function formatReport(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.check.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${TAG[r.level]}  ${r.check.padEnd(width)}  ${r.message}`);
    if (r.fix && r.level !== "ok") lines.push(`${" ".repeat(width + 8)}fix: ${r.fix}`);
  }
  const fails = results.filter((r) => r.level === "fail").length;
  const warns = results.filter((r) => r.level === "warn").length;
  lines.push("");
  if (fails) {
    lines.push(`${fails} FAIL${warns ? `, ${warns} warning${warns === 1 ? "" : "s"}` : ""}: this setup cannot run an experiment yet.`);
  } else {
    lines.push(`${warns ? `${warns} warning${warns === 1 ? "" : "s"}; ` : "all checks passed; "}this setup can run experiments.`);
  }
  return lines.join("\n");
}

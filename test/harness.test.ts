// trainer/harness.py end to end: real python3 processes, stub trainers (no PyTorch), real git
// repositories and a local HTTP server standing in for GitHub's tarball endpoint.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { appendFile, copyFile, cp, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const execFileAsync = promisify(execFile);

const here = path.dirname(fileURLToPath(import.meta.url));
const HARNESS = path.resolve(here, "..", "trainer", "harness.py");
const STUBS = path.join(here, "fixtures", "stub-trainers");
const AUTORESEARCH_LOG = path.join(here, "fixtures", "autoresearch-run.log");

interface HarnessResult {
  status: "ok" | "crash" | "oom" | "timeout" | "nan";
  val_bpb: number | null;
  exit_code: number | null;
  reason: string;
  log_tail: string;
  stage: "fetch" | "prepare" | "train";
  run_id: string | null;
  commit: string | null;
  duration_seconds: number | null;
  harness_version: string;
  [key: string]: unknown;
}

interface HarnessRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  env?: Record<string, string | undefined>;
  /** Arguments for python3 before the harness path (e.g. a measuring wrapper). */
  launcher?: string[];
  /** A command python3 runs under (its program and arguments, ending with "--" or the like). */
  wrap?: string[];
  onSpawn?: (child: ChildProcess) => void;
  /** Written to the harness's standard input (e.g. the token with --token-stdin). */
  stdin?: string;
}

const scratchDirs: string[] = [];

afterAll(async () => {
  await Promise.all(scratchDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** bubblewrap on PATH (the sandbox tests need it, as the local runner does). */
function whichBwrap(): string {
  const dir = (process.env.PATH ?? "").split(path.delimiter).find((d) => d && existsSync(path.join(d, "bwrap")));
  if (!dir) throw new Error("bwrap is not on PATH (apt-get install bubblewrap)");
  return path.join(dir, "bwrap");
}

async function scratch(): Promise<string> {
  const dir = await realpath(await mkdtemp(path.join(os.tmpdir(), "harness-test-")));
  scratchDirs.push(dir);
  return dir;
}

function runHarness(args: string[], options: RunOptions = {}): Promise<HarnessRun> {
  return new Promise((resolve, reject) => {
    const [file, ...pre] = [...(options.wrap ?? []), "python3"];
    const child = spawn(file!, [...pre, ...(options.launcher ?? []), HARNESS, ...args], {
      env: { ...process.env, ...options.env },
      stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    options.onSpawn?.(child);
  });
}

/** The JSON result: the last line of the harness's stdout. */
function resultOf(run: HarnessRun): HarnessResult {
  const last = run.stdout.trimEnd().split("\n").pop() ?? "";
  try {
    return JSON.parse(last) as HarnessResult;
  } catch {
    throw new Error(`no JSON result on stdout (exit ${run.code}).\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
}

/** A research repo folder whose train.py is the given stub trainer. */
async function repoWithStub(dir: string, stub: string, extra: Record<string, string> = {}): Promise<string> {
  const repo = path.join(dir, "repo");
  await mkdir(repo, { recursive: true });
  await copyFile(path.join(STUBS, stub), path.join(repo, "train.py"));
  for (const [name, source] of Object.entries(extra)) {
    await copyFile(path.join(STUBS, source), path.join(repo, name));
  }
  return repo;
}

/** Run a stub trainer as train.py of a local folder, with a cache of its own. */
async function runStub(stub: string, args: string[] = [], options: RunOptions = {}) {
  const dir = await scratch();
  const repo = await repoWithStub(dir, stub);
  const run = await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--budget", "3", ...args], options);
  return { dir, repo, run, result: resultOf(run) };
}

/** git without variables from an enclosing git process pointing it elsewhere. */
async function git(cwd: string, ...args: string[]): Promise<string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("GIT_")) env[key] = value;
  }
  const config = ["-c", "user.name=Experimenter", "-c", "user.email=experimenter@example.com", "-c", "commit.gpgsign=false"];
  const { stdout } = await execFileAsync("git", [...config, ...args], { cwd, env });
  return stdout.trim();
}

async function gitRepo(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  await git(dir, "init", "-q", "-b", "main");
  await commitFiles(dir, files, "first");
  return dir;
}

async function commitFiles(dir: string, files: Record<string, string>, message: string): Promise<string> {
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  await git(dir, "add", ...Object.keys(files));
  await git(dir, "commit", "-q", "-m", message);
  return git(dir, "rev-parse", "HEAD");
}

/** A running process, not counting a zombie that only waits to be reaped. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return process.platform !== "linux";
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return condition();
}

function killIfRunning(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function readPids(file: string): Promise<number[]> {
  return (await readFile(file, "utf8")).trim().split(/\s+/).map(Number);
}

interface Server {
  url: string;
  requests: { path: string; authorization: string | undefined }[];
  close(): Promise<void>;
}

async function serve(routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void>): Promise<Server> {
  const requests: Server["requests"] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    requests.push({ path: url.pathname, authorization: req.headers.authorization });
    const route = routes[url.pathname];
    if (route) route(req, res);
    else res.writeHead(404, { "content-type": "application/json" }).end('{"message":"Not Found"}');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The summary block of a real autoresearch run (test/fixtures/autoresearch-run.log). */
const SUMMARY = {
  val_bpb: 0.9979,
  training_seconds: 300.1,
  total_seconds: 325.9,
  peak_vram_mb: 45060.2,
  mfu_percent: 39.8,
  total_tokens_M: 499.6,
  num_steps: 953,
  num_params_M: 50.3,
  depth: 8,
};

/** What the good.py stub prints: the same block, with the half second of training it can claim. */
const STUB_SUMMARY = { ...SUMMARY, training_seconds: 0.5 };

describe("trainer/harness.py", () => {
  describe("classifying a training run", () => {
    it("reports ok with val_bpb and every summary field of a successful run", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py");
      const resultFile = path.join(dir, "out", "result.json");
      const run = await runHarness([
        "--repo", repo, "--cache-dir", path.join(dir, "cache"), "--budget", "3",
        "--run-id", "acme-lab-17-1", "--result", resultFile,
      ]);
      const result = resultOf(run);

      expect(run.code).toBe(0);
      expect(result).toMatchObject({ status: "ok", ...STUB_SUMMARY, exit_code: 0, stage: "train", run_id: "acme-lab-17-1", commit: null });
      expect(result.reason).toContain("0.997900");
      expect(result.duration_seconds).toBeGreaterThan(0);
      expect(result.harness_version).toMatch(/^\d+\.\d+\.\d+$/);
      // The --result file holds the same object as stdout's last line.
      expect(JSON.parse(await readFile(resultFile, "utf8"))).toEqual(result);
      // Progress overwritten with \r keeps only its last state in the tail.
      expect(result.log_tail).toContain("step 00004 (80.0%)");
      expect(result.log_tail).not.toContain("step 00003");
      expect(result.log_tail).not.toContain("\r");
      expect(result.log_tail.endsWith("depth:            8")).toBe(true);
    });

    it("reports a Python exception as a crash with the exception as the reason", async () => {
      const { run, result } = await runStub("raises.py");
      expect(run.code).toBe(1);
      expect(result.status).toBe("crash");
      expect(result.reason).toBe("ValueError: learning rate must be positive, got -0.0004");
      expect(result.exit_code).toBe(1);
      expect(result.val_bpb).toBeNull();
      expect(result.log_tail).toContain("Traceback (most recent call last):");
    });

    it("kills a run past its timeout together with the processes it started, without waiting out the grace period", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "hangs-with-child.py");
      const pidFile = path.join(dir, "pids");
      let pids: number[] = [];
      try {
        const run = await runHarness(
          ["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--budget", "1", "--timeout", "2", "--heartbeat", "1"],
          { env: { STUB_PIDS: pidFile } },
        );
        const result = resultOf(run);
        pids = await readPids(pidFile);

        expect(run.code).toBe(1);
        expect(result.status).toBe("timeout");
        expect(result.reason).toMatch(/^timed out after 2 s/);
        expect(result.duration_seconds).toBeGreaterThanOrEqual(2);
        expect(pids).toHaveLength(2);
        // The trainer and the helper it started (which ignores SIGTERM) are both gone.
        for (const pid of pids) expect(await waitFor(() => !isRunning(pid), 30_000)).toBe(true);
        // The helper went with the trainer as soon as the trainer ended (SIGKILL to the whole
        // group), not after the grace period for SIGTERM: the harness never had to escalate.
        expect(run.stderr).toMatch(/train: hard timeout of 2 s reached; sending SIGTERM to the process group/);
        expect(run.stderr).not.toMatch(/still running .* after SIGTERM/);
        // Long runs show life on stderr.
        expect(run.stderr).toMatch(/\[harness\] train \d+s \| step 00000 \(0\.0%\) \| loss: 9\.0109/);
      } finally {
        killIfRunning(pids);
      }
    });

    it("reports nan when the trainer prints FAIL after its progress line", async () => {
      const { run, result } = await runStub("prints-fail.py");
      expect(run.code).toBe(1);
      expect(result.status).toBe("nan");
      expect(result.reason).toContain("FAIL");
      expect(result.log_tail).toMatch(/loss: nan \| remaining: 299s\s+FAIL$/);
    });

    it("reports nan when val_bpb itself is NaN, with val_bpb null", async () => {
      const { run, result } = await runStub("nan-val-bpb.py");
      expect(run.code).toBe(1);
      expect(result.status).toBe("nan");
      expect(result.val_bpb).toBeNull();
      expect(result.reason).toBe("val_bpb is nan");
      expect(result.num_steps).toBe(950);
    });

    it("reports oom with PyTorch's own words for a CUDA out-of-memory error", async () => {
      const { run, result } = await runStub("cuda-oom.py");
      expect(run.code).toBe(1);
      expect(result.status).toBe("oom");
      expect(result.reason).toBe(
        "CUDA out of memory: Tried to allocate 8.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 2.31 GiB is free.",
      );
      expect(result.exit_code).toBe(1);
    });

    it("reports oom when the trainer is killed by SIGKILL it did not get from the harness", async () => {
      const { run, result } = await runStub("sigkill.py");
      expect(run.code).toBe(1);
      expect(result.status).toBe("oom");
      expect(result.reason).toBe("killed by SIGKILL (likely host out-of-memory)");
      // -9 when python3 is the shell's direct child, 137 when a wrapper script reports it.
      expect([-9, 137]).toContain(result.exit_code);
    });

    it("reports a crash when the trainer exits 0 without printing val_bpb", async () => {
      const { run, result } = await runStub("no-summary.py");
      expect(run.code).toBe(1);
      expect(result.status).toBe("crash");
      expect(result.reason).toBe("exited 0 but printed no val_bpb summary");
      expect(result.exit_code).toBe(0);
    });

    it("reads a real autoresearch log end to end, and does not believe 300 s of training replayed in a moment", async () => {
      const { run, result } = await runStub("good.py", ["--train-cmd", `cat '${AUTORESEARCH_LOG}'`, "--budget", "300"]);
      expect(run.code).toBe(1);
      expect(result).toMatchObject({ status: "over_budget", ...SUMMARY });
      expect(result.reason).toMatch(/^not a valid measurement: the run reported 300\.1 s of training, but its command ran only 0(\.\d)? s by the wall clock$/);
      expect(result.log_tail).toContain("step 00952 (99.9%) | loss: 3.0014");
      expect(result.log_tail).not.toContain("step 00951");
    });

    it("measures the budget from outside: past budget + allowance by the wall clock, or more training reported than the budget", async () => {
      const dir = await scratch();
      const repo = path.join(dir, "repo");
      await mkdir(repo);
      const stub = (seconds: string, sleep: number) =>
        `import time\ntime.sleep(${sleep})\nprint("---")\nprint("val_bpb: 0.5")\nprint("training_seconds: ${seconds}")\n`;
      const run = async (train: string, budget: string, allowance: string) => {
        await writeFile(path.join(repo, "train.py"), train);
        return resultOf(await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--budget", budget, "--eval-allowance", allowance]));
      };
      // The allowances are wide where the wall clock must stay under them, so that a busy machine
      // (a slower start of python3) does not change the verdict.
      // Honest: 1.2 s of a 1 s budget (its last step), 1.5 s of wall clock.
      expect((await run(stub("1.2", 1.5), "1", "60")).status).toBe("ok");
      // It stops counting part of its time: it claims 30 s, within a budget of 40 s, but ran 0.5 s.
      expect(await run(stub("30", 0.5), "40", "60")).toMatchObject({ status: "over_budget", val_bpb: 0.5 });
      // It multiplies the budget: 40 s of training claimed against a budget of 20 s.
      const greedy = await run(stub("40", 0.2), "20", "60");
      expect(greedy.reason).toMatch(/reported 40 s of training, more than the budget of 20 s/);
      // It trains past budget + allowance by the wall clock, whatever it says.
      const slow = await run(stub("1", 3), "1", "1");
      expect(slow.status).toBe("over_budget");
      expect(slow.reason).toMatch(/ran 3(\.\d)? s by the wall clock, more than the budget of 1 s plus 1 s/);
    });
  });

  describe("output handling", () => {
    it("keeps its memory and log_tail bounded when progress fills one 16 MB line", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "huge-progress.py");
      const rssFile = path.join(dir, "maxrss");
      const logFile = path.join(dir, "train.log");
      // Peak resident memory of the harness (and of the stub, which writes in small pieces).
      const measure = [
        "-c",
        "import resource, subprocess, sys\n" +
          "code = subprocess.call(sys.argv[2:])\n" +
          "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n" +
          "open(sys.argv[1], 'w').write(str(peak if sys.platform == 'darwin' else peak * 1024))\n" +
          "sys.exit(code)",
        rssFile,
        "python3",
      ];
      const run = await runHarness(
        ["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--log", logFile],
        { launcher: measure, env: { STUB_PROGRESS_MB: "16" } },
      );
      const result = resultOf(run);

      expect(run.code).toBe(0);
      expect(result.status).toBe("ok");
      expect(result.val_bpb).toBe(0.9979);
      expect(Buffer.byteLength(result.log_tail, "utf8")).toBeLessThanOrEqual(3000);
      expect(result.log_tail).toMatch(/^step \d+ \(\d+\.\d%\) \| loss: /);
      // The full output is streamed to --log, not dropped.
      expect((await stat(logFile)).size).toBeGreaterThan(16 * 1024 * 1024);
      const peakBytes = Number(await readFile(rssFile, "utf8"));
      expect(peakBytes).toBeGreaterThan(0);
      expect(peakBytes).toBeLessThan(48 * 1024 * 1024);
    });

    it("writes a termination log of valid JSON within 4096 bytes, cutting log_tail first", async () => {
      const dir = await scratch();
      const terminationLog = path.join(dir, "termination-log");
      const { run, result } = await runStub("noisy-crash.py", ["--termination-log", terminationLog]);
      const text = await readFile(terminationLog, "utf8");
      const cut = JSON.parse(text) as HarnessResult;

      expect(run.code).toBe(1);
      // The full result does not fit: escaping makes its log_tail larger than 4096 bytes.
      const fullLine = run.stdout.trimEnd().split("\n").pop() ?? "";
      expect(Buffer.byteLength(fullLine, "utf8")).toBeGreaterThan(4096);
      expect(Buffer.byteLength(text, "utf8")).toBeLessThanOrEqual(4096);
      expect(cut).toMatchObject({ status: "crash", reason: "RuntimeError: gradient norm is infinite at step 200", stage: "train" });
      expect(cut.log_tail.length).toBeGreaterThan(0);
      expect(result.log_tail.endsWith(cut.log_tail)).toBe(true);
    });
  });

  describe("environment and data preparation", () => {
    it("gives the trainer its time budget and the prepared data folder", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py", { "prepare.py": "prepare.py" });
      const cacheDir = path.join(dir, "cache");
      const reportFile = path.join(dir, "report.json");
      const run = await runHarness(
        ["--repo", repo, "--cache-dir", cacheDir, "--budget", "7", "--prepare-cmd", "python3 prepare.py"],
        { env: { STUB_REPORT: reportFile, STUB_PREPARE_COUNTER: path.join(dir, "prepare-count") } },
      );
      const report = JSON.parse(await readFile(reportFile, "utf8")) as { budget: string; data_dir: string; data_files: string[]; cwd: string };

      expect(run.code).toBe(0);
      expect(report.budget).toBe("7");
      expect(path.dirname(report.data_dir)).toBe(cacheDir);
      expect(path.basename(report.data_dir)).toMatch(/^data-[0-9a-f]{16}$/);
      expect(report.data_files).toContain("shard_00000.bin");
      expect(report.cwd).toBe(repo);
    });

    it("prepares once per cache key and again when prepare.py changes", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py", { "prepare.py": "prepare.py" });
      const counter = path.join(dir, "prepare-count");
      const reportFile = path.join(dir, "report.json");
      const args = ["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--prepare-cmd", "python3 prepare.py"];
      const env = { STUB_PREPARE_COUNTER: counter, STUB_REPORT: reportFile };
      const dataDir = async () => (JSON.parse(await readFile(reportFile, "utf8")) as { data_dir: string }).data_dir;

      expect((await runHarness(args, { env })).code).toBe(0);
      const first = await dataDir();
      expect((await runHarness(args, { env })).code).toBe(0);
      expect(await readFile(counter, "utf8")).toBe("1");
      expect(await dataDir()).toBe(first);

      await appendFile(path.join(repo, "prepare.py"), "# tokenizer vocabulary raised to 16,384\n");
      expect((await runHarness(args, { env })).code).toBe(0);
      expect(await readFile(counter, "utf8")).toBe("2");
      const second = await dataDir();
      expect(second).not.toBe(first);

      // Another corpus is another data set.
      expect((await runHarness(args, { env: { ...env, AUTORESEARCH_CORPUS: "/data/other-corpus" } })).code).toBe(0);
      expect(await readFile(counter, "utf8")).toBe("3");
      expect(await dataDir()).not.toBe(second);
    });

    it("prepares once when two runs with the same key start together", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py", { "prepare.py": "prepare.py" });
      const counter = path.join(dir, "prepare-count");
      const args = ["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--prepare-cmd", "python3 prepare.py"];
      const env = { STUB_PREPARE_COUNTER: counter, STUB_PREPARE_SECONDS: "1" };
      const runs = await Promise.all([runHarness(args, { env }), runHarness(args, { env })]);

      expect(runs.map((run) => resultOf(run).status)).toEqual(["ok", "ok"]);
      expect(await readFile(counter, "utf8")).toBe("1");
    });

    it("ends with exit 3 at stage prepare when the preparation fails", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py", { "prepare.py": "prepare-fails.py" });
      const run = await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--prepare-cmd", "python3 prepare.py"]);
      const result = resultOf(run);

      expect(run.code).toBe(3);
      expect(result).toMatchObject({ status: "crash", stage: "prepare", exit_code: 1, duration_seconds: null });
      expect(result.reason).toBe(
        "prepare failed: exit 1: ConnectionError: could not download shard_00000.parquet: connection reset by peer",
      );
      expect(result.log_tail).toContain("Downloading shard_00000.parquet");
    });

    it("says the disk is full, as an infrastructure failure and not the experiment's crash, when its log cannot be written", async () => {
      // /dev/full fails every write with ENOSPC, as a full disk does.
      const dir = await scratch();
      const resultFile = path.join(dir, "result.json");
      const { run, result } = await runStub("good.py", ["--log", "/dev/full", "--result", resultFile]);

      expect(run.code).toBe(3);
      expect(result).toMatchObject({ status: "crash", stage: "train", infrastructure: true, val_bpb: null });
      expect(result.reason).toMatch(/^the disk is full: .*No space left on device/);
      expect(result.reason).toContain("/dev/full");
      expect(JSON.parse(await readFile(resultFile, "utf8"))).toEqual(result);
    });

    it("keeps a summary field named infrastructure away from the result's own flag", async () => {
      // A training that claims the failure was not its own is still its own crash.
      const dir = await scratch();
      const repo = path.join(dir, "repo");
      await mkdir(repo);
      await writeFile(path.join(repo, "train.py"), 'import sys\nprint("---")\nprint("val_bpb: 1.0")\nprint("infrastructure: true")\nsys.exit(1)\n');
      const run = await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--budget", "3"]);
      const result = resultOf(run);
      expect(result).toMatchObject({ status: "crash", stage: "train", summary_infrastructure: "true" });
      expect(result.infrastructure).toBeUndefined();
    });

    it("runs python3 and python in the commands as the --python interpreter", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py");
      const venv = path.join(dir, "venv");
      await execFileAsync("python3", ["-m", "venv", "--without-pip", venv]);
      const reportFile = path.join(dir, "report.json");
      const run = await runHarness(
        [
          "--repo", repo, "--cache-dir", path.join(dir, "cache"), "--python", path.join(venv, "bin", "python"),
          "--train-cmd", "python -c 'import sys; print(sys.prefix)' > python-prefix.txt && python3 train.py",
        ],
        { env: { STUB_REPORT: reportFile } },
      );
      const report = JSON.parse(await readFile(reportFile, "utf8")) as { prefix: string };

      expect(run.code).toBe(0);
      expect(report.prefix).toBe(venv);
      expect((await readFile(path.join(repo, "python-prefix.txt"), "utf8")).trim()).toBe(venv);
    });
  });

  describe("obtaining the repository", () => {
    it("runs the train.py of an older commit of a local git repo and leaves the checkout alone", async () => {
      const dir = await scratch();
      const repo = await gitRepo(path.join(dir, "research"), { "train.py": 'print("---")\nprint("val_bpb: 1.100000")\n' });
      const older = await git(repo, "rev-parse", "HEAD");
      const newer = await commitFiles(repo, { "train.py": 'print("---")\nprint("val_bpb: 0.900000")\n' }, "second");

      const run = await runHarness(["--repo", repo, "--commit", older, "--cache-dir", path.join(dir, "cache")]);
      const result = resultOf(run);

      expect(run.code).toBe(0);
      expect(result.val_bpb).toBe(1.1);
      expect(result.commit).toBe(older);
      expect(await git(repo, "rev-parse", "HEAD")).toBe(newer);
      expect(await git(repo, "status", "--porcelain")).toBe("");
      expect((await git(repo, "worktree", "list")).split("\n")).toHaveLength(1);
      expect(await readFile(path.join(repo, "train.py"), "utf8")).toContain("0.900000");
    });

    it("waits the retry-after of a rate-limited download (429, or 403 with retry-after) before asking again", async () => {
      const dir = await scratch();
      const source = await gitRepo(path.join(dir, "source"), { "train.py": await readFile(path.join(STUBS, "good.py"), "utf8") });
      const tarball = path.join(dir, "repo.tar.gz");
      await git(source, "archive", "--format=tar.gz", "--prefix=owner-repo-abc123/", "-o", tarball, "HEAD");
      const asked: number[] = [];
      const server = await serve({
        "/repos/owner/repo/tarball/abc123": (_req, res) => {
          asked.push(performance.now()); // monotonic, as the harness's sleep is
          if (asked.length === 1) res.writeHead(429, { "retry-after": "2" }).end("{}");
          else if (asked.length === 2) res.writeHead(403, { "retry-after": "1" }).end('{"message":"You have exceeded a secondary rate limit."}');
          else res.writeHead(200, { "content-type": "application/x-gzip" }).end(readFileSync(tarball));
        },
      });
      try {
        const run = await runHarness(["--repo", `${server.url}/repos/owner/repo/tarball/abc123`, "--commit", "abc123", "--cache-dir", path.join(dir, "cache")]);
        expect(resultOf(run).status).toBe("ok");
        expect(asked).toHaveLength(3);
        expect(run.stderr).toMatch(/rate limited; retry-after 2 s\); retrying in 2 s/);
        expect(run.stderr).toMatch(/rate limited; retry-after 1 s\)[^\n]*; retrying in 1 s/);
        // Lower bounds only: a busy machine makes the gaps longer, never shorter.
        expect(asked[1]! - asked[0]!).toBeGreaterThanOrEqual(2000);
        expect(asked[2]! - asked[1]!).toBeGreaterThanOrEqual(1000);
      } finally {
        await server.close();
      }
    });

    it("downloads a tarball URL with the token and keeps the token away from the trainer", async () => {
      const dir = await scratch();
      const source = await gitRepo(path.join(dir, "source"), {
        "train.py": await readFile(path.join(STUBS, "good.py"), "utf8"),
      });
      const tarball = path.join(dir, "repo.tar.gz");
      await git(source, "archive", "--format=tar.gz", "--prefix=owner-repo-abc123/", "-o", tarball, "HEAD");
      const server = await serve({
        "/repos/owner/repo/tarball/abc123": (req, res) => {
          if (req.headers.authorization !== "Bearer secret") res.writeHead(401).end();
          else res.writeHead(302, { location: "/codeload/owner/repo/legacy.tar.gz/abc123" }).end();
        },
        "/codeload/owner/repo/legacy.tar.gz/abc123": (_req, res) => {
          res.writeHead(200, { "content-type": "application/x-gzip" }).end(readFileSync(tarball));
        },
      });
      try {
        const tokenFile = path.join(dir, "token");
        await writeFile(tokenFile, "secret\n");
        const reportFile = path.join(dir, "report.json");
        const run = await runHarness(
          [
            "--repo", `${server.url}/repos/owner/repo/tarball/abc123`, "--commit", "abc123",
            "--token-file", tokenFile, "--cache-dir", path.join(dir, "cache"),
          ],
          { env: { STUB_REPORT: reportFile } },
        );
        const result = resultOf(run);
        const report = JSON.parse(await readFile(reportFile, "utf8")) as { environ: Record<string, string> };

        expect(run.code).toBe(0);
        expect(result).toMatchObject({ status: "ok", val_bpb: 0.9979, commit: "abc123", stage: "train" });
        expect(server.requests[0]).toEqual({ path: "/repos/owner/repo/tarball/abc123", authorization: "Bearer secret" });
        expect(server.requests.map((r) => r.path)).toContain("/codeload/owner/repo/legacy.tar.gz/abc123");
        expect(Object.values(report.environ).some((value) => value.includes("secret"))).toBe(false);
        expect(run.stdout + run.stderr).not.toContain("secret");
      } finally {
        await server.close();
      }
    });

    it("ends with exit 3 at stage fetch when the tarball URL answers 404", async () => {
      const dir = await scratch();
      const server = await serve({});
      try {
        const run = await runHarness(["--repo", `${server.url}/repos/owner/repo/tarball/0000000`, "--cache-dir", path.join(dir, "cache")]);
        const result = resultOf(run);

        expect(run.code).toBe(3);
        expect(result).toMatchObject({ status: "crash", stage: "fetch", val_bpb: null, exit_code: null, duration_seconds: null });
        expect(result.reason).toContain("HTTP 404");
        // A client error is not retried.
        expect(server.requests).toHaveLength(1);
      } finally {
        await server.close();
      }
    });

    it("refuses a tarball with a path that climbs out of its folder", async () => {
      const dir = await scratch();
      const escapee = `escaped-${path.basename(dir)}.txt`;
      const tarball = path.join(dir, "evil.tar.gz");
      await execFileAsync("python3", [
        "-c",
        "import io, sys, tarfile\n" +
          "with tarfile.open(sys.argv[1], 'w:gz') as tar:\n" +
          "    for name in ('owner-repo-abc123/train.py', 'owner-repo-abc123/../../' + sys.argv[2]):\n" +
          "        info = tarfile.TarInfo(name); info.size = 3\n" +
          "        tar.addfile(info, io.BytesIO(b'x=1'))",
        tarball,
        escapee,
      ]);
      const server = await serve({ "/tarball": (_req, res) => res.writeHead(200).end(readFileSync(tarball)) });
      try {
        const run = await runHarness(["--repo", `${server.url}/tarball`, "--cache-dir", path.join(dir, "cache")]);
        const result = resultOf(run);

        expect(run.code).toBe(3);
        expect(result).toMatchObject({ status: "crash", stage: "fetch" });
        expect(result.reason).toMatch(/^unsafe archive .*'\.\.'/);
        expect(existsSync(path.join(os.tmpdir(), escapee))).toBe(false);
      } finally {
        await server.close();
      }
    });
  });

  describe("the sandbox, the source and the prepared data", () => {
    /** A stub that prints what it sees (environment, folders, network) before the summary. */
    const SEES = [
      "import json, os, socket",
      "env = {k: v for k, v in os.environ.items() if k.startswith(('AUTORESEARCH_', 'HOME', 'OMP_'))}",
      "seen = {'cwd': os.getcwd(), 'env': env, 'leaks': [k for k, v in os.environ.items() if 's3cret' in v or 'piped-token' in v],",
      "        'data': sorted(os.listdir(os.environ['AUTORESEARCH_DATA_DIR']))}",
      "try:",
      "    open(os.path.join(os.environ['AUTORESEARCH_DATA_DIR'], 'x'), 'w'); seen['data_writable'] = True",
      "except OSError:",
      "    seen['data_writable'] = False",
      "try:",
      "    socket.create_connection(('127.0.0.1', int(os.environ.get('PORT_TO_TRY', '9'))), timeout=2); seen['network'] = True",
      "except OSError:",
      "    seen['network'] = False",
      "print('SEEN ' + json.dumps(seen))",
      "print('---'); print('val_bpb: 1.5')",
    ].join("\n");
    const seenOf = (run: HarnessRun) => JSON.parse(/^SEEN (.*)$/m.exec(resultOf(run).log_tail)![1]!) as {
      cwd: string; env: Record<string, string>; leaks: string[]; data: string[]; data_writable: boolean; network: boolean;
    };

    it("with --sandbox bwrap the trainer sees its own tree, read-only data, a clean environment and no network", async () => {
      const dir = await scratch();
      const source = await gitRepo(path.join(dir, "source"), {
        "train.py": SEES,
        "prepare.py": "import os\nopen(os.path.join(os.environ['AUTORESEARCH_DATA_DIR'], 'shard.bin'), 'w').write('data')\n",
      });
      const server = await serve({ "/": (_req, res) => res.end("ok") });
      try {
        const run = await runHarness(
          ["--repo", source, "--commit", "HEAD", "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache"), "--prepare-cmd", "python3 prepare.py"],
          { env: { AUTORESEARCH_RUN_DIR: dir, PORT_TO_TRY: new URL(server.url).port, WEBHOOK_SECRET: "s3cret", OMP_NUM_THREADS: "1" } },
        );
        const result = resultOf(run);
        expect(run.code).toBe(0);
        expect(result).toMatchObject({ status: "ok", sandbox: "bwrap", notes: [], evaluation: "self_reported" });
        const seen = seenOf(run);
        expect(seen.cwd).toBe("/experiment");
        expect(seen.data).toEqual([".prepared", "shard.bin"]);
        expect(seen.data_writable).toBe(false);
        expect(seen.network).toBe(false);
        expect(server.requests).toEqual([]);
        expect(seen.env).toMatchObject({ AUTORESEARCH_DATA_DIR: "/data", HOME: "/home/experiment", AUTORESEARCH_TIME_BUDGET: "300", OMP_NUM_THREADS: "1" });
        expect(seen.env.AUTORESEARCH_RUN_DIR).toBeUndefined();
        expect(seen.leaks).toEqual([]);
      } finally {
        await server.close();
      }
    });

    it("with --sandbox bwrap, LD_LIBRARY_PATH's folders (a GPU driver's libraries) are there read-only, and only its absolute ones", async () => {
      const dir = await scratch();
      const libs = path.join(dir, "nvidia", "lib64");
      await mkdir(libs, { recursive: true });
      await writeFile(path.join(libs, "libcuda.so.1"), "not really a library");
      const repo = await gitRepo(path.join(dir, "source"), {
        "train.py": [
          "import json, os",
          "libs = os.environ['LD_LIBRARY_PATH'].split(':')",
          "seen = {'path': libs, 'files': sorted(os.listdir(libs[0]))}",
          "try:",
          "    open(os.path.join(libs[0], 'libevil.so'), 'w'); seen['writable'] = True",
          "except OSError:",
          "    seen['writable'] = False",
          "print('SEEN ' + json.dumps(seen)); print('---'); print('val_bpb: 1.5')",
        ].join("\n"),
      });
      const run = await runHarness(["--repo", repo, "--commit", "HEAD", "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache")], {
        env: { LD_LIBRARY_PATH: `${libs}::relative/lib:${path.join(dir, "missing")}:/usr/lib` },
      });
      expect(resultOf(run)).toMatchObject({ status: "ok", sandbox: "bwrap" });
      const seen = JSON.parse(/^SEEN (.*)$/m.exec(resultOf(run).log_tail)![1]!) as { path: string[]; files: string[]; writable: boolean };
      expect(seen).toEqual({ path: [libs, "/usr/lib"], files: ["libcuda.so.1"], writable: false });
      expect(existsSync(path.join(libs, "libevil.so"))).toBe(false);
    });

    it("--sandbox-probe starts only the interpreter where training runs and says what it finds there; a relative --bwrap works", async () => {
      const dir = await scratch();
      // Debian's python3 without its site packages: no torch, whatever this machine has installed.
      const python = path.join(dir, "bin", "python3");
      await mkdir(path.dirname(python));
      await writeFile(python, '#!/bin/sh\nexec /usr/bin/python3 -S "$@"\n', { mode: 0o755 });
      const bwrap = path.relative(process.cwd(), await realpath(whichBwrap()));
      expect(path.isAbsolute(bwrap)).toBe(false);
      const run = await runHarness(["--sandbox-probe", "--sandbox", "bwrap", "--bwrap", bwrap, "--python", python]);
      expect(run.code).toBe(0);
      expect(resultOf(run)).toMatchObject({ sandbox: "bwrap", error: "ModuleNotFoundError: No module named 'torch'", python: expect.stringMatching(/^3\./) });

      const broken = await runHarness(["--sandbox-probe", "--sandbox", "bwrap", "--bwrap", "/bin/false", "--python", python]);
      expect(broken.code).toBe(3);
      expect(resultOf(broken).error).toMatch(/^the sandbox is unavailable: \/bin\/false cannot create a sandbox: exit 1; install bubblewrap/);
    });

    /** A train.py that says whether it can read each of these files. */
    const READS = (files: string[]) => [
      "import json",
      `seen = {}`,
      `for f in ${JSON.stringify(files)}:`,
      "    try:",
      "        seen[f] = open(f).read().strip()",
      "    except OSError as e:",
      "        seen[f] = 'blocked: ' + type(e).__name__",
      "print('SEEN ' + json.dumps(seen)); print('---'); print('val_bpb: 1.5')",
    ].join("\n");

    it("never shows the runner's folders (--private): a read-only folder that holds one is not bound", async () => {
      const dir = await scratch();
      const shared = path.join(dir, "home");
      const bot = path.join(shared, "bot");
      await mkdir(bot, { recursive: true });
      await writeFile(path.join(bot, ".env"), "PRIVATE_KEY=canary-private\n");
      await writeFile(path.join(shared, "dataset.txt"), "public data\n");
      const beside = path.join(dir, "datasets");
      await mkdir(beside);
      await writeFile(path.join(beside, "dataset.txt"), "other data\n");
      const files = [path.join(bot, ".env"), path.join(shared, "dataset.txt"), path.join(beside, "dataset.txt")];
      const repo = await gitRepo(path.join(dir, "source"), { "train.py": READS(files) });
      const run = await runHarness([
        "--repo", repo, "--commit", "HEAD", "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache"),
        "--sandbox-ro", shared, "--sandbox-ro", beside, "--private", bot,
      ]);
      expect(resultOf(run)).toMatchObject({ status: "ok", sandbox: "bwrap" });
      const seen = JSON.parse(/^SEEN (.*)$/m.exec(resultOf(run).log_tail)![1]!) as Record<string, string>;
      expect(seen).toEqual({
        [files[0]!]: "blocked: FileNotFoundError",
        [files[1]!]: "blocked: FileNotFoundError", // the whole folder that holds the bot's is left out
        [files[2]!]: "other data",
      });
      expect(run.stderr).toContain(`sandbox: not binding ${await realpath(shared)}: it holds the runner's ${await realpath(bot)}`);
    });

    it("hides a runner's folder that a system folder holds under an empty one, and shows the rest of the system folder", async () => {
      // A bot installed under /usr: /usr/src is replaced, for this test only, by a scratch folder
      // (an outer bubblewrap around the harness), so nothing of the machine is touched.
      const dir = await scratch();
      await mkdir(path.join(dir, "usr-src", "autoresearch-bot", "runs"), { recursive: true });
      await writeFile(path.join(dir, "usr-src", "autoresearch-bot", ".env"), "PRIVATE_KEY=canary-private\n");
      await mkdir(path.join(dir, "usr-src", "other"));
      await writeFile(path.join(dir, "usr-src", "other", "README"), "a system file\n");
      const files = ["/usr/src/autoresearch-bot/.env", "/usr/src/other/README"];
      const repo = await gitRepo(path.join(dir, "source"), {
        "train.py": READS(files) + "\nimport os; print('LISTED ' + json.dumps(os.listdir('/usr/src/autoresearch-bot')))",
      });
      const run = await runHarness(
        ["--repo", repo, "--commit", "HEAD", "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache"), "--private", "/usr/src/autoresearch-bot"],
        { launcher: [], wrap: [whichBwrap(), "--dev-bind", "/", "/", "--bind", path.join(dir, "usr-src"), "/usr/src", "--"] },
      );
      expect(resultOf(run), run.stderr).toMatchObject({ status: "ok", sandbox: "bwrap" });
      const tail = resultOf(run).log_tail;
      expect(JSON.parse(/^SEEN (.*)$/m.exec(tail)![1]!)).toEqual({ [files[0]!]: "blocked: FileNotFoundError", [files[1]!]: "a system file" });
      expect(JSON.parse(/^LISTED (.*)$/m.exec(tail)![1]!)).toEqual([]);
    });

    it.each(["bwrap", "container"])("--sandbox %s under a uid with no user name (a pod's arbitrary uid): getpass.getuser() answers, as torch.compile's cache folder needs", async (sandbox) => {
      const dir = await scratch();
      const repo = await gitRepo(path.join(dir, "source"), {
        "train.py": "import getpass, json, os\nprint('SEEN ' + json.dumps([os.getuid(), getpass.getuser()])); print('---'); print('val_bpb: 1.5')",
      });
      // An outer bubblewrap runs the harness as uid 54321, which /etc/passwd does not name, with
      // no USER or LOGNAME: getpass.getuser() raises there unless the harness names the user.
      const run = await runHarness(["--repo", repo, "--commit", "HEAD", "--sandbox", sandbox, "--cache-dir", path.join(dir, "cache")], {
        launcher: [],
        wrap: [whichBwrap(), "--dev-bind", "/", "/", "--unshare-user", "--uid", "54321", "--gid", "54321", "--"],
        env: { USER: undefined, LOGNAME: undefined, LNAME: undefined, USERNAME: undefined },
      });
      expect(resultOf(run), run.stderr).toMatchObject({ status: "ok", sandbox });
      expect(JSON.parse(/^SEEN (.*)$/m.exec(resultOf(run).log_tail)![1]!)).toEqual([54321, "experiment"]);
    });

    it("an autoresearch fork's layout in the sandbox: what prepare.py keeps under ~/.cache, training finds there read-only, told that hubs are offline", async () => {
      const dir = await scratch();
      const repo = path.join(dir, "repo");
      await cp(path.resolve(here, "fixtures", "fork-layout"), repo, { recursive: true });
      const run = await runHarness(["--repo", repo, "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache"), "--prepare-cmd", "python3 prepare.py"]);
      expect(resultOf(run), run.stderr).toMatchObject({ status: "ok", sandbox: "bwrap" });
      expect(JSON.parse(/^SEEN (.*)$/m.exec(resultOf(run).log_tail)![1]!)).toEqual({
        data: "shard", kernel: "fa3", prepare_offline: "None", offline: "1", writable: false,
      });
    });

    it("a training that downloads at start crashes with a reason that says where the download belongs; unsandboxed it is not blamed on the sandbox", async () => {
      const dir = await scratch();
      const repo = path.join(dir, "repo");
      await mkdir(repo);
      // As kernels' get_kernel does without a cache: a request to the hub when train.py starts.
      await writeFile(path.join(repo, "train.py"), "import urllib.request\nurllib.request.urlopen('https://huggingface.co/api/models', timeout=5)\n");
      const run = await runHarness(["--repo", repo, "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache")]);
      expect(resultOf(run)).toMatchObject({ status: "crash", stage: "train" });
      expect(resultOf(run).reason).toMatch(/^urllib\.error\.URLError: .*; runs have no network: download what train\.py fetches at start .* in the preparation \(prepare_command\)/);
      const bare = await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache")], { env: { https_proxy: "http://127.0.0.1:9", HTTPS_PROXY: "http://127.0.0.1:9" } });
      expect(resultOf(bare)).toMatchObject({ status: "crash", stage: "train", sandbox: "none" });
      expect(resultOf(bare).reason).toMatch(/^urllib\.error\.URLError: /);
      expect(resultOf(bare).reason).not.toContain("no network");
    });

    it("without a sandbox the commands still never get AUTORESEARCH_RUN_DIR, and the result says they were not sandboxed", async () => {
      const dir = await scratch();
      const repo = path.join(dir, "repo");
      await mkdir(repo);
      await writeFile(path.join(repo, "train.py"), SEES);
      const run = await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache")], { env: { AUTORESEARCH_RUN_DIR: dir } });
      expect(resultOf(run)).toMatchObject({ status: "ok", sandbox: "none" });
      expect(resultOf(run).notes).toEqual([expect.stringMatching(/not sandboxed/)]);
      expect(seenOf(run).env.AUTORESEARCH_RUN_DIR).toBeUndefined();
    });

    it("fails at stage prepare, naming the fix, when bwrap cannot run", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "good.py");
      const run = await runHarness(["--repo", repo, "--sandbox", "bwrap", "--bwrap", path.join(dir, "no-bwrap"), "--cache-dir", path.join(dir, "cache")]);
      expect(run.code).toBe(3);
      expect(resultOf(run)).toMatchObject({ status: "crash", stage: "prepare" });
      expect(resultOf(run).reason).toMatch(/sandbox is unavailable.*apt-get install bubblewrap/);
    });

    it("reads the token from standard input and sends it for the download only", async () => {
      const dir = await scratch();
      const source = await gitRepo(path.join(dir, "source"), { "train.py": SEES });
      const sha = await git(source, "rev-parse", "HEAD");
      const tarball = path.join(dir, "repo.tar.gz");
      await git(source, "archive", "--format=tar.gz", `--prefix=owner-repo-${sha.slice(0, 7)}/`, "-o", tarball, "HEAD");
      const server = await serve({
        [`/tarball/${sha}`]: (req, res) =>
          req.headers.authorization === "Bearer piped-token" ? res.writeHead(200).end(readFileSync(tarball)) : res.writeHead(401).end(),
      });
      try {
        const run = await runHarness(
          ["--repo", `${server.url}/tarball/${sha}`, "--commit", sha, "--token-stdin", "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache")],
          { stdin: "piped-token\n" },
        );
        expect(run.code).toBe(0);
        expect(resultOf(run).commit).toBe(sha);
        expect(server.requests[0]!.authorization).toBe("Bearer piped-token");
        expect(seenOf(run).leaks).toEqual([]);
        expect(run.stdout + run.stderr).not.toContain("piped-token");
      } finally {
        await server.close();
      }
    });

    it("refuses an archive of another commit, and archives past the size or entry limits", async () => {
      const dir = await scratch();
      const source = await gitRepo(path.join(dir, "source"), { "train.py": SEES, "a.py": "", "b.py": "" });
      const sha = await git(source, "rev-parse", "HEAD");
      const other = path.join(dir, "other.tar.gz");
      await git(source, "archive", "--format=tar.gz", "--prefix=owner-repo-1234567/", "-o", other, "HEAD");
      const mine = path.join(dir, "mine.tar.gz");
      await git(source, "archive", "--format=tar.gz", `--prefix=owner-repo-${sha.slice(0, 7)}/`, "-o", mine, "HEAD");
      const server = await serve({
        "/other": (_req, res) => res.writeHead(200).end(readFileSync(other)),
        "/mine": (_req, res) => res.writeHead(200).end(readFileSync(mine)),
      });
      try {
        const wrong = await runHarness(["--repo", `${server.url}/other`, "--commit", sha, "--cache-dir", path.join(dir, "cache")]);
        expect(wrong.code).toBe(3);
        expect(resultOf(wrong).reason).toMatch(/not of the commit asked for/);
        const many = await runHarness(["--repo", `${server.url}/mine`, "--commit", sha, "--max-source-files", "2", "--cache-dir", path.join(dir, "cache")]);
        expect(resultOf(many).reason).toMatch(/more than 2 entries/);
        const big = await runHarness(["--repo", `${server.url}/mine`, "--commit", sha, "--max-archive-bytes", "100", "--cache-dir", path.join(dir, "cache")]);
        expect(resultOf(big)).toMatchObject({ stage: "fetch" });
        expect(resultOf(big).reason).toMatch(/larger than 100 bytes/);
        expect(big.code).toBe(3);
      } finally {
        await server.close();
      }
    });

    it("fetch-only leaves source.tar; prepare-only prepares; prepared-only trains on verified data and refuses changed data", async () => {
      const dir = await scratch();
      const source = await gitRepo(path.join(dir, "source"), {
        "train.py": SEES,
        "prepare.py": "import os\nopen(os.path.join(os.environ['AUTORESEARCH_DATA_DIR'], 'shard.bin'), 'w').write('data')\n",
      });
      const sha = await git(source, "rev-parse", "HEAD");
      const runs = path.join(dir, "runs");
      const cache = path.join(dir, "cache");
      const common = ["--commit", sha, "--prepare-cmd", "python3 prepare.py", "--cache-dir", cache];
      const fetched = await runHarness(["--repo", source, "--commit", sha, "--fetch-only", path.join(runs, "run-1")]);
      expect(fetched.code).toBe(0);
      const tar = path.join(runs, "run-1", "source.tar");
      expect(existsSync(tar)).toBe(true);

      const early = await runHarness(["--repo", tar, ...common, "--prepared-only"]);
      expect(early.code).toBe(3);
      expect(resultOf(early)).toMatchObject({ stage: "prepare" });
      expect(resultOf(early).reason).toMatch(/cannot be used: not prepared/);

      const prepared = await runHarness(["--repo", tar, ...common, "--prepare-only"]);
      expect(prepared.code).toBe(0);
      const trained = await runHarness(["--repo", tar, ...common, "--prepared-only", "--sandbox", "bwrap"]);
      expect(resultOf(trained)).toMatchObject({ status: "ok", commit: sha });
      expect(seenOf(trained).data).toEqual([".prepared", "shard.bin"]);

      const dataDir = path.join(cache, (await readdir(cache)).find((n) => /^data-[0-9a-f]{16}$/.test(n))!);
      await writeFile(path.join(dataDir, "shard.bin"), "tampered");
      const refused = await runHarness(["--repo", tar, ...common, "--prepared-only"]);
      expect(refused.code).toBe(3);
      expect(resultOf(refused).reason).toMatch(/its content changed since it was prepared/);
      // The fetch step prepares it again, and says so.
      const again = await runHarness(["--repo", tar, ...common, "--prepare-only"]);
      expect(again.code).toBe(0);
      expect(again.stderr).toMatch(/prepared again: its content changed/);
      expect(await readFile(path.join(dataDir, "shard.bin"), "utf8")).toBe("data");
    });

    it("prepare writes only its output, and has no network with --prepare-network off", async () => {
      const dir = await scratch();
      const server = await serve({ "/": (_req, res) => res.end("ok") });
      const port = new URL(server.url).port;
      const source = await gitRepo(path.join(dir, "source"), {
        "train.py": SEES,
        "prepare.py": [
          "import os, socket",
          "out = os.environ['AUTORESEARCH_DATA_DIR']",
          "try:",
          "    open('tree-write.txt', 'w'); tree = 'tree writable'",
          "except OSError:",
          "    tree = 'tree read-only'",
          "try:",
          `    socket.create_connection(('127.0.0.1', ${port}), timeout=2); net = 'network'`,
          "except OSError:",
          "    net = 'no network'",
          "open(os.path.join(out, 'what.txt'), 'w').write(tree + ', ' + net)",
        ].join("\n"),
      });
      try {
        const what = async (network: string) => {
          const cache = path.join(dir, `cache-${network}`);
          const run = await runHarness(["--repo", source, "--commit", "HEAD", "--sandbox", "bwrap", "--prepare-network", network, "--prepare-cmd", "python3 prepare.py", "--cache-dir", cache]);
          expect(run.code).toBe(0);
          const data = path.join(cache, (await readdir(cache)).find((n) => /^data-[0-9a-f]{16}$/.test(n))!);
          return readFile(path.join(data, "what.txt"), "utf8");
        };
        expect(await what("on")).toBe("tree read-only, network");
        expect(await what("off")).toBe("tree read-only, no network");
      } finally {
        await server.close();
      }
    });
  });

  describe("outside evaluation (--score-cmd)", () => {
    // test/fixtures/outside-eval: a 4-symbol language, a trusted scorer (score.py), a "training"
    // that saves unigram weights and claims val_bpb 0.01, and a model process whose MODE the
    // tests turn into an attack.
    const OUTSIDE = path.join(here, "fixtures", "outside-eval");
    const HONEST_BPB = 1.588642; // what score.py computes for the honest unigram model
    const outsideFiles = async (changes: Record<string, [string, string]> = {}) => {
      const files: Record<string, string> = {};
      for (const name of await readdir(OUTSIDE)) files[name] = await readFile(path.join(OUTSIDE, name), "utf8");
      for (const [name, [from, to]] of Object.entries(changes)) {
        expect(files[name]).toContain(from);
        files[name] = files[name]!.replace(from, to);
      }
      return files;
    };
    const outsideArgs = (dir: string) => [
      "--prepare-cmd", "python3 prepare.py", "--score-cmd", "python3 score.py", "--serve-cmd", "python3 train.py serve",
      "--sandbox", "bwrap", "--cache-dir", path.join(dir, "cache"), "--budget", "10",
    ];
    /** A repository whose base commit is the honest project and whose HEAD is the experiment. */
    const project = async (changes: Record<string, [string, string]>) => {
      const dir = await scratch();
      const repo = await gitRepo(path.join(dir, "repo"), await outsideFiles());
      const base = await git(repo, "rev-parse", "HEAD");
      const changed = await outsideFiles(changes);
      const names = Object.keys(changes);
      const head = names.length ? await commitFiles(repo, Object.fromEntries(names.map((n) => [n, changed[n]!])), "experiment") : base;
      return { dir, repo, base, head };
    };
    const experiment = async (changes: Record<string, [string, string]>) => {
      const { dir, repo, base, head } = await project(changes);
      const run = await runHarness(["--repo", repo, "--commit", head, "--eval-commit", base, ...outsideArgs(dir)]);
      return { run, result: resultOf(run) };
    };

    it("scores the saved model with the trusted scorer; the training never sees the held-out data and its own val_bpb is ignored", async () => {
      const { run, result } = await experiment({});
      expect(run.code).toBe(0);
      expect(result).toMatchObject({ status: "ok", stage: "train", evaluation: "outside", reported_val_bpb: 0.01, probe_windows: 8 });
      expect(result.val_bpb).toBeCloseTo(HONEST_BPB, 5);
      expect(result.reason).toMatch(/measured outside the experiment/);
      const seen = JSON.parse(/^SEES (.*)$/m.exec(result.log_tail)![1]!) as Record<string, unknown>;
      expect(seen).toEqual({ eval_env: null, eval_dir: false, val_in_data: false, data: [".prepared", "train.bin"] });
    });

    it("an experiment's own scorer, prepare step or printed val_bpb changes nothing: they come from the trusted tree", async () => {
      const { result } = await experiment({
        "score.py": ["import math", "print('---'); print('val_bpb: 0.000001'); raise SystemExit(0)\nimport math"],
        "prepare.py": ['held = os.environ.get("AUTORESEARCH_EVAL_DIR") or data', "held = data"],
      });
      expect(result).toMatchObject({ status: "ok", evaluation: "outside" });
      expect(result.val_bpb).toBeCloseTo(HONEST_BPB, 5);
    });

    it.each([
      ["reads the next symbol (not causal)", "peek", /causality probe failed/],
      ["adapts to the windows it was asked before", "drift", /causality probe failed/],
      ["prints to stdout while serving", "chatty", /answered something other than logits/],
    ])("a model that %s is not measured: crash at stage eval", async (_what, mode, reason) => {
      const { run, result } = await experiment({ "model.py": ['MODE = "honest"', `MODE = "${mode}"`] });
      expect(run.code).toBe(1);
      expect(result).toMatchObject({ status: "crash", stage: "eval", val_bpb: null, evaluation: "outside" });
      expect(result.reason).toMatch(reason);
    });

    it("a training that saved no usable weights crashes at stage eval with the model process's failure", async () => {
      const { result } = await experiment({ "train.py": ["json.dump(weights, ", "(weights, "] });
      expect(result).toMatchObject({ status: "crash", stage: "eval", val_bpb: null });
      expect(result.reason).toMatch(/model process exited with code 1 without answering: json\.decoder\.JSONDecodeError/);
    });

    describe("split over pods (--score-later, --score-only, --probe-only, --serve-only)", () => {
      /** The fetched archives, the prepared data and the held-out data, as the fetch Job leaves them. */
      const fetched = async (changes: Record<string, [string, string]> = {}) => {
        const { dir, repo, base, head } = await project(changes);
        const source = path.join(dir, "runs", "r1", "source");
        const common = ["--score-cmd", "python3 score.py", "--serve-cmd", "python3 train.py serve", "--prepare-cmd", "python3 prepare.py",
          "--cache-dir", path.join(dir, "data")];
        const fetch = await runHarness(["--repo", repo, "--commit", head, "--eval-repo", repo, "--eval-commit", base, "--fetch-only", source, ...common]);
        expect(fetch.code).toBe(0);
        expect((await readdir(source)).sort()).toEqual(["source.tar", "trusted.tar"]);
        const tars = ["--repo", path.join(source, "source.tar"), "--eval-repo", path.join(source, "trusted.tar"), ...common];
        const prepare = await runHarness([...tars, "--heldout-root", path.join(dir, "heldout"), "--prepare-only"]);
        expect(prepare.code).toBe(0);
        return { dir, tars, output: path.join(dir, "runs", "r1", "output"), plan: path.join(dir, "runs", "r1", "eval", "plan.json") };
      };
      /** The trusted step and the model beside it, sharing only a folder of FIFOs. */
      const pair = async (trusted: string[], serve: string[], pipes: string) => {
        const [step, model] = await Promise.all([runHarness([...trusted, "--score-timeout", "30"]), runHarness([...serve, "--serve-only", pipes, "--score-timeout", "30"])]);
        return { step, model, result: resultOf(step) };
      };

      it("trains without the held-out data, scores through FIFOs, and probes a fresh model against the plan", async () => {
        const f = await fetched();
        const train = await runHarness([...f.tars, "--prepared-only", "--score-later", "--output-dir", f.output, "--budget", "10"]);
        expect(resultOf(train)).toMatchObject({ status: "ok", val_bpb: null, evaluation: "pending", reported_val_bpb: 0.01 });
        const seen = JSON.parse(/^SEES (.*)$/m.exec(resultOf(train).log_tail)![1]!) as Record<string, unknown>;
        expect(seen).toMatchObject({ eval_env: null, val_in_data: false });
        const serve = [...f.tars, "--prepared-only", "--output-dir", f.output];
        const scored = await pair([...f.tars, "--prepared-only", "--heldout-root", path.join(f.dir, "heldout"), "--score-only", path.join(f.dir, "p1"), "--probe-plan", f.plan], serve, path.join(f.dir, "p1"));
        expect(scored.model.code).toBe(0);
        expect(scored.result).toMatchObject({ status: "ok", stage: "eval", evaluation: "outside" });
        expect(scored.result.val_bpb).toBeCloseTo(HONEST_BPB, 5);
        const probed = await pair(["--probe-only", path.join(f.dir, "p2"), "--probe-plan", f.plan], serve, path.join(f.dir, "p2"));
        expect(probed.result).toMatchObject({ status: "ok", evaluation: "probe", probe_windows: 8 });
      });

      it("a model that reads ahead passes scoring but fails the probe in its own process", async () => {
        const f = await fetched({ "model.py": ['MODE = "honest"', 'MODE = "peek"'] });
        await runHarness([...f.tars, "--prepared-only", "--score-later", "--output-dir", f.output, "--budget", "10"]);
        const serve = [...f.tars, "--prepared-only", "--output-dir", f.output];
        const scored = await pair([...f.tars, "--prepared-only", "--heldout-root", path.join(f.dir, "heldout"), "--score-only", path.join(f.dir, "p1"), "--probe-plan", f.plan], serve, path.join(f.dir, "p1"));
        expect(scored.result.status).toBe("ok");
        const probed = await pair(["--probe-only", path.join(f.dir, "p2"), "--probe-plan", f.plan], serve, path.join(f.dir, "p2"));
        expect(probed.result).toMatchObject({ status: "crash", stage: "eval", val_bpb: null });
        expect(probed.result.reason).toMatch(/causality probe failed/);
      });

      it("a model container that cannot get its commit says so at once, as an infrastructure failure", async () => {
        const f = await fetched();
        const serve = ["--repo", path.join(f.dir, "missing.tar"), ...f.tars.slice(2), "--prepared-only", "--output-dir", f.output];
        const scored = await pair([...f.tars, "--prepared-only", "--heldout-root", path.join(f.dir, "heldout"), "--score-only", path.join(f.dir, "p1"), "--probe-plan", f.plan], serve, path.join(f.dir, "p1"));
        expect(scored.model.code).toBe(3);
        expect(scored.step.code).toBe(3);
        expect(scored.result).toMatchObject({ status: "crash", stage: "fetch" });
        expect(scored.result.reason).toMatch(/model container failed before serving: .*missing\.tar/);
      });

      it("refuses a step without what it needs", async () => {
        expect((await runHarness(["--repo", OUTSIDE, "--score-later", "--score-cmd", "x", "--serve-cmd", "y"])).stderr).toMatch(/--score-later needs --output-dir/);
        expect((await runHarness(["--probe-only", "/tmp/x"])).stderr).toMatch(/--probe-only needs --probe-plan/);
        expect((await runHarness(["--repo", OUTSIDE, "--score-only", "/tmp/x", "--serve-only", "/tmp/y", "--score-cmd", "x", "--serve-cmd", "y"])).stderr).toMatch(/exclude each other/);
      });
    });

    it("refuses --score-cmd without --serve-cmd", async () => {
      const run = await runHarness(["--repo", OUTSIDE, "--score-cmd", "python3 score.py"]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/--score-cmd needs --serve-cmd/);
    });
  });

  describe("the command line", () => {
    it("stops the training and still reports when the harness gets SIGTERM", async () => {
      const dir = await scratch();
      const repo = await repoWithStub(dir, "hangs-with-child.py");
      const pidFile = path.join(dir, "pids");
      let pids: number[] = [];
      try {
        const run = await runHarness(["--repo", repo, "--cache-dir", path.join(dir, "cache"), "--timeout", "60"], {
          env: { STUB_PIDS: pidFile },
          onSpawn: (child) => {
            void waitFor(() => existsSync(pidFile), 10_000).then(() => child.kill("SIGTERM"));
          },
        });
        const result = resultOf(run);
        pids = await readPids(pidFile);

        expect(run.code).toBe(3);
        expect(result).toMatchObject({ status: "crash", stage: "train", reason: "harness interrupted by SIGTERM" });
        // Stopped by the signal, not by its 60 s timeout.
        expect(run.stderr).toMatch(/train: interrupted by SIGTERM; sending SIGTERM to the process group/);
        expect(run.stderr).not.toMatch(/hard timeout/);
        for (const pid of pids) expect(await waitFor(() => !isRunning(pid), 30_000)).toBe(true);
      } finally {
        killIfRunning(pids);
      }
    });

    it("parses every field of a real autoresearch log with --parse-log", async () => {
      const run = await runHarness(["--parse-log", AUTORESEARCH_LOG]);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toEqual(SUMMARY);
    });

    it("takes the last summary block and keeps extra keys with --parse-log", async () => {
      const dir = await scratch();
      const logFile = path.join(dir, "run.log");
      await writeFile(
        logFile,
        [
          "---", "val_bpb: 1.250000", "num_steps: 10",
          "warmup done", "---", "not a summary line",
          "\rstep 00001 | loss: 3.1\rstep 00002 | loss: 3.0    ",
          "---", "val_bpb:          0.987654", "num_steps:        953", "device:           cuda:0", "",
        ].join("\n"),
      );
      const run = await runHarness(["--parse-log", logFile]);
      expect(JSON.parse(run.stdout)).toEqual({ val_bpb: 0.987654, num_steps: 953, device: "cuda:0" });
    });

    it("lists every flag with its default and the exit codes in --help", async () => {
      const run = await runHarness(["--help"]);
      expect(run.code).toBe(0);
      const flags = [
        "--repo", "--commit", "--token-file", "--workdir", "--train-cmd", "--prepare-cmd", "--prepare-files",
        "--prepare-timeout", "--python", "--cache-dir", "--budget", "--timeout", "--result", "--termination-log",
        "--log", "--run-id", "--heartbeat", "--parse-log",
      ];
      const options = run.stdout.slice(run.stdout.indexOf("  -h, --help"));
      for (const flag of flags) {
        const start = options.indexOf(`  ${flag} `);
        expect(start, flag).toBeGreaterThanOrEqual(0);
        const next = options.indexOf("\n  --", start + 1);
        const help = options.slice(start, next === -1 ? undefined : next).replace(/\s+/g, " ");
        if (flag !== "--repo") expect(help, flag).toContain("(default:");
      }
      const flat = options.replace(/\s+/g, " ");
      expect(flat).toContain("AUTORESEARCH_TIME_BUDGET (default: 300)");
      expect(flat).toContain("(default: 2 x budget + 120)");
      expect(flat).toContain("(default: python3 train.py)");
      expect(run.stdout).toMatch(/exit codes:[\s\S]*0 {2}result written, status ok[\s\S]*2 {2}usage error[\s\S]*3 {2}infrastructure failure/);
    });

    it("exits 2 without a result on a usage error", async () => {
      const run = await runHarness(["--budget", "5"]);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain("--repo is required");
      expect(run.stdout).toBe("");
    });
  });
});

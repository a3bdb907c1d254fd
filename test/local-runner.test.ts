// The local runner with the real harness (trainer/harness.py, behind test/fixtures/counting-
// harness.py, which counts harness starts) and small stub training scripts: no PyTorch needed.
// Covers idempotent submit, the persisted queue, cancel, a bot restart while a run is in
// flight, lost harness processes and a token-protected tarball source, all in the sandbox.

import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { detectGpus, gpuSets, LocalRunner, repoCacheDir, runDirName, SandboxUnavailableError, sandboxFromEnv } from "../src/runner/local.js";
import { HarnessResultError, parseHarnessResult, parseHarnessResultText, readResultFile } from "../src/runner/result.js";
import type { RepoRef, RunObservation, RunSpec, TrainerResult } from "../src/types.js";

const HARNESS = path.resolve("test/fixtures/counting-harness.py");
const REPO: RepoRef = { owner: "o", repo: "r" };

const SUMMARY = `---
val_bpb:          0.997900
training_seconds: 1.0
total_seconds:    1.2
peak_vram_mb:     0.0
mfu_percent:      0.00
total_tokens_M:   0.1
num_steps:        12
num_params_M:     0.5
depth:            2
`;

let tmp: string;
let repoDir: string;
let counterFile: string;
const runners: LocalRunner[] = [];

function stub(name: string, body: string): void {
  fs.writeFileSync(path.join(repoDir, name), body);
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "local-runner-"));
  repoDir = path.join(tmp, "repo");
  counterFile = path.join(tmp, "counter");
  fs.mkdirSync(repoDir);
  fs.mkdirSync(path.join(tmp, "scratch"));
  // The stubs can write nothing outside their sandbox: the harness starts are counted by the
  // counting harness, and the stubs' processes are found by their command lines.
  const head = "import os, sys, time\n";
  stub("good.py", `${head}time.sleep(1.0)\nprint("step 00012 (100.0%) | loss: 3.1\\r", end="")\nprint(${JSON.stringify(SUMMARY)})\n`);
  stub("slow.py", `${head}time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)\nprint(${JSON.stringify(SUMMARY)})\n`);
  stub("crash.py", `${head}raise RuntimeError("boom: the stub always crashes")\n`);
  stub("sleep.py", `${head}time.sleep(120)\n`);
  // What GPUs the run was given, and when it trained (seen from inside the sandbox).
  stub(
    "gpus.py",
    `${head}start = time.time()\ntime.sleep(float(sys.argv[1]))\n` +
      `print("GPUS %s|%s|%f|%f" % (os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), os.environ.get("CUDA_DEVICE_ORDER", "unset"), start, time.time()))\n` +
      `print(${JSON.stringify(SUMMARY)})\n`,
  );
});

afterEach(() => {
  for (const r of runners.splice(0)) r.close();
  fs.rmSync(counterFile, { force: true });
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function makeRunner(runsDir: string, extra: Partial<ConstructorParameters<typeof LocalRunner>[0]> = {}): LocalRunner {
  const runner = new LocalRunner({
    runsDir,
    harnessPath: HARNESS,
    trainPython: "python3",
    cacheDir: path.join(tmp, "cache"),
    pollMs: 100,
    killGraceMs: 5000,
    // The harness's scratch folders (left behind when it is SIGKILLed) stay in the test's folder.
    env: { TMPDIR: path.join(tmp, "scratch"), AUTORESEARCH_TEST_RUN_LOG: counterFile },
    ...extra,
  });
  runners.push(runner);
  return runner;
}

function freshRunsDir(): string {
  return fs.mkdtempSync(path.join(tmp, "runs-"));
}

function spec(runId: string, trainCmd: string, over: Partial<RunSpec> = {}): RunSpec {
  return {
    runId,
    repo: REPO,
    pull: 1,
    sha: "0123456789abcdef0123456789abcdef01234567",
    source: { url: repoDir, token: null },
    workdir: ".",
    trainCmd,
    prepareCmd: null,
    prepareFiles: [],
    budgetSeconds: 5,
    evalAllowanceSeconds: 60,
    timeoutSeconds: 60,
    ...over,
  };
}

/** The run ids of the harness starts so far, in order. */
function counterLines(): string[] {
  if (!fs.existsSync(counterFile)) return [];
  return fs.readFileSync(counterFile, "utf8").trim().split("\n").filter(Boolean).map((l) => l.split(" ")[0]!);
}

/** Host pids of live processes whose argv contains these arguments in a row (a stub and its tag). */
function processesWith(...args: string[]): number[] {
  const marker = Buffer.from(args.join("\0") + "\0");
  const out: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`).includes(marker) && alive(Number(entry))) out.push(Number(entry));
    } catch {
      // gone
    }
  }
  return out;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitFinished(runner: LocalRunner, runId: string, timeoutMs = 30_000) {
  const obs = await waitFor(`${runId} to finish`, async () => {
    const o = await runner.observe(runId);
    return o.phase === "finished" ? o : undefined;
  }, timeoutMs);
  return obs as Extract<RunObservation, { phase: "finished" }>;
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

function harnessPid(runsDir: string, runId: string): number {
  return (JSON.parse(fs.readFileSync(path.join(runsDir, runDirName(runId), "pid"), "utf8")) as { pid: number }).pid;
}

/**
 * Submits one more (quick) run and waits until the runner reports it. The report comes from a
 * poll that looked at every run before it, and with one slot that run starts only after every
 * run queued before it: so whatever the runner would still do with the earlier runs (report one
 * again, start one that should not start) has happened by then, and a check made afterwards that
 * it did not happen is not vacuous.
 */
async function afterAnotherRun(runner: LocalRunner, runId: string): Promise<void> {
  const seen: string[] = [];
  runner.onFinished((id) => seen.push(id));
  await runner.submit(spec(runId, "python3 crash.py"));
  await waitFor(`${runId} to be reported`, () => seen.includes(runId));
}

describe("parseHarnessResult", () => {
  const full = {
    status: "ok",
    val_bpb: 0.9979,
    training_seconds: 300.1,
    total_seconds: 325.9,
    peak_vram_mb: 45060.2,
    num_steps: 953,
    optimizer: "muon",
    summary_status: "weird",
    nested: { a: 1 },
    list: [1, 2],
    flag: true,
    nothing: null,
    exit_code: 0,
    reason: "val_bpb 0.997900 after 300.1 s of training",
    stage: "train",
    run_id: "o-r-1-a1",
    commit: "abc",
    duration_seconds: 326.2,
    harness_version: "1.0.0",
    sandbox: "bwrap",
    notes: ["the prepared data was prepared again"],
    log_tail: "...\nval_bpb: 0.997900\n",
  };

  it("maps known keys onto fields and every other scalar onto the summary", () => {
    const r = parseHarnessResult(full);
    expect(r).toEqual({
      status: "ok",
      val_bpb: 0.9979,
      exit_code: 0,
      reason: "val_bpb 0.997900 after 300.1 s of training",
      log_tail: "...\nval_bpb: 0.997900\n",
      stage: "train",
      // Who measured what: the run and the commit, checked by the loop against its record.
      runId: "o-r-1-a1",
      commit: "abc",
      sandbox: "bwrap",
      notes: ["the prepared data was prepared again"],
      summary: {
        training_seconds: 300.1,
        total_seconds: 325.9,
        peak_vram_mb: 45060.2,
        num_steps: 953,
        optimizer: "muon",
        summary_status: "weird",
        duration_seconds: 326.2,
        harness_version: "1.0.0",
      },
    });
  });

  it("fills defaults for a minimal failure", () => {
    expect(parseHarnessResult({ status: "crash", val_bpb: null })).toEqual({
      status: "crash",
      val_bpb: null,
      exit_code: null,
      reason: "",
      log_tail: "",
      summary: {},
    });
    const r = parseHarnessResult({ status: "timeout", val_bpb: null, stage: "prepare", exit_code: -9, reason: "x", log_tail: null });
    expect(r.stage).toBe("prepare");
    expect(r.exit_code).toBe(-9);
  });

  it("rejects malformed results with a clear message", () => {
    expect(() => parseHarnessResult(null)).toThrow(/expected a JSON object, got null/);
    expect(() => parseHarnessResult([1])).toThrow(/got an array/);
    expect(() => parseHarnessResult("ok")).toThrow(/got string/);
    expect(() => parseHarnessResult({ val_bpb: 1 })).toThrow(/status/);
    expect(() => parseHarnessResult({ status: "great", val_bpb: 1 })).toThrow(HarnessResultError);
    expect(() => parseHarnessResult({ status: "ok", val_bpb: "0.99" })).toThrow(/val_bpb/);
    expect(() => parseHarnessResult({ status: "ok", val_bpb: null })).toThrow(/status "ok" requires a numeric val_bpb/);
    expect(() => parseHarnessResult({ status: "crash", val_bpb: null, stage: "deploy" })).toThrow(/stage/);
    expect(() => parseHarnessResult({ status: "crash", val_bpb: null, exit_code: "1" })).toThrow(/exit_code/);
    expect(() => parseHarnessResultText("{not json", "result.json")).toThrow(/result.json is not valid JSON/);
    expect(() => parseHarnessResultText("[]", "result.json")).toThrow(/^result.json: invalid harness result/);
  });

  it("reads a result file", async () => {
    const file = path.join(os.tmpdir(), `result-${process.pid}.json`);
    fs.writeFileSync(file, JSON.stringify(full) + "\n");
    try {
      expect((await readResultFile(file)).val_bpb).toBe(0.9979);
      fs.writeFileSync(file, "");
      await expect(readResultFile(file)).rejects.toThrow(/not valid JSON/);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});

describe("runDirName", () => {
  it("keeps safe ids and maps others into one safe, distinct name", () => {
    expect(runDirName("o-r-12-a1")).toBe("o-r-12-a1");
    const odd = runDirName("../o/r#12 a1");
    expect(odd).toMatch(/^[A-Za-z0-9._-]+$/);
    expect(odd.startsWith(".")).toBe(false);
    expect(odd).not.toBe(runDirName("../o/r#12_a1"));
  });
});

describe("LocalRunner", () => {
  it("runs a good stub: running, then finished with the parsed result, reported once", async () => {
    const runsDir = freshRunsDir();
    const runner = makeRunner(runsDir);
    const finished: [string, RepoRef][] = [];
    runner.onFinished((id, repo) => finished.push([id, repo]));
    expect(runner.name).toBe("local");
    expect(runner.slots).toBe(1);

    const s = spec("good-1", "python3 good.py");
    await Promise.all([runner.submit(s), runner.submit(s)]);
    expect(await runner.observe("good-1")).toEqual({ phase: "running", runId: "good-1" });
    expect(await runner.list(REPO)).toEqual(["good-1"]);
    expect(await runner.list({ owner: "O", repo: "R" })).toEqual(["good-1"]);
    expect(await runner.list({ owner: "o", repo: "other" })).toEqual([]);

    const obs = await waitFinished(runner, "good-1");
    expect(obs.result.status).toBe("ok");
    expect(obs.result.val_bpb).toBeCloseTo(0.9979, 6);
    expect(obs.result.stage).toBe("train");
    expect(obs.result.exit_code).toBe(0);
    expect(obs.result.summary).toMatchObject({ training_seconds: 1, num_steps: 12, depth: 2, num_params_M: 0.5 });
    expect(obs.result.log_tail).toContain("val_bpb");

    await waitFor("onFinished", () => finished.length > 0);
    // A second submit of a finished run is a no-op too: the stub ran once, and was reported once.
    await runner.submit(s);
    await afterAnotherRun(runner, "after-good-1");
    expect(finished).toEqual([["good-1", REPO], ["after-good-1", REPO]]);
    expect(counterLines()).toEqual(["good-1", "after-good-1"]);
    expect(obs.result.sandbox).toBe("bwrap");

    const dir = path.join(runsDir, "good-1");
    const stored = JSON.parse(fs.readFileSync(path.join(dir, "spec.json"), "utf8"));
    expect(stored).toMatchObject({ runId: "good-1", queued: false, trainCmd: "python3 good.py" });
    expect(fs.readFileSync(path.join(dir, "train.log"), "utf8")).toContain("val_bpb:");
    expect(fs.existsSync(path.join(dir, "harness.log"))).toBe(true);

    await runner.cleanup("good-1");
    expect(fs.existsSync(dir)).toBe(false);
    expect(await runner.observe("good-1")).toEqual({ phase: "missing", runId: "good-1" });
  });

  it("reports a crashing stub as a crash", async () => {
    const runner = makeRunner(freshRunsDir());
    await runner.submit(spec("crash-1", "python3 crash.py"));
    const obs = await waitFinished(runner, "crash-1");
    expect(obs.result.status).toBe("crash");
    expect(obs.result.val_bpb).toBeNull();
    expect(obs.result.stage).toBe("train");
    expect(obs.result.reason).toContain("RuntimeError");
    expect(obs.result.log_tail).toContain("boom");
  });

  it("queues runs beyond its slots and starts them when a slot frees", async () => {
    const runsDir = freshRunsDir();
    const runner = makeRunner(runsDir, { slots: 1 });
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    await runner.submit(spec("q-a", "python3 slow.py 1.5"));
    await runner.submit(spec("q-b", "python3 good.py"));
    expect((await runner.observe("q-a")).phase).toBe("running");
    expect((await runner.observe("q-b")).phase).toBe("pending");
    const queued = JSON.parse(fs.readFileSync(path.join(runsDir, "q-b", "spec.json"), "utf8"));
    expect(queued.queued).toBe(true);
    expect(fs.existsSync(path.join(runsDir, "q-b", "pid"))).toBe(false);
    expect((await runner.list(REPO)).sort()).toEqual(["q-a", "q-b"]);

    await waitFinished(runner, "q-a");
    const b = await waitFinished(runner, "q-b");
    expect(b.result.status).toBe("ok");
    expect(counterLines()).toEqual(["q-a", "q-b"]);
    await waitFor("both reported", () => finished.length === 2);
    expect(finished).toEqual(["q-a", "q-b"]);
  });

  it("gives each slot its own GPUs: runs that train at the same time never share one while there are enough", async () => {
    const runsDir = freshRunsDir();
    const infos: string[] = [];
    const runner = makeRunner(runsDir, { slots: 2, gpus: ["0", "1", "2", "3"], logger: { info: (m) => infos.push(m), warn() {}, error() {} } });
    expect(infos).toContain("GPUs 0,1,2,3: each slot trains on its own (0,1 | 2,3)");
    const ids = ["g-a", "g-b", "g-c", "g-d"];
    for (const [i, id] of ids.entries()) await runner.submit(spec(id, `python3 gpus.py ${i === 0 ? 2.5 : 0.3}`));
    const seen: { id: string; gpus: string; order: string; start: number; end: number }[] = [];
    for (const id of ids) {
      expect((await waitFinished(runner, id)).result.status).toBe("ok");
      const [gpus, order, start, end] = /^GPUS (.*)$/m.exec(fs.readFileSync(path.join(runsDir, id, "train.log"), "utf8"))![1]!.split("|");
      seen.push({ id, gpus: gpus!, order: order!, start: Number(start), end: Number(end) });
    }
    for (const run of seen) {
      expect(["0,1", "2,3"]).toContain(run.gpus);
      expect(run.order).toBe("unset"); // ids the operator gave keep the operator's order
    }
    for (const a of seen) {
      for (const b of seen) {
        if (a.id < b.id && a.start < b.end && b.start < a.end) expect(a.gpus, `${a.id} and ${b.id} trained at the same time`).not.toBe(b.gpus);
      }
    }
  });

  it("finds the GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi's) and shares them out per slot, and says when slots must share one", () => {
    expect(detectGpus({ CUDA_VISIBLE_DEVICES: "2, 3" }, () => "0\n1\n")).toEqual(["2", "3"]);
    expect(detectGpus({ CUDA_VISIBLE_DEVICES: "" }, () => "0\n")).toEqual([]);
    expect(detectGpus({ CUDA_VISIBLE_DEVICES: "-1" }, () => "0\n")).toEqual([]);
    expect(detectGpus({}, () => "0\n1\n2\n")).toEqual(["0", "1", "2"]);
    expect(detectGpus({}, () => "")).toEqual([]);
    expect(detectGpus({})).toEqual(expect.any(Array)); // nvidia-smi, where there is one
    expect(gpuSets([], 4)).toEqual([]);
    expect(gpuSets(["0", "1", "2", "3", "4", "5", "6", "7"], 8)).toEqual(["0", "1", "2", "3", "4", "5", "6", "7"]);
    expect(gpuSets(["0", "1", "2", "3", "4", "5", "6", "7"], 3)).toEqual(["0,1", "2,3", "4,5"]);
    expect(gpuSets(["0", "1"], 3)).toEqual(["0", "1", "0"]);

    const warnings: string[] = [];
    makeRunner(freshRunsDir(), { slots: 3, gpus: ["0", "1"], logger: { info() {}, warn: (m) => warnings.push(m), error() {} } });
    expect(warnings).toEqual([
      "3 slots share 2 GPUs (0,1): runs that train at the same time on one GPU slow each other down, and their val_bpb with them; set AUTORESEARCH_SLOTS to at most 2",
    ]);
  });

  it("starts an urgent queued run (a baseline's, a further run of an experiment) before those queued earlier", async () => {
    const runsDir = freshRunsDir();
    const runner = makeRunner(runsDir, { slots: 1 });
    await runner.submit(spec("u-a", "python3 slow.py 1.5"));
    await runner.submit(spec("u-b", "python3 good.py"));
    await runner.submit({ ...spec("u-c", "python3 good.py"), urgent: true });
    expect([(await runner.observe("u-b")).phase, (await runner.observe("u-c")).phase]).toEqual(["pending", "pending"]);
    await waitFinished(runner, "u-b");
    expect(counterLines()).toEqual(["u-a", "u-c", "u-b"]);
  });

  it("cancels a running run (its processes end) and drops a queued one", async () => {
    const runsDir = freshRunsDir();
    const runner = makeRunner(runsDir);
    const tag = `sleepy-${process.pid}-${Date.now()}`;
    await runner.submit(spec("sleepy", `python3 sleep.py ${tag}`));
    await runner.submit(spec("waiting", "python3 good.py"));
    expect((await runner.observe("waiting")).phase).toBe("pending");
    await runner.cancel("waiting");
    expect(await runner.observe("waiting")).toEqual({ phase: "missing", runId: "waiting" });

    const [stubPid] = await waitFor("the stub to start", () => (processesWith("sleep.py", tag).length === 1 ? processesWith("sleep.py", tag) : undefined));
    const pid = harnessPid(runsDir, "sleepy");
    expect(alive(pid)).toBe(true);
    expect(alive(stubPid!)).toBe(true);

    await runner.cancel("sleepy");
    expect(alive(pid)).toBe(false);
    await waitFor("the stub to die", () => !alive(stubPid!));
    const obs = await waitFinished(runner, "sleepy");
    expect(obs.result.status).not.toBe("ok");
    expect(fs.existsSync(path.join(runsDir, "sleepy", "cancelled"))).toBe(true);
    // The dropped run never started: queued before it, it would have run before the next one.
    await afterAnotherRun(runner, "after-cancel");
    expect(counterLines()).toEqual(["sleepy", "after-cancel"]);
  });

  it("survives a bot restart: a new runner picks up the run in flight and reports it once", async () => {
    const runsDir = freshRunsDir();
    const a = makeRunner(runsDir);
    const seenByA: string[] = [];
    a.onFinished((id) => seenByA.push(id));
    await a.submit(spec("restart-1", "python3 slow.py 2.5"));
    expect((await a.observe("restart-1")).phase).toBe("running");
    const pid = harnessPid(runsDir, "restart-1");
    a.close(); // the bot dies; the detached harness keeps going

    const b = makeRunner(runsDir);
    const seenByB: string[] = [];
    b.onFinished((id) => seenByB.push(id));
    expect((await b.observe("restart-1")).phase).toBe("running");
    expect(alive(pid)).toBe(true);
    await b.submit(spec("restart-1", "python3 slow.py 2.5")); // no second start
    const obs = await waitFinished(b, "restart-1");
    expect(obs.result.status).toBe("ok");
    await waitFor("B to report it", () => seenByB.length > 0);
    await afterAnotherRun(b, "after-b");
    expect(seenByB).toEqual(["restart-1", "after-b"]);
    // A, closed, reports nothing, even when asked to look now.
    await a.tick();
    expect(seenByA).toEqual([]);
    expect(counterLines()).toEqual(["restart-1", "after-b"]);

    // A runner started after the runs ended (they finished while the bot was down) reports each once.
    b.close();
    const c = makeRunner(runsDir);
    const seenByC: string[] = [];
    c.onFinished((id) => seenByC.push(id));
    await waitFor("C to report them", () => seenByC.length >= 2);
    await afterAnotherRun(c, "after-c");
    expect(seenByC.sort()).toEqual(["after-b", "after-c", "restart-1"]);
    expect(counterLines()).toEqual(["restart-1", "after-b", "after-c"]);
  });

  it("starts a queued run left by a previous runner", async () => {
    const runsDir = freshRunsDir();
    const a = makeRunner(runsDir);
    await a.submit(spec("first", "python3 slow.py 1.0"));
    await a.submit(spec("second", "python3 good.py"));
    expect((await a.observe("second")).phase).toBe("pending");
    a.close();
    await waitFor("first to end", () => !alive(harnessPid(runsDir, "first")));

    const b = makeRunner(runsDir);
    const seen: string[] = [];
    b.onFinished((id) => seen.push(id));
    const obs = await waitFinished(b, "second");
    expect(obs.result.status).toBe("ok");
    await waitFor("both reported", () => seen.length === 2);
    expect(seen.sort()).toEqual(["first", "second"]);
  });

  it("turns a harness that is gone without a result into a crash", async () => {
    const runsDir = freshRunsDir();
    const a = makeRunner(runsDir);
    const tag = `killed-${process.pid}-${Date.now()}`;
    await a.submit(spec("killed", `python3 sleep.py ${tag}`));
    const [stubPid] = await waitFor("the stub to start", () => (processesWith("sleep.py", tag).length === 1 ? processesWith("sleep.py", tag) : undefined));
    const pid = harnessPid(runsDir, "killed");
    a.close();
    process.kill(-pid, "SIGKILL"); // e.g. kill -9 of the harness's process group
    await waitFor("the harness to die", () => !alive(pid));

    const b = makeRunner(runsDir);
    const obs = await waitFinished(b, "killed");
    expect(obs.result.status).toBe("crash");
    expect(obs.result.stage).toBe("train");
    expect(obs.result.reason).toMatch(/the harness process ended without a result/);
    expect(obs.result.log_tail).toContain("train");
    // The training's PID namespace dies with the harness: nothing of the run is left.
    await waitFor("the orphaned stub to be gone", () => !alive(stubPid!));
  });

  it("does not mistake a reused pid for the harness (start time differs)", async () => {
    const runsDir = freshRunsDir();
    const dir = path.join(runsDir, "reused");
    fs.mkdirSync(dir);
    const s = spec("reused", "python3 sleep.py");
    fs.writeFileSync(
      path.join(dir, "spec.json"),
      JSON.stringify({ ...s, source: { url: s.source.url, token: null }, hasToken: false, queued: false, submittedAt: new Date().toISOString() }),
    );
    // Our own (alive) pid, but with a start time that is not ours.
    fs.writeFileSync(path.join(dir, "pid"), JSON.stringify({ pid: process.pid, startTime: 1, startedAt: new Date().toISOString() }));
    fs.writeFileSync(path.join(dir, "harness.log"), "harness: train: running 'python3 sleep.py'\n");
    const runner = makeRunner(runsDir);
    const obs = await runner.observe("reused");
    expect(obs.phase).toBe("finished");
    if (obs.phase !== "finished") return;
    expect(obs.result).toMatchObject({
      status: "crash",
      stage: "train",
      reason: "the harness process ended without a result (killed?); see harness.log",
    });
    expect(obs.result.log_tail).toContain("python3 sleep.py");
  });

  it("fetches a token-protected tarball; the token travels on a pipe and is never written anywhere", async () => {
    const gitDir = path.join(tmp, "git-src");
    fs.mkdirSync(gitDir);
    fs.copyFileSync(path.join(repoDir, "good.py"), path.join(gitDir, "good.py"));
    const git = (...args: string[]) =>
      execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: gitDir, encoding: "utf8" }).trim();
    git("init", "-q");
    git("add", "good.py");
    git("commit", "-q", "-m", "stub");
    const sha = git("rev-parse", "HEAD");
    const token = "ghs_localRunnerTestToken123";
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(`${req.url} ${req.headers.authorization ?? "-"}`);
      if (req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401).end('{"message":"Bad credentials"}');
        return;
      }
      if (req.url !== `/repos/o/r/tarball/${sha}`) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/x-gzip" });
      const archive = spawn("git", ["archive", "--format=tar.gz", `--prefix=o-r-${sha.slice(0, 7)}/`, sha], { cwd: gitDir });
      archive.stdout.pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const runsDir = freshRunsDir();
      const runner = makeRunner(runsDir);
      const finished: string[] = [];
      runner.onFinished((id) => finished.push(id));
      const dir = path.join(runsDir, "tarball-1");
      await runner.submit(
        spec("tarball-1", "python3 good.py", { sha, source: { url: `http://127.0.0.1:${port}/repos/o/r/tarball/${sha}`, token } }),
      );
      expect(fs.readFileSync(path.join(dir, "spec.json"), "utf8")).not.toContain(token);
      const pid = harnessPid(runsDir, "tarball-1");
      // Not on the harness's command line, not in its environment.
      expect(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")).not.toContain(token);
      expect(fs.readFileSync(`/proc/${pid}/environ`, "utf8")).not.toContain(token);

      const obs = await waitFinished(runner, "tarball-1");
      expect(obs.result.status).toBe("ok");
      expect(seen).toContain(`/repos/o/r/tarball/${sha} Bearer ${token}`);
      await waitFor("onFinished", () => finished.length === 1);
      for (const name of fs.readdirSync(dir)) {
        expect(fs.readFileSync(path.join(dir, name), "utf8")).not.toContain(token);
      }
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("drops a queued run whose token was lost with a restart, so that the next pass submits it with a new one", async () => {
    const runsDir = freshRunsDir();
    const a = makeRunner(runsDir);
    await a.submit(spec("busy", "python3 slow.py 1.5"));
    await a.submit(spec("tokened", "python3 good.py", { source: { url: "http://127.0.0.1:9/never", token: "ghs_lostInMemory" } }));
    expect((await a.observe("tokened")).phase).toBe("pending");
    a.close();
    const b = makeRunner(runsDir);
    await waitFor("the queued run to be dropped", async () => (await b.observe("tokened")).phase === "missing");
    expect(fs.readdirSync(runsDir).join(" ")).not.toContain("ghs_");
    await waitFinished(b, "busy");
  });

  it("replaces a run of the same id for another commit instead of reporting its result", async () => {
    const runsDir = freshRunsDir();
    const runner = makeRunner(runsDir);
    await runner.submit(spec("reused-id", "python3 good.py", { sha: "1".repeat(40) }));
    const first = await waitFinished(runner, "reused-id");
    expect(first.result.commit).toBe("1".repeat(40));
    await runner.submit(spec("reused-id", "python3 good.py", { sha: "2".repeat(40) }));
    const second = await waitFinished(runner, "reused-id");
    expect(second.result.commit).toBe("2".repeat(40));
    expect(counterLines()).toEqual(["reused-id", "reused-id"]);
  });

  it("keeps the bot's credentials out of the harness environment", async () => {
    const { harnessEnv } = await import("../src/runner/local.js");
    const env = harnessEnv(
      {
        PATH: "/bin", HOME: "/root", PRIVATE_KEY: "k", WEBHOOK_SECRET: "s", OPENAI_API_KEY: "o", GITHUB_TOKEN: "t", CUDA_VISIBLE_DEVICES: "0",
        AUTORESEARCH_API_TOKEN: "x", LD_LIBRARY_PATH: "/usr/local/nvidia/lib64", TRITON_LIBCUDA_PATH: "/usr/local/nvidia/lib64", OPENBLAS_NUM_THREADS: "4",
      },
      { AUTORESEARCH_CORPUS: "brown" },
    );
    expect(env).toEqual({
      PATH: "/bin", HOME: "/root", CUDA_VISIBLE_DEVICES: "0", AUTORESEARCH_CORPUS: "brown",
      // the GPU driver's and the numeric libraries' knobs
      LD_LIBRARY_PATH: "/usr/local/nvidia/lib64", TRITON_LIBCUDA_PATH: "/usr/local/nvidia/lib64", OPENBLAS_NUM_THREADS: "4",
    });
  });
});

/** A git repository in `dir` with this train.py and a prepare.py that writes data.txt; its commit. */
function commitProject(dir: string, train: string): string {
  fs.writeFileSync(path.join(dir, "train.py"), train);
  fs.writeFileSync(path.join(dir, "prepare.py"), 'import os\nopen(os.path.join(os.environ["AUTORESEARCH_DATA_DIR"], "data.txt"), "w").write("prepared")\n');
  const git = (...args: string[]) => execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { cwd: dir, encoding: "utf8" }).trim();
  git("init", "-q");
  git("add", ".");
  git("commit", "-q", "-m", "project");
  return git("rev-parse", "HEAD");
}

describe("a full disk", () => {
  it("is the machine's failure, not the experiment's; nothing starts until there is room again, and it is said once, with where", async () => {
    // The run folder is a 4 MiB tmpfs in a namespace of its own (bubblewrap), where the
    // runner, the harness and the training run; test/support/disk-full-runner.ts fills it while
    // one run trains and another waits for the slot, then frees it.
    const runsDir = path.join(tmp, "small-disk");
    fs.mkdirSync(runsDir);
    const driver = path.resolve("test/support/disk-full-runner.ts");
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn("bwrap", ["--dev-bind", "/", "/", "--size", String(4 << 20), "--tmpfs", runsDir, "--", process.execPath, "--import", "tsx", driver], {
        env: { ...process.env, DF_RUNS: runsDir, DF_REPO: repoDir, DF_CACHE: path.join(tmp, "cache"), DF_SCRATCH: path.join(tmp, "scratch"), DF_COUNTER: counterFile },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.on("error", reject);
      child.on("close", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`the driver exited ${code}: ${stderr}\n${stdout}`))));
    });
    const seen = JSON.parse(out.trim().split("\n").pop()!) as {
      fills: TrainerResult;
      whileFull: { waits: RunObservation; startsOfWaits: number; problems: string[]; logs: string[] };
      waits: TrainerResult;
      startsOfWaits: number;
      refused: string;
      afterRefusal: RunObservation;
      logs: string[];
    };

    // The run whose result the full disk swallowed: retried as infrastructure, saying where.
    expect(seen.fills).toMatchObject({ status: "crash", infrastructure: true, val_bpb: null });
    expect(seen.fills.reason).toMatch(/^the disk is full/);
    expect(seen.fills.reason).toContain(runsDir);
    // The waiting run is not started (once or on every poll) while there is no room: it waits.
    expect(seen.whileFull.waits.phase).toBe("pending");
    expect(seen.whileFull.startsOfWaits).toBe(0);
    // What keeps runs from starting, for the check run: where, and how much room is left.
    expect(seen.whileFull.problems).toHaveLength(1);
    expect(seen.whileFull.problems[0]).toMatch(/the disk of the local runner is full/);
    expect(seen.whileFull.problems[0]).toContain(runsDir);
    expect(seen.whileFull.problems[0]).toMatch(/\d+ (bytes|KiB|MiB) free/);
    // Said once in the log, with the folder and its free space, however often it was tried.
    const said = seen.whileFull.logs.filter((l) => /disk is full/.test(l) && !l.startsWith("run "));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain(runsDir);
    expect(said[0]).toMatch(/\d+ (bytes|KiB|MiB) free/);
    // Once there is room the waiting run starts by itself, once, and trains.
    expect(seen.waits).toMatchObject({ status: "ok", stage: "train" });
    expect(seen.startsOfWaits).toBe(1);
    expect(seen.logs.some((l) => /room again/.test(l) && l.includes(runsDir))).toBe(true);
    // A run submitted while the disk is full is refused with the reason, and leaves nothing.
    expect(seen.refused).toMatch(/^DiskFullError: run refused was not queued: the disk of the local runner is full/);
    expect(seen.refused).toContain(runsDir);
    expect(seen.afterRefusal).toEqual({ phase: "missing", runId: "refused" });
  });
});

describe("the sandbox", () => {
  it("a runner that cannot sandbox refuses to start and names the fix; AUTORESEARCH_SANDBOX=off is the only way past", () => {
    expect(() => makeRunner(freshRunsDir(), { sandbox: "bwrap", bwrap: path.join(tmp, "no-such-bwrap") })).toThrow(SandboxUnavailableError);
    expect(() => makeRunner(freshRunsDir(), { sandbox: "bwrap", bwrap: path.join(tmp, "no-such-bwrap") })).toThrow(
      /apt-get install bubblewrap[\s\S]*unprivileged_userns_clone[\s\S]*AUTORESEARCH_SANDBOX=off/,
    );
    const warnings: string[] = [];
    const off = makeRunner(freshRunsDir(), { sandbox: "off", bwrap: path.join(tmp, "no-such-bwrap"), logger: { info() {}, warn: (m) => warnings.push(m), error() {} } });
    expect(off.sandboxed).toBe(false);
    expect(warnings.join("\n")).toMatch(/WITHOUT a sandbox/);
    expect(sandboxFromEnv({})).toBe("bwrap");
    expect(sandboxFromEnv({ AUTORESEARCH_SANDBOX: "off" })).toBe("off");
    expect(() => sandboxFromEnv({ AUTORESEARCH_SANDBOX: "maybe" })).toThrow(/must be bwrap \(the default\) or off/);
  });

  it("an attacker's train.py reads no credential, reaches no network, writes no shared data and leaves no process", async () => {
    const canaries = [`canary-private-key-${process.pid}`, `canary-webhook-${process.pid}`, `ghs_canaryToken${process.pid}`, `canary-other-run-${process.pid}`];
    // What the bot has lying around: its .env, its own environment, another run's files, a token in flight.
    fs.writeFileSync(path.join(tmp, ".env"), `PRIVATE_KEY=${canaries[0]}\nWEBHOOK_SECRET=${canaries[1]}\n`);
    process.env.AUTORESEARCH_TEST_CANARY = canaries[1];
    const runsDir = freshRunsDir();
    fs.mkdirSync(path.join(runsDir, "another-run"));
    fs.writeFileSync(path.join(runsDir, "another-run", "harness.log"), canaries[3]!);
    const connections: string[] = [];
    const listener = http.createServer((req, res) => {
      connections.push(req.url ?? "");
      res.end("ok");
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const port = (listener.address() as AddressInfo).port;
    const marker = `attack-marker-${process.pid}-${Date.now()}`;
    const cache = path.join(tmp, "cache");
    const dataDir = () => {
      const base = repoCacheDir(cache, REPO);
      const name = fs.readdirSync(base).find((n) => /^data-[0-9a-f]{16}$/.test(n));
      return path.join(base, name!);
    };

    const gitDir = fs.mkdtempSync(path.join(tmp, "attacker-"));
    const targets = {
      files: [path.join(tmp, ".env"), path.join(runsDir, "another-run", "harness.log"), "/proc/1/environ", `/proc/${process.pid}/environ`],
      dirs: [runsDir, tmp],
      canaries,
      hosts: [["127.0.0.1", port]],
      writable: [path.join(tmp, "planted-by-an-experiment"), path.join(repoCacheDir(cache, REPO), "poison.txt")],
      marker,
    };
    const sha = commitProject(gitDir, fs.readFileSync("test/fixtures/attacks/train.py", "utf8").replace("TARGETS = {}", `TARGETS = ${JSON.stringify(targets)}`));
    const server = http.createServer((req, res) => {
      if (req.headers.authorization !== `Bearer ${canaries[2]}`) return void res.writeHead(401).end();
      res.writeHead(200, { "content-type": "application/x-gzip" });
      spawn("git", ["archive", "--format=tar.gz", `--prefix=o-r-${sha.slice(0, 7)}/`, sha], { cwd: gitDir }).stdout.pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const runner = makeRunner(runsDir, { cacheDir: cache });
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/repos/o/r/tarball/${sha}`;
      const run = spec("attack-1", "python3 train.py", { sha, source: { url, token: canaries[2]! }, prepareCmd: "python3 prepare.py", prepareFiles: ["prepare.py"] });
      await runner.submit(run);
      const obs = await waitFinished(runner, "attack-1");
      expect(obs.result.status).toBe("ok");
      const log = fs.readFileSync(path.join(runsDir, "attack-1", "train.log"), "utf8");
      const attacks = JSON.parse(/^ATTACKS (.*)$/m.exec(log)![1]!) as Record<string, string>;
      expect(attacks["leave a process behind"]).toMatch(/started a daemon/);
      for (const [name, outcome] of Object.entries(attacks)) expect(outcome, name).not.toMatch(/^(LEAKED|LISTED|CONNECTED|RESOLVED|WROTE)/);
      // The bot's files and the other run do not exist for it; the network and the data refuse it.
      for (const name of [`read ${targets.files[0]}`, `read ${targets.files[1]}`, `list ${runsDir}`, `list ${tmp}`, `connect 127.0.0.1:${port}`, "resolve github.com", "write the prepared data", ...targets.writable.map((w) => `write ${w}`)]) {
        expect(attacks[name], name).toMatch(/^blocked/);
      }
      // Its /proc holds only the sandbox's own processes.
      expect(attacks["scan /proc and the environment"]).toMatch(/^nothing \((\d) processes visible\)$/);

      // Checked from outside as well: no connection, no process, no write, no canary in anything published.
      expect(connections).toEqual([]);
      expect(processesWith(marker)).toEqual([]);
      expect(fs.existsSync(path.join(tmp, "planted-by-an-experiment"))).toBe(false);
      expect(fs.readdirSync(dataDir()).sort()).toEqual([".prepared", "data.txt"]);
      const published = [JSON.stringify(obs.result), log, fs.readFileSync(path.join(runsDir, "attack-1", "harness.log"), "utf8")].join("\n");
      for (const c of canaries) expect(published).not.toContain(c);

      // The prepared data is verified before the next run and still matches: it is not prepared again.
      await runner.submit({ ...run, runId: "attack-2" });
      const again = await waitFinished(runner, "attack-2");
      expect(again.result.notes ?? []).toEqual([]);
      expect(fs.readFileSync(path.join(runsDir, "attack-2", "harness.log"), "utf8")).toMatch(/prepare: cached/);
    } finally {
      delete process.env.AUTORESEARCH_TEST_CANARY;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    }
  }, 60_000);

  it("never shows the bot's folders, not even through a read-only folder the operator names that holds them", async () => {
    // AUTORESEARCH_SANDBOX_READONLY names a folder that happens to hold the data cache (every
    // repository's prepared data); the runs folder is elsewhere.
    const shared = fs.mkdtempSync(path.join(tmp, "shared-"));
    const cache = path.join(shared, "cache");
    const other = path.join(repoCacheDir(cache, { owner: "another", repo: "project" }), "data-0123456789abcdef");
    fs.mkdirSync(other, { recursive: true });
    fs.writeFileSync(path.join(other, "train.bin"), "another project's data");
    fs.writeFileSync(path.join(shared, "notes.txt"), "beside the cache");
    const runsDir = freshRunsDir();
    const files = [path.join(other, "train.bin"), path.join(shared, "notes.txt")];
    const gitDir = fs.mkdtempSync(path.join(tmp, "reader-"));
    const sha = commitProject(gitDir, [
      "import json",
      "seen = {}",
      `for f in ${JSON.stringify(files)}:`,
      "    try:",
      "        seen[f] = open(f).read()",
      "    except OSError as e:",
      "        seen[f] = 'blocked'",
      "print('SEEN ' + json.dumps(seen)); print('---'); print('val_bpb: 1.5')",
    ].join("\n"));
    const runner = makeRunner(runsDir, { cacheDir: cache, sandboxReadOnly: [shared] });
    expect(runner.privateFolders()).toEqual([process.cwd(), runsDir, cache]);
    await runner.submit(spec("private-1", "python3 train.py", { sha, source: { url: gitDir, token: null } }));
    const obs = await waitFinished(runner, "private-1");
    expect(obs.result.status).toBe("ok");
    const log = fs.readFileSync(path.join(runsDir, "private-1", "train.log"), "utf8");
    expect(JSON.parse(/^SEEN (.*)$/m.exec(log)![1]!)).toEqual({ [files[0]!]: "blocked", [files[1]!]: "blocked" });
    expect(fs.readFileSync(path.join(runsDir, "private-1", "harness.log"), "utf8")).toContain(
      `sandbox: not binding ${fs.realpathSync(shared)}: it holds the runner's ${fs.realpathSync(cache)}`,
    );
  });

  it("prepared data changed behind the harness's back is prepared again, and the run says so", async () => {
    const runsDir = freshRunsDir();
    const cache = path.join(tmp, "cache-tamper");
    const gitDir = fs.mkdtempSync(path.join(tmp, "tamper-"));
    const sha = commitProject(gitDir, `print(${JSON.stringify(SUMMARY)})\n`);
    const runner = makeRunner(runsDir, { cacheDir: cache });
    const run = (id: string) => spec(id, "python3 train.py", { sha, source: { url: gitDir, token: null }, prepareCmd: "python3 prepare.py", prepareFiles: ["prepare.py"] });
    await runner.submit(run("t-1"));
    expect((await waitFinished(runner, "t-1")).result.status).toBe("ok");
    const base = repoCacheDir(cache, REPO);
    const data = path.join(base, fs.readdirSync(base).find((n) => /^data-[0-9a-f]{16}$/.test(n))!);
    // Someone (an unsandboxed run, a person) changes the prepared data.
    fs.writeFileSync(path.join(data, "data.txt"), "tampered");
    await runner.submit(run("t-2"));
    const second = await waitFinished(runner, "t-2");
    expect(second.result.status).toBe("ok");
    expect(second.result.notes?.join(" ")).toMatch(/prepared again: its content changed since it was prepared/);
    expect(fs.readFileSync(path.join(data, "data.txt"), "utf8")).toBe("prepared");
  }, 60_000);
});

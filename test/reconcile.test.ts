// The experiment loop, specified through what people see on GitHub: pull requests, their
// labels and hidden records, check runs and comments. Every test drives reconcile() the way
// the controller does, pass after pass, against in-memory fakes of GitHub, the runner and the
// proposer; training runs are finished by hand with the result the harness would report.
import { WriteBudget } from "../src/github/budget.js";
import { describe, expect, it } from "vitest";
import { CONFIG_PATH } from "../src/config.js";
import { decodeRecord } from "../src/ledger/index.js";
import { newHousekeeping, reconcile, type ReconcileReport } from "../src/reconcile/index.js";
import {
  change,
  crashed,
  FakeGitHub,
  FakeRunner,
  infraFailure,
  measured,
  ScriptedProposer,
  timedOut,
  type ScriptStep,
  singleRun,
} from "./support/fakes.js";

// ------------------------------------------------------------------ the research repository

const TRAIN_PY = `import os

DEPTH = 4
LR = 0.04
WARMUP = 100
BATCH_SIZE = 32


def main():
    budget = int(os.environ.get("AUTORESEARCH_TIME_BUDGET", "300"))
    print("training for", budget, "seconds at lr", LR)


if __name__ == "__main__":
    main()
`;

const PROGRAM_MD = "# Tonight\n\nFocus on the optimizer: the learning rate and its warmup.\n";
const PREPARE_PY = "# data preparation and evaluation: fixed\nprint('prepared')\n";

interface WorldOptions {
  /** Text of .github/autoresearch.yml; null: no file (all defaults). */
  config?: string | null;
  /** Files to add or (null) remove from the initial commit. */
  files?: Record<string, string | null>;
  runnerSlots?: number;
  /** The runner holds runs beyond its slots and starts the oldest as one ends. */
  runnerQueues?: boolean;
  now?: string;
}

interface World {
  gh: FakeGitHub;
  runner: FakeRunner;
  proposer: ScriptedProposer;
  clock: { now: Date };
  /** One reconcile pass. */
  pass(): Promise<ReconcileReport>;
  /**
   * Passes until one changes nothing on GitHub or in the runner (as the controller's
   * triggers would); fails on an unexpected error in a report.
   */
  settle(o?: { allowErrors?: boolean }): Promise<ReconcileReport[]>;
}

function world(o: WorldOptions = {}): World {
  const files: Record<string, string> = {
    "program.md": PROGRAM_MD,
    "train.py": TRAIN_PY,
    "prepare.py": PREPARE_PY,
    "README.md": "# research\n",
  };
  const config = o.config === undefined ? singleRun("") : o.config === null ? null : singleRun(o.config);
  if (config !== null) files[CONFIG_PATH] = config;
  for (const [p, t] of Object.entries(o.files ?? {})) {
    if (t === null) delete files[p];
    else files[p] = t;
  }
  const gh = new FakeGitHub({ files });
  const runner = new FakeRunner(o.runnerSlots ?? 1, o.runnerQueues ?? false);
  const proposer = new ScriptedProposer();
  const clock = { now: new Date(o.now ?? "2025-03-01T23:00:00Z") };
  const pass = () => reconcile({ gh, runner, proposerFor: () => proposer, env: {}, now: () => clock.now });
  return {
    gh,
    runner,
    proposer,
    clock,
    pass,
    async settle({ allowErrors = false } = {}) {
      const reports: ReconcileReport[] = [];
      for (let i = 0; i < 12; i++) {
        const before = [gh.revision, runner.revision];
        const report = await pass();
        reports.push(report);
        if (!allowErrors && report.errors.length) throw new Error(`the pass reported errors: ${report.errors.join("; ")}`);
        if (!report.again && gh.revision === before[0] && runner.revision === before[1]) return reports;
      }
      throw new Error("the loop did not settle within 12 passes");
    },
  };
}

/** The open PR of experiment n with its run in flight: the run id. */
function runOf(w: World, n: number): string {
  return w.runner.runOf(w.gh.pullOf(n).number);
}

/**
 * A world whose baseline (experiment 1) measured `baselineBpb` and whose experiment 2 trains:
 * by default it raises LR from 0.04 to 0.05 (later proposals come from the built-in proposer
 * unless the test queues its own).
 */
async function measuredBaseline(
  o: WorldOptions & { baselineBpb?: number; proposals?: ScriptStep[] } = {},
): Promise<World> {
  const w = world(o);
  w.proposer.queue(...(o.proposals ?? [change("LR = 0.04", "LR = 0.05", "LR: 0.04 → 0.05")]));
  await w.settle();
  w.runner.finish(runOf(w, 1), measured(o.baselineBpb ?? 1.0));
  await w.settle();
  return w;
}

const allErrors = (reports: ReconcileReport[]) => reports.flatMap((r) => r.errors);

// ================================================================== specification

describe("before the loop can start", () => {
  it("reports an invalid .github/autoresearch.yml as a failed `autoresearch` check on the default branch head, naming the field", async () => {
    const w = world({ config: "slots: zero\nbudget_secnds: 60\n" });
    const [report] = await w.settle();

    const check = w.gh.checkRun(w.gh.head(), "autoresearch");
    expect(check.status).toBe("completed");
    expect(check.conclusion).toBe("failure");
    expect(check.output.title).toBe(".github/autoresearch.yml is invalid");
    expect(check.output.summary).toContain('slots: must be a number, got the text "zero"');
    expect(check.output.summary).toContain("budget_secnds: unknown key (did you mean budget_seconds?)");
    expect(report!.waiting).toContain("invalid config");
    expect(w.gh.pulls).toHaveLength(0);
    expect(w.gh.callsTo("commitFiles")).toHaveLength(0);
    expect(w.runner.submitted).toHaveLength(0);
  });

  it("starts once a push fixes the config", async () => {
    const w = world({ config: "slots: zero\n" });
    await w.settle();
    const broken = w.gh.head();

    const fixed = w.gh.pushToDefault({ [CONFIG_PATH]: singleRun("slots: 1\n") }, "Fix the autoresearch config");
    await w.settle();

    expect(w.gh.checkRunsOn(fixed, "autoresearch")).toHaveLength(0);
    expect(w.gh.checkRun(broken, "autoresearch").conclusion).toBe("failure");
    expect(w.gh.openPulls()).toHaveLength(1);
    expect(w.gh.record(w.gh.openPulls()[0]!.number).kind).toBe("baseline");
    expect(w.runner.inFlight()).toHaveLength(1);
  });

  it("reports a missing program.md the same way, and waits", async () => {
    const w = world({ files: { "program.md": null } });
    const [report] = await w.settle();

    const check = w.gh.checkRun(w.gh.head(), "autoresearch");
    expect(check.conclusion).toBe("failure");
    expect(check.output.title).toBe("autoresearch cannot start");
    expect(check.output.summary).toContain("program.md was not found on main");
    expect(report!.waiting).toContain("program.md");
    expect(w.gh.pulls).toHaveLength(0);
    expect(w.runner.submitted).toHaveLength(0);

    w.gh.pushToDefault({ "program.md": PROGRAM_MD }, "Add the research program");
    await w.settle();
    expect(w.gh.openPulls()).toHaveLength(1);
  });

  it("reports a missing editable file (train.py under the configured workdir)", async () => {
    const w = world({ config: "workdir: trainer\nprepare_files: []\n" });
    await w.settle();

    const check = w.gh.checkRun(w.gh.head(), "autoresearch");
    expect(check.conclusion).toBe("failure");
    expect(check.output.summary).toContain("editable file trainer/train.py was not found on main");
    expect(w.gh.pulls).toHaveLength(0);
  });
});

describe("the baseline", () => {
  it("is the first experiment: an empty commit on the default branch head, trained at once, labelled and checked only with its decision", async () => {
    const w = world();
    const main = w.gh.head();
    const [first] = await w.settle();

    expect(first!.proposed).toEqual([1]);
    expect(w.gh.pulls).toHaveLength(1);
    const pr = w.gh.pulls[0]!;
    expect(pr.title).toBe("[autoresearch 1] Baseline: measure the current train.py");
    expect(pr.state).toBe("open");
    expect(pr.base).toBe("main");
    expect(pr.head).toMatch(/^autoresearch\/1-baseline/);
    // Labels come with the write that records the decision: one write fewer per experiment.
    expect(pr.labels).toEqual([]);
    expect(w.gh.commit(pr.headSha).parents).toEqual([main]);
    expect(w.gh.changedPaths(pr.headSha)).toEqual([]);

    const record = w.gh.record(pr.number);
    // The record is not rewritten when the run starts: the runner knows it was submitted.
    expect(record).toMatchObject({ n: 1, kind: "baseline", state: "queued", attempt: 1, baseSha: main, headSha: pr.headSha });
    expect(record.measurements).toEqual([]);

    expect(w.runner.submitted).toHaveLength(1);
    const spec = w.runner.submitted[0]!;
    expect(spec).toMatchObject({ runId: "acme-research-1-1", pull: pr.number, sha: pr.headSha, budgetSeconds: 300, trainCmd: "python3 train.py" });
    expect(spec.source.url).toContain(pr.headSha);

    // The check run is written once, with the decision.
    expect(w.gh.checkRunsOn(pr.headSha, "val_bpb")).toEqual([]);
  });

  it("is not opened twice: a pass with nothing new changes nothing and writes nothing", async () => {
    const w = world();
    await w.pass();
    const writes = w.gh.writes;
    const calls = w.runner.submitCalls;

    const again = await w.pass();
    await w.pass();

    expect(w.gh.pulls).toHaveLength(1);
    expect(w.runner.submitted).toHaveLength(1);
    expect(w.runner.submitCalls).toBe(calls);
    expect(w.gh.writes).toBe(writes);
    expect(w.runner.cancelled).toEqual([]);
    expect(w.runner.inFlight()).toEqual(["acme-research-1-1"]);
    expect(again.proposed).toEqual([]);
    expect(again.errors).toEqual([]);
    expect(again.waiting).toMatch(/slot/);
  });

  it("costs a handful of reads per quiet pass: the default branch, three files, the control issue and the ledger", async () => {
    const w = world();
    await w.settle();
    const reads = w.gh.reads;
    await w.pass();
    expect(w.gh.calls.slice(-7).map((c) => c.op)).toEqual([
      "getDefaultBranch",
      "getBranchSha",
      "readConfig",
      "readFile",
      "readFile",
      "listIssues",
      "listExperimentPulls",
    ]);
    expect(w.gh.reads - reads).toBe(7);
  });

  it("when measured: records val_bpb, completes the check, closes the PR in the same write and opens the first experiment", async () => {
    const w = world();
    w.proposer.queue(change("LR = 0.04", "LR = 0.06", "LR: 0.04 → 0.06"));
    await w.settle();
    const baseline = w.gh.pullOf(1);
    const main = w.gh.head();

    w.runner.finish("acme-research-1-1", measured(0.998));
    const [report] = await w.settle();

    expect(report!.finished).toEqual([{ n: 1, verdict: "keep", valBpb: 0.998 }]);
    expect(baseline.state).toBe("closed");
    expect(baseline.merged).toBe(false);
    expect(baseline.labels).toEqual(["autoresearch", "autoresearch:baseline", "autoresearch:keep"]);
    // The record says it; no comment (a write GitHub counts). The branch is deleted as work
    // that waits for spare writes (no budget here: at once).
    expect(baseline.body).toMatch(/Measured: this is the figure later experiments must beat/);
    expect(w.gh.commentsOn(baseline.number)).toEqual([]);
    expect(w.gh.branches.has(baseline.head)).toBe(false);
    const record = w.gh.record(baseline.number);
    expect(record.state).toBe("kept");
    expect(record.measurements.map((m) => m.result.val_bpb)).toEqual([0.998]);
    const check = w.gh.checkRun(baseline.headSha, "val_bpb");
    expect(check).toMatchObject({ status: "completed", conclusion: "success" });
    expect(check.output.title).toBe("val_bpb 0.998000");
    expect(w.runner.cleaned).toEqual(["acme-research-1-1"]);

    // The same pass proposed experiment 2 from program.md and the current train.py.
    expect(report!.proposed).toEqual([2]);
    expect(w.proposer.requests).toHaveLength(1);
    const req = w.proposer.requests[0]!;
    expect(req.guidance).toBe(PROGRAM_MD);
    expect(req.files).toEqual({ "train.py": TRAIN_PY });
    expect(req.bestBpb).toBe(0.998);
    expect(req.history.map((h) => [h.n, h.outcome])).toEqual([[1, "baseline"]]);

    const exp = w.gh.pullOf(2);
    expect(exp.title).toBe("[autoresearch 2] LR: 0.04 → 0.06");
    expect(exp.labels).toEqual([]);
    expect(w.gh.commit(exp.headSha).parents).toEqual([main]);
    expect(w.gh.changedPaths(exp.headSha)).toEqual(["train.py"]);
    expect(w.gh.file("train.py", exp.headSha)).toBe(TRAIN_PY.replace("LR = 0.04", "LR = 0.06"));
    expect(w.gh.record(exp.number)).toMatchObject({ kind: "experiment", state: "queued", baselineBpb: 0.998, baselineN: 1 });
    expect(exp.body).toContain("**Hypothesis.**");
    expect(exp.body).toContain("+LR = 0.06");
    expect(w.runner.runOf(exp.number)).toBe("acme-research-2-1");
  });
});

describe("a project in a subdirectory", () => {
  it("trains in the configured workdir with the configured budget, and experiments change only workdir/train.py", async () => {
    const w = await measuredBaseline({
      config: "workdir: trainer\nbudget_seconds: 60\ntimeout_seconds: 200\nprepare_command: null\n",
      files: { "train.py": null, "prepare.py": null, "trainer/train.py": TRAIN_PY, "trainer/prepare.py": PREPARE_PY },
    });
    const spec = w.runner.spec(runOf(w, 2));
    expect(spec).toMatchObject({ workdir: "trainer", budgetSeconds: 60, timeoutSeconds: 200, prepareCmd: null, prepareFiles: ["prepare.py"] });
    const pr = w.gh.pullOf(2);
    expect(w.gh.changedPaths(pr.headSha)).toEqual(["trainer/train.py"]);
    expect(w.gh.checkRunsOn(pr.headSha, "val_bpb")).toEqual([]);
  });
});

describe("deciding an experiment", () => {
  it("keeps an improvement beyond min_delta: check success, squash-merged with the measured sha as guard", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    const measuredSha = pr.headSha;
    const edited = w.gh.file("train.py", measuredSha);

    w.runner.finish(runOf(w, 2), measured(0.99));
    const [decided] = await w.settle();

    expect(decided!.finished).toEqual([{ n: 2, verdict: "keep", valBpb: 0.99 }]);
    expect(decided!.again).toBe(true);
    const check = w.gh.checkRun(measuredSha, "val_bpb");
    expect(check).toMatchObject({ status: "completed", conclusion: "success" });
    expect(check.output.title).toBe("val_bpb 0.990000 (−0.010000 vs baseline)");
    expect(check.output.summary).toContain("**Decision: keep.**");

    const merges = w.gh.callsTo("mergePull");
    expect(merges).toHaveLength(1);
    expect(merges[0]!.args[1]).toBe(measuredSha);
    expect(pr.merged).toBe(true);
    expect(pr.labels).toEqual(["autoresearch", "autoresearch:keep"]);
    expect(w.gh.record(pr.number)).toMatchObject({ state: "kept", decision: { verdict: "keep", delta: -0.01 } });
    expect(w.gh.head()).toBe(pr.mergeCommitSha);
    expect(w.gh.file("train.py")).toBe(edited);
    expect(w.gh.branches.has(pr.head)).toBe(false);

    // The kept measurement is the new figure to beat: no second baseline is needed.
    const next = w.gh.pullOf(3);
    expect(w.gh.record(next.number)).toMatchObject({ kind: "experiment", baselineBpb: 0.99, baselineN: 2, baseSha: w.gh.head() });
  });

  it("discards a regression: check failure, PR closed unmerged with the reason", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);

    w.runner.finish(runOf(w, 2), measured(1.02));
    await w.settle();

    const check = w.gh.checkRun(pr.headSha, "val_bpb");
    expect(check.conclusion).toBe("failure");
    expect(check.output.title).toBe("val_bpb 1.020000 (+0.020000 vs baseline)");
    expect(pr).toMatchObject({ state: "closed", merged: false, labels: ["autoresearch", "autoresearch:discard"] });
    // Why is in the record, closed in the same write: no comment.
    expect(w.gh.commentsOn(pr.number)).toEqual([]);
    expect(pr.body).toMatch(/Discarded: the change did not improve val_bpb enough[\s\S]*worse than the baseline/);
    expect(w.gh.record(pr.number)).toMatchObject({ state: "discarded", decision: { verdict: "discard", delta: 0.02 } });
    expect(w.gh.callsTo("mergePull")).toHaveLength(0);
    expect(w.gh.branches.has(pr.head)).toBe(false);
    // The loop goes on against the unchanged baseline.
    expect(w.gh.record(w.gh.pullOf(3).number).baselineBpb).toBe(1.0);
    expect(w.proposer.requests[1]!.history.find((h) => h.n === 2)?.outcome).toBe("worse");
  });

  it("discards a change within noise as neutral, and tells the proposer it was noise, not worse", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);

    w.runner.finish(runOf(w, 2), measured(0.9995));
    await w.settle();

    const check = w.gh.checkRun(pr.headSha, "val_bpb");
    expect(check.conclusion).toBe("neutral");
    expect(check.output.summary).toContain("within noise");
    expect(pr).toMatchObject({ state: "closed", merged: false, labels: ["autoresearch", "autoresearch:discard"] });
    expect(w.proposer.requests[1]!.history.find((h) => h.n === 2)?.outcome).toBe("within noise");
  });

  it("closes a crash with the reason and the log tail in the check run", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);

    w.runner.finish(runOf(w, 2), crashed("RuntimeError: mat1 and mat2 shapes cannot be multiplied", "step 12\rTraceback ...\nRuntimeError: mat1 and mat2 shapes cannot be multiplied\n"));
    await w.settle();

    const check = w.gh.checkRun(pr.headSha, "val_bpb");
    expect(check.conclusion).toBe("failure");
    expect(check.output.title).toBe("crash: RuntimeError: mat1 and mat2 shapes cannot be multiplied");
    expect(check.output.text).toContain("**Reason:** RuntimeError: mat1 and mat2 shapes cannot be multiplied");
    expect(check.output.text).toContain("Traceback ...");
    expect(pr).toMatchObject({ state: "closed", merged: false, labels: ["autoresearch", "autoresearch:crash"] });
    expect(w.gh.commentsOn(pr.number)).toEqual([]);
    expect(pr.body).toMatch(/The run crashed \\?\(exit code 1\\?\): RuntimeError/);
    expect(w.gh.record(pr.number)).toMatchObject({ state: "crashed", decision: { verdict: "crash" } });
    expect(pr.body).toContain("End of the log of the last run");
  });

  it("closes a run past its deadline as timed_out", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);

    w.runner.finish(runOf(w, 2), timedOut(720));
    await w.settle();

    const check = w.gh.checkRun(pr.headSha, "val_bpb");
    expect(check.conclusion).toBe("timed_out");
    expect(check.output.title).toBe("timeout: killed after 720 s");
    expect(pr).toMatchObject({ state: "closed", labels: ["autoresearch", "autoresearch:crash"] });
  });

  it("records a result once, even when the runner reports it to several passes", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);
    w.runner.finish(runOf(w, 2), measured(1.01));
    await w.pass();
    await w.pass();
    await w.pass();

    expect(w.gh.record(pr.number).measurements).toHaveLength(1);
    expect(w.gh.checkRunsOn(pr.headSha, "val_bpb")).toHaveLength(1);
  });
});

describe("infrastructure failures", () => {
  it("measures again with a new run id when the repository could not be fetched; it is not a crash", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);

    w.runner.finish("acme-research-2-1", infraFailure("fetch"));
    await w.settle();

    // The failed attempt is in the record; the check run waits for the decision.
    expect(w.gh.checkRunsOn(pr.headSha, "val_bpb")).toEqual([]);
    expect(w.runner.inFlight()).toEqual(["acme-research-2-2"]);
    const between = w.gh.record(pr.number);
    expect(between).toMatchObject({ state: "queued", attempt: 2, decision: null });
    expect(between.measurements.map((m) => m.result.stage)).toEqual(["fetch"]);
    expect(pr.state).toBe("open");
    expect(pr.labels).toEqual(["autoresearch", "autoresearch:running"]);

    w.runner.finish("acme-research-2-2", measured(0.99));
    await w.settle();
    expect(pr.merged).toBe(true);
    const record = w.gh.record(pr.number);
    expect(record.decision).toMatchObject({ verdict: "keep", delta: -0.01 });
    expect(record.measurements.map((m) => m.runId)).toEqual(["acme-research-2-1", "acme-research-2-2"]);
  });

  it("gives up after the maximum number of attempts and reports a crash", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);

    for (const attempt of [1, 2, 3]) {
      w.runner.finish(`acme-research-2-${attempt}`, infraFailure("prepare", "prepare.py exited with 1"));
      await w.settle();
    }

    expect(w.runner.submitted.filter((s) => s.pull === pr.number).map((s) => s.runId)).toEqual([
      "acme-research-2-1",
      "acme-research-2-2",
      "acme-research-2-3",
    ]);
    expect(pr).toMatchObject({ state: "closed", labels: ["autoresearch", "autoresearch:crash"] });
    const check = w.gh.checkRunsOn(pr.headSha, "val_bpb").find((c) => c.externalId === "acme-research-2-3")!;
    expect(check.conclusion).toBe("failure");
    expect(check.output.summary).toContain("All 3 attempts failed before training; the last one at prepare");
  });

  it("measures again, without holding it against the change, when the disk filled up during training; the PR says where", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    const reason = "the disk is full: the harness could not write the run's result in /srv/bot/.runs/acme-research-2-1 (0 bytes free there)";

    w.runner.finish("acme-research-2-1", { status: "crash", val_bpb: null, exit_code: 3, reason, log_tail: "", summary: {}, stage: "train", infrastructure: true });
    await w.settle();

    expect(w.runner.inFlight()).toEqual(["acme-research-2-2"]);
    expect(w.gh.record(pr.number)).toMatchObject({ state: "queued", attempt: 2, decision: null });
    expect(pr.state).toBe("open");
    // The pull request shows the failed attempt with its reason: the disk, and where.
    expect(pr.body).toContain("the disk is full: the harness could not write the run's result in /srv/bot/.runs/acme-research-2-1");

    w.runner.finish("acme-research-2-2", measured(0.99));
    await w.settle();
    expect(pr.merged).toBe(true);
    expect(w.gh.record(pr.number).decision).toMatchObject({ verdict: "keep", delta: -0.01 });
  });

  it("submits a run again when the runner lost it", async () => {
    const w = await measuredBaseline();
    w.runner.lose("acme-research-2-1");
    await w.settle();

    expect(w.runner.inFlight()).toEqual(["acme-research-2-1"]);
    expect(w.gh.pullOf(2).state).toBe("open");
  });
});

describe("the merged tree is the measured tree", () => {
  it("does not merge when the default branch moved while the experiment ran; it re-applies the change on the new head and merges after measuring it again", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    const firstSha = pr.headSha;
    const moved = w.gh.pushToDefault({ "README.md": "# research\n\nNotes by a person.\n" });

    w.runner.finish("acme-research-2-1", measured(0.99));
    await w.settle();

    expect(w.gh.callsTo("mergePull")).toHaveLength(0);
    expect(pr.state).toBe("open");
    expect(pr.merged).toBe(false);
    expect(pr.headSha).not.toBe(firstSha);
    expect(w.gh.commit(pr.headSha).parents).toEqual([moved]);
    expect(w.gh.changedPaths(pr.headSha)).toEqual(["train.py"]);
    expect(pr.body).toMatch(/main moved to .* while this experiment ran: the change was re-applied on it and is measured again before any merge/);
    expect(w.gh.checkRun(firstSha, "val_bpb").conclusion).toBe("success");
    const record = w.gh.record(pr.number);
    expect(record).toMatchObject({ state: "queued", attempt: 2, baseSha: moved, headSha: pr.headSha, baselineBpb: 1.0 });
    expect(record.measurements).toEqual([]);
    expect(w.runner.inFlight()).toEqual(["acme-research-2-2"]);
    expect(w.runner.spec("acme-research-2-2").sha).toBe(pr.headSha);

    w.runner.finish("acme-research-2-2", measured(0.992));
    await w.settle();

    const merges = w.gh.callsTo("mergePull");
    expect(merges).toHaveLength(1);
    expect(merges[0]!.args[1]).toBe(w.gh.record(pr.number).headSha);
    expect(pr.merged).toBe(true);
    expect(w.gh.file("README.md")).toContain("Notes by a person");
    expect(w.gh.file("train.py")).toBe(w.gh.file("train.py", record.headSha));
  });

  it("measures a new baseline first when a person changed train.py meanwhile, then the experiment against it", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    const humanTrain = w.gh.file("train.py")!.replace("WARMUP = 100", "WARMUP = 200");
    w.gh.pushToDefault({ "train.py": humanTrain }, "Longer warmup");

    w.runner.finish("acme-research-2-1", measured(0.99));
    await w.settle();

    // Experiment 2 waits, re-applied on the new head; the new head's tree is measured first.
    expect(pr.state).toBe("open");
    expect(w.gh.file("train.py", pr.headSha)).toBe(humanTrain.replace("LR = 0.04", "LR = 0.05"));
    expect(w.gh.record(pr.number)).toMatchObject({ state: "queued", baselineBpb: null });
    const baseline = w.gh.pullOf(3);
    expect(w.gh.record(baseline.number)).toMatchObject({ kind: "baseline", state: "queued", baseSha: w.gh.head() });
    expect(w.runner.inFlight()).toEqual([w.runner.runOf(baseline.number)]);

    w.runner.finish(w.runner.runOf(baseline.number), measured(1.01));
    await w.settle();
    // Submitted without a write: the baseline it is measured against is recorded with the decision.
    expect(w.gh.record(pr.number)).toMatchObject({ state: "queued", attempt: 2 });
    expect(w.runner.inFlight()).toEqual(["acme-research-2-2"]);
    expect(w.runner.peakInFlight).toBe(1);

    w.runner.finish("acme-research-2-2", measured(1.0));
    await w.settle();
    expect(pr.merged).toBe(true);
    expect(w.gh.record(pr.number)).toMatchObject({ state: "kept", baselineBpb: 1.01, baselineN: 3 });
    expect(w.gh.file("train.py")).toBe(humanTrain.replace("LR = 0.04", "LR = 0.05"));
  });

  it("moves a change waiting for a baseline on to the new head when train.py changes again before that baseline exists", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    const first = w.gh.file("train.py")!.replace("WARMUP = 100", "WARMUP = 200");
    w.gh.pushToDefault({ "train.py": first }, "Longer warmup");
    w.runner.finish("acme-research-2-1", measured(0.99));
    await w.settle();
    expect(w.gh.record(pr.number)).toMatchObject({ state: "queued", baselineBpb: null });

    // A second push by a person before the new baseline finished.
    const second = first.replace("WARMUP = 200", "WARMUP = 300");
    const head = w.gh.pushToDefault({ "train.py": second }, "Even longer warmup");
    await w.settle();

    // Not stranded on a tree nobody will measure: it follows the head.
    expect(w.gh.record(pr.number)).toMatchObject({ state: "queued", baseSha: head, baselineBpb: null });
    expect(w.gh.file("train.py", pr.headSha)).toBe(second.replace("LR = 0.04", "LR = 0.05"));
    expect(pr.body).toMatch(/before this experiment could be measured/);
  });

  it("closes an improvement as superseded, with the reason, when its edit no longer applies to the moved default branch", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    const searched = w.gh.record(pr.number).edits[0]!.search;
    w.gh.pushToDefault({ "train.py": w.gh.file("train.py")!.replace(searched, "LR = 0.03") }, "Set the learning rate by hand");

    w.runner.finish("acme-research-2-1", measured(0.99));
    await w.settle();

    expect(w.gh.callsTo("mergePull")).toHaveLength(0);
    expect(pr).toMatchObject({ state: "closed", merged: false, labels: ["autoresearch", "autoresearch:superseded"] });
    const record = w.gh.record(pr.number);
    expect(record.state).toBe("superseded");
    expect(record.decision!.reasons.join(" ")).toMatch(/It improved val_bpb, but main moved and the change no longer applies: edit 1: the search text was not found in train\.py/);
    expect(pr.body).toMatch(/Superseded: the default branch moved/);
    // The moved head gets its own baseline.
    expect(w.gh.record(w.gh.pullOf(3).number).kind).toBe("baseline");
  });

  it("merges only one of two improvements finished in the same pass; the other is re-applied and measured on the new head", async () => {
    const w = await measuredBaseline({
      config: "slots: 2\n",
      runnerSlots: 2,
      baselineBpb: 1.0,
      proposals: [change("LR = 0.04", "LR = 0.05"), change("WARMUP = 100", "WARMUP = 50")],
    });
    const a = w.gh.pullOf(2);
    const b = w.gh.pullOf(3);
    expect(w.runner.inFlight()).toEqual(["acme-research-2-1", "acme-research-3-1"]);

    w.runner.finish("acme-research-2-1", measured(0.99));
    w.runner.finish("acme-research-3-1", measured(0.995));
    await w.settle();

    expect(a.merged).toBe(true);
    expect(b.merged).toBe(false);
    expect(b.state).toBe("open");
    expect(w.gh.callsTo("mergePull").map((c) => c.args[0])).toEqual([a.number]);
    expect(w.gh.commit(b.headSha).parents).toEqual([w.gh.head()]);
    expect(w.gh.record(b.number)).toMatchObject({ state: "queued", attempt: 2, baselineBpb: 0.99, baselineN: 2 });

    w.runner.finish("acme-research-3-2", measured(0.985));
    await w.settle();
    expect(b.merged).toBe(true);
    expect(w.gh.file("train.py")).toContain("WARMUP = 50");
    expect(w.gh.file("train.py")).toBe(w.gh.file("train.py", w.gh.record(b.number).headSha));
  });

  it("merges the best of several improvements from the same base first, whatever the PR order", async () => {
    const w = await measuredBaseline({
      config: "slots: 3\n",
      runnerSlots: 3,
      baselineBpb: 1.0,
      proposals: [change("LR = 0.04", "LR = 0.05"), change("WARMUP = 100", "WARMUP = 50"), change("LR = 0.04", "LR = 0.03")],
    });
    const [a, b, c] = [w.gh.pullOf(2), w.gh.pullOf(3), w.gh.pullOf(4)];
    expect(w.runner.inFlight()).toHaveLength(3);

    // a finishes first and is kept, but b, finished at the same time, did better.
    w.runner.finish("acme-research-2-1", measured(0.995));
    w.runner.finish("acme-research-3-1", measured(0.98));
    await w.settle();
    expect(w.gh.callsTo("mergePull").map((x) => x.args[0])).toEqual([b.number]);
    expect(w.gh.record(a.number)).toMatchObject({ state: "queued", attempt: 2, baselineBpb: 0.98 });

    // c was still training on the old base: it is decided against its own baseline, and as a
    // keep it is re-applied on the new head too rather than merged untested.
    w.runner.finish("acme-research-4-1", measured(0.97));
    await w.settle();
    expect(c.merged).toBe(false);
    expect(w.gh.record(c.number)).toMatchObject({ state: "queued", attempt: 2 });
    expect(w.gh.commit(w.gh.record(c.number).headSha).parents).toEqual([w.gh.head()]);
  });

  it("does not measure again when GitHub refuses the merge of a current PR; it retries the merge on the next pass", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    w.gh.refuseNextMerge();

    w.runner.finish("acme-research-2-1", measured(0.99));
    const first = await w.pass();

    expect(first.errors.join()).toMatch(/merge refused .*approving review/);
    expect(pr).toMatchObject({ state: "open", merged: false, labels: ["autoresearch", "autoresearch:keep"] });
    expect(w.runner.submitted.filter((s) => s.pull === pr.number)).toHaveLength(1);

    await w.settle();
    expect(pr.merged).toBe(true);
    expect(w.runner.submitted.filter((s) => s.pull === pr.number)).toHaveLength(1);
  });
});

describe("proposals", () => {
  it("rejects a proposal that touches a non-editable file before any branch or PR exists, reports it, and tries again on the next pass", async () => {
    const w = world();
    await w.settle();
    w.proposer.queue(change("print('prepared')", "print('prepared!')", "Tweak the evaluation", "prepare.py"));
    w.runner.finish("acme-research-1-1", measured(1.0));
    const commitsBefore = w.gh.callsTo("commitFiles").length;

    const report = await w.pass();

    expect(report.errors).toEqual([
      "proposal failed: the proposal from scripted does not apply: edit 1 touches prepare.py, but only [train.py] may change",
    ]);
    expect(w.gh.callsTo("commitFiles")).toHaveLength(commitsBefore);
    expect(w.gh.callsTo("createPull")).toHaveLength(1);
    expect([...w.gh.branches.keys()]).toEqual(["main"]);
    const check = w.gh.checkRunsOn(w.gh.head(), "autoresearch").find((c) => c.externalId === "proposer")!;
    expect(check.conclusion).toBe("failure");
    expect(check.output.summary).toContain("touches prepare.py");
    // Nothing lost: the baseline that finished in the same pass is recorded.
    expect(w.gh.record(w.gh.pullOf(1).number).state).toBe("kept");

    await w.settle();
    const exp = w.gh.pullOf(2);
    expect(exp.state).toBe("open");
    expect(w.gh.changedPaths(exp.headSha)).toEqual(["train.py"]);
    expect(w.gh.file("prepare.py", exp.headSha)).toBe(PREPARE_PY);
  });

  it("reports a proposer that throws, creates nothing, and asks again on the next pass", async () => {
    const w = await measuredBaseline();
    w.runner.finish(runOf(w, 2), measured(1.01));
    w.proposer.queue(new Error("the endpoint timed out after 60 s"));

    const report = await w.pass();

    expect(report.errors).toEqual(["proposal failed: the endpoint timed out after 60 s"]);
    expect(report.waiting).toBe("proposal failed: the endpoint timed out after 60 s");
    expect(report.proposed).toEqual([]);
    expect(w.gh.openPulls()).toHaveLength(0);
    const check = w.gh.checkRunsOn(w.gh.head(), "autoresearch").find((c) => c.externalId === "proposer")!;
    expect(check).toMatchObject({ conclusion: "failure" });
    expect(check.output.title).toBe("The next experiment could not be proposed");

    const next = await w.pass();
    expect(next.errors).toEqual([]);
    expect(next.proposed).toEqual([3]);
    expect(w.gh.openPulls().map((p) => w.gh.record(p.number).n)).toEqual([3]);
  });

  it("rejects a proposal that repeats an earlier experiment", async () => {
    const w = world();
    w.proposer.queue(change("LR = 0.04", "LR = 0.05"));
    await w.settle();
    w.runner.finish("acme-research-1-1", measured(1.0));
    await w.settle();
    w.runner.finish(runOf(w, 2), measured(1.01));
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "The same again"));

    const report = await w.pass();

    expect(report.errors).toEqual(["proposal failed: the proposal from scripted repeats an earlier experiment"]);
    expect(w.gh.openPulls()).toHaveLength(0);
  });

  it("shows the proposer the history: kept, worse, within noise and crashed", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    w.runner.finish(runOf(w, 2), measured(1.02));
    await w.settle();
    w.runner.finish(runOf(w, 3), measured(1.0003));
    await w.settle();
    w.runner.finish(runOf(w, 4), crashed("CUDA error"));
    await w.settle();
    w.runner.finish(runOf(w, 5), measured(0.98));
    await w.settle();

    const last = w.proposer.requests[w.proposer.requests.length - 1]!;
    expect(last.history.map((h) => [h.n, h.outcome])).toEqual([
      [1, "baseline"],
      [2, "worse"],
      [3, "within noise"],
      [4, "crash"],
      [5, "better"],
    ]);
    expect(last.bestBpb).toBe(0.98);
    expect(last.triedTreeHashes.size).toBe(5);
  });
});

describe("GitHub's write budget", () => {
  it("holds the next experiment back when the hour cannot carry it, starts it once writes age out, and deletes branches only with writes to spare", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    let t = Date.parse("2026-03-01T23:00:00Z");
    const budget = new WriteBudget({ perMinute: 80, perHour: 40 }, () => t, async (ms) => {
      t += ms;
    });
    w.gh.budget = budget;
    for (let i = 0; i < 34; i++) await budget.acquire(); // the rest of the installation's hour
    const pr = w.gh.pullOf(2);
    w.runner.finish(runOf(w, 2), measured(1.02));

    const held = await w.pass();
    // Decided with two writes: the check run and the record that closes the PR.
    expect(pr).toMatchObject({ state: "closed", labels: ["autoresearch", "autoresearch:discard"] });
    expect(budget.left().hour).toBe(4);
    expect(held.proposed).toEqual([]);
    expect(held.waiting).toMatch(/^GitHub write budget: 36 of 40 writes used in the last hour; the next experiment starts at \d\d:\d\d UTC/);
    expect(held.retryAt).toBe(budget.fitsAt(6));
    expect(budget.usage(t - 3_600_000, t).heldBack).toBe(1);
    expect(w.gh.pulls).toHaveLength(2);
    // Deleting the finished branch can wait: no writes to spare.
    expect(w.gh.branches.has(pr.head)).toBe(true);

    t += 3_600_000;
    await w.settle();
    expect(w.gh.pulls).toHaveLength(3);
    expect(w.gh.branches.has(pr.head)).toBe(false);
  });
});

describe("deleting finished experiments' branches", () => {
  it("deletes only the branches of its own finished experiments that still point where the PR ended", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0, proposals: [change("LR = 0.04", "LR = 0.05", "LR up"), change("DEPTH = 4", "DEPTH = 5", "Deeper")] });
    const baseline = w.gh.pullOf(1);
    expect(w.gh.branches.has(baseline.head)).toBe(false);
    // A stranger's branch named like an experiment's, and experiment 2's branch moved by a person.
    w.gh.branches.set("autoresearch/1-baseline", w.gh.head());
    const two = w.gh.pullOf(2);
    w.runner.finish(runOf(w, 2), measured(1.02));
    await w.settle();
    expect(two.state).toBe("closed");
    expect(w.gh.branches.has(two.head)).toBe(false);
    w.gh.branches.set(two.head, w.gh.head());
    const three = w.gh.pullOf(3);
    w.runner.finish(runOf(w, 3), measured(1.03));
    await w.settle();
    expect(w.gh.branches.has(three.head)).toBe(false);
    expect(w.gh.branches.get("autoresearch/1-baseline")).toBe(w.gh.head());
    expect(w.gh.branches.get(two.head)).toBe(w.gh.head());
    expect(w.gh.callsTo("deleteBranches").flatMap((c) => (c.args[0] as { name: string }[]).map((b) => b.name))).toEqual([baseline.head, two.head, three.head]);
  });

  it("deletes the branch a start pushed when its pull request could not be opened, and leaves a person's branch under autoresearch/ alone", async () => {
    const w = await measuredBaseline({ config: "slots: 3\n", runnerSlots: 3, proposals: [] });
    // A person's branch under the bot's prefix, with a number the ledger has passed and no PR.
    w.gh.branches.set("autoresearch/2-by-hand", w.gh.head());
    // The three free slots are filled at once; the first of their pull requests fails.
    w.gh.failNext("createPull");
    for (const id of w.runner.inFlight()) w.runner.finish(id, measured(1.02));
    const report = await w.pass();
    const failed = Number(/experiment (\d+) could not be opened/.exec(report.errors.join("\n"))?.[1]);
    const pushed = w.gh.callsTo("commitFiles").map((c) => String(c.args[0]));
    const stray = pushed.find((b) => b.startsWith(`autoresearch/${failed}-`));
    expect(stray).toBeDefined();
    // A later number of the same pass was opened, so the failed one is not given out again. Its
    // branch is deleted by the next pass, whose snapshot shows that no pull request came of it.
    expect(w.gh.openPulls().some((p) => w.gh.record(p.number).n > failed)).toBe(true);
    expect(w.gh.branches.has(stray!)).toBe(true);
    await w.settle();
    expect(w.gh.branches.has(stray!)).toBe(false);
    expect(w.gh.openPulls().map((p) => w.gh.record(p.number).n)).not.toContain(failed);
    expect(w.gh.openPulls()).toHaveLength(3);
    // The person's branch was looked at (its commit is not an experiment's) and kept.
    expect(w.gh.branches.get("autoresearch/2-by-hand")).toBe(w.gh.head());
    expect(w.gh.callsTo("commitMessage")).toHaveLength(2);
    const heads = new Set(w.gh.pulls.map((p) => p.head));
    expect([...w.gh.branches.keys()].filter((b) => b.startsWith("autoresearch/") && !heads.has(b))).toEqual(["autoresearch/2-by-hand"]);
  });

  it("leaves the branch of a start whose pull request was opened although the call failed, and the experiment goes on", async () => {
    const w = await measuredBaseline({ config: "slots: 3\n", runnerSlots: 3, proposals: [] });
    // The pull request is created, but the answer is lost.
    w.gh.failNext("createPull", { afterEffect: true });
    for (const id of w.runner.inFlight()) w.runner.finish(id, measured(1.02));
    const report = await w.pass();
    const failed = Number(/experiment (\d+) could not be opened/.exec(report.errors.join("\n"))?.[1]);
    await w.settle({ allowErrors: true });
    const pull = w.gh.pullOf(failed);
    expect(w.gh.branches.get(pull.head)).toBe(pull.headSha);
    expect(pull.state).toBe("open");
    expect(w.gh.callsTo("deleteBranches").flatMap((c) => (c.args[0] as { name: string }[]).map((b) => b.name))).not.toContain(pull.head);
  });

  it("by git push, deletes them eight at a time, in one call, while experiments run, and the rest once none runs", async () => {
    const w = world({ config: "night:\n  max_experiments: 10\n" });
    w.gh.refsByGit = true;
    await w.settle();
    w.runner.finish(runOf(w, 1), measured(1.0));
    await w.settle();
    const deleted = () => w.gh.callsTo("deleteBranches").map((c) => (c.args[0] as { name: string }[]).map((b) => b.name));
    for (let n = 2; n <= 7; n++) {
      w.runner.finish(runOf(w, n), measured(1.05));
      await w.settle();
    }
    // Seven finished: nothing deleted yet, and the branches were not even listed.
    expect(deleted()).toEqual([]);
    expect(w.gh.callsTo("listExperimentBranches")).toEqual([]);
    w.runner.finish(runOf(w, 8), measured(1.05));
    await w.settle();
    expect(deleted()).toEqual([[1, 2, 3, 4, 5, 6, 7, 8].map((n) => w.gh.pullOf(n).head)]);
    for (let n = 9; n <= 10; n++) {
      w.runner.finish(runOf(w, n), measured(1.05));
      await w.settle();
    }
    // The night's last: nothing runs any more, so the two left go at once.
    expect(deleted()).toHaveLength(2);
    expect(deleted()[1]).toEqual([9, 10].map((n) => w.gh.pullOf(n).head));
    expect([...w.gh.branches.keys()].filter((b) => b.startsWith("autoresearch/"))).toEqual([]);
  });
});

describe("asking a model ahead (proposer.ask_ahead)", () => {
  it("asks for the next proposal while the run trains and uses it; one made from a head that moved is thrown away and asked again", async () => {
    const w = world({ config: "proposer:\n  ask_ahead: true\n" });
    w.proposer.asksAhead = true;
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "LR up"), change("DEPTH = 4", "DEPTH = 5", "Deeper"), change("WARMUP = 100", "WARMUP = 50", "Shorter warmup"));
    await w.settle();
    // While the baseline trains, the proposal that follows it is asked for already.
    expect(w.proposer.requests).toHaveLength(1);
    w.runner.finish(runOf(w, 1), measured(1.0));
    await w.settle();
    // Experiment 2 starts on it at once; experiment 3's proposal is asked for while 2 trains.
    expect(w.proposer.requests).toHaveLength(2);
    expect(w.gh.pulls).toHaveLength(2);
    expect(w.proposer.requests[1]!.files["train.py"]).toBe(w.gh.file("train.py"));

    // Experiment 2 is discarded: the head did not move and the prepared proposal is used.
    w.runner.finish(runOf(w, 2), measured(1.02));
    await w.settle();
    expect(w.gh.pullOf(3).title).toBe("[autoresearch 3] Deeper");
    expect(w.proposer.requests).toHaveLength(3); // and the next one asked ahead

    // Experiment 3 is kept and merged: the proposal prepared from the old head is thrown away.
    const oldHead = w.gh.head();
    w.runner.finish(runOf(w, 3), measured(0.9));
    await w.settle();
    expect(w.gh.head()).not.toBe(oldHead);
    const four = w.gh.pullOf(4);
    expect(w.proposer.requests.filter((r) => r.files["train.py"] === w.gh.file("train.py", oldHead))).toHaveLength(3);
    expect(w.proposer.requests.at(-2)!.files["train.py"]).toBe(w.gh.file("train.py"));
    expect(w.gh.record(four.number).baseSha).toBe(w.gh.head());
  });
});

describe("asking a model ahead at many slots", () => {
  it("keeps a proposal ready for every slot, asked for a quarter of the slots at a time, all from one request", async () => {
    const w = world({ config: "slots: 8\nproposer:\n  ask_ahead: true\n", runnerSlots: 8 });
    w.proposer.asksAhead = true;
    // Every proposal a tree of its own (none is thrown away as tried already).
    const ideas = Array.from({ length: 40 }, (_, k): ScriptStep => (req) => {
      const files = { ...req.files, "train.py": `${req.files["train.py"]}# idea ${k}\n` };
      return { title: `Idea ${k}`, hypothesis: "h", edits: [{ path: "train.py", search: req.files["train.py"]!, replace: files["train.py"] }], files, proposer: "scripted" };
    });
    w.proposer.queue(...ideas);
    await w.settle();
    w.runner.finish(runOf(w, 1), measured(1.0));
    await w.settle();
    const asked = () => w.proposer.requests.length;
    // The baseline and seven experiments train, and proposals are ready for the next starts.
    expect(w.runner.inFlight()).toHaveLength(8);

    // Experiments end one at a time: each slot starts its next run from a ready proposal, and
    // proposals are asked for two at a time (a quarter of 8 slots), both from one request.
    const steps: number[] = [];
    for (let i = 0; i < 8; i++) {
      const before = asked();
      const running = w.runner.inFlight().filter((id) => !/-1-\d+$/.test(id)); // not the baseline's runs
      w.runner.finish(running[0]!, measured(1.02));
      await w.settle();
      expect(w.runner.inFlight()).toHaveLength(8);
      steps.push(asked() - before);
      if (asked() > before) {
        const batch = w.proposer.requests.slice(before);
        expect(batch.every((r) => r.history === batch[0]!.history)).toBe(true);
      }
    }
    expect(steps.filter((n) => n > 0).every((n) => n >= 2)).toBe(true);
    expect(steps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(6);
  });

  it("with queue_ahead, asks for the queue's free places too at the night's start, then one per slot again", async () => {
    const w = world({ config: "slots: 8\nqueue_ahead: 8\nproposer:\n  ask_ahead: true\n", runnerSlots: 8, runnerQueues: true });
    w.proposer.asksAhead = true;
    // The model answers when the test says so.
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    const ideas = Array.from({ length: 60 }, (_, k): ScriptStep => async (req) => {
      await answered;
      const files = { ...req.files, "train.py": `${req.files["train.py"]}# idea ${k}\n` };
      return { title: `Idea ${k}`, hypothesis: "h", edits: [{ path: "train.py", search: req.files["train.py"]!, replace: files["train.py"] }], files, proposer: "scripted" };
    });
    w.proposer.queue(...ideas);
    // While the baseline trains and the model thinks: a proposal asked for each slot and for
    // each place in the queue, so that every place fills after one wait for the model, not two.
    const first = w.pass();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the pass waits for the model
    expect(w.runner.inFlight()).toEqual(["acme-research-1-1"]);
    expect(w.proposer.requests).toHaveLength(16);
    answer();
    await first;
    await w.settle();
    expect(w.runner.inFlight()).toHaveLength(16);
    // The queue is full: what is asked ahead now is one per slot (topped up a quarter of them
    // at a time), not one per place.
    const ahead = () => w.proposer.requests.length - (w.gh.pulls.length - 1);
    expect(w.gh.pulls).toHaveLength(16);
    expect(ahead()).toBe(8);
    for (let i = 0; i < 4; i++) {
      w.runner.finish(w.runner.inFlight()[0]!, measured(i === 0 ? 1.0 : 1.02));
      await w.settle();
      expect(w.runner.inFlight()).toHaveLength(16);
      expect(ahead()).toBeGreaterThanOrEqual(8 - 2);
      expect(ahead()).toBeLessThanOrEqual(8);
    }
  });
});

describe("when GitHub fails in the middle of a pass", () => {
  it("opens a PR in one write, unlabelled: a failed write of its record and labels loses nothing and opens nothing twice", async () => {
    const w = world();
    await w.settle();
    const pr = w.gh.pullOf(1);
    // The ledger finds it by its branch and record; labels come with the first record write.
    expect(pr.labels).toEqual([]);
    expect(w.gh.callsTo("setLabels")).toHaveLength(0);
    w.runner.finish(runOf(w, 1), measured(1.0));
    w.gh.failNext("updatePull");
    const failed = await w.pass();
    expect(failed.errors).toEqual([expect.stringMatching(/^#\d+: GitHub updatePull failed/)]);
    await w.settle();
    expect(w.gh.pulls.filter((p) => decodeRecord(p.body)?.n === 1)).toHaveLength(1);
    expect(w.gh.record(pr.number).state).toBe("kept");
    expect(pr.labels).toEqual(["autoresearch", "autoresearch:baseline", "autoresearch:keep"]);
  });

  it("a push to the default branch during a pass, before the merge: not merged onto a tree nobody measured; re-applied on it", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);
    w.runner.finish(runOf(w, 2), measured(0.9));
    // Someone pushes to main after the pass read its head, while it decides experiment 2.
    let reads = 0;
    let pushed = "";
    const racing = new Proxy(w.gh, {
      get(target, key) {
        if (key === "getBranchSha") {
          return async (branch: string) => {
            if (++reads === 2) pushed = target.pushToDefault({ "README.md": "# research, by a person\n" });
            return target.getBranchSha(branch);
          };
        }
        const v = Reflect.get(target, key, target) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const report = await reconcile({ gh: racing, runner: w.runner, proposerFor: () => w.proposer, env: {}, now: () => w.clock.now });
    expect(pushed).not.toBe("");
    expect(pr.merged).toBe(false);
    expect(w.gh.callsTo("mergePull")).toHaveLength(0);
    expect(report.again).toBe(true);

    await w.settle();
    // The change now sits on the pushed head and is measured there before any merge.
    expect(w.gh.record(pr.number)).toMatchObject({ baseSha: pushed, attempt: 2, measurements: [] });
    expect(pr.merged).toBe(false);
  });

  it("a bot PR whose record cannot be read keeps its number: the next experiment takes the one after", async () => {
    const w = await measuredBaseline({ proposals: [change("LR = 0.04", "LR = 0.05", "LR: 0.04 → 0.05"), change("WARMUP = 100", "WARMUP = 200", "longer warmup")] });
    const pr = w.gh.pullOf(2);
    pr.body = "Edited by hand; the record is gone.";
    await w.settle();
    const next = w.gh.openPulls().find((p) => p.number !== pr.number)!;
    expect(decodeRecord(next.body)?.n).toBe(3);
    expect(next.head).toMatch(/^autoresearch\/3-/);
    expect(pr.head).toMatch(/^autoresearch\/2-/);
  });

  it("recovers from a failed PR creation after the branch was pushed: no duplicate PR, nothing lost", async () => {
    const w = world();
    await w.settle();
    w.gh.failNext("createPull");
    w.runner.finish("acme-research-1-1", measured(1.0));

    const failed = await w.pass();
    expect(failed.errors).toEqual([expect.stringMatching(/^experiment 2 could not be opened: GitHub createPull failed \(HTTP 500\)/)]);
    expect(w.gh.openPulls()).toHaveLength(0);
    const orphan = [...w.gh.branches.keys()].filter((b) => b !== "main");
    expect(orphan).toHaveLength(1);

    await w.settle();
    const exp = w.gh.pullOf(2);
    expect(w.gh.pulls.filter((p) => decodeRecord(p.body)?.n === 2)).toHaveLength(1);
    expect(exp.head).toBe(orphan[0]);
    expect(w.gh.head(exp.head)).toBe(exp.headSha);
    expect(w.runner.submitted.filter((s) => s.pull === exp.number)).toHaveLength(1);
  });

  it("opens the proposal of an experiment that could not be opened on the next pass, without asking the model again; three failed opens give it up", async () => {
    const w = world();
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "LR up"), change("LR = 0.04", "LR = 0.03", "LR down"), change("WARMUP = 100", "WARMUP = 50", "shorter warmup"));
    await w.settle();
    w.runner.finish("acme-research-1-1", measured(1.0));
    w.gh.failNext("createPull");
    expect((await w.pass()).errors).toEqual([expect.stringMatching(/^experiment 2 could not be opened/)]);
    await w.settle();
    expect(w.proposer.requests).toHaveLength(1);
    expect(w.gh.record(w.gh.pullOf(2).number).title).toBe("LR up");

    // GitHub refuses the next one three times: the third gives the proposal up.
    w.runner.finish("acme-research-2-1", measured(1.02));
    for (let i = 0; i < 3; i++) {
      w.gh.failNext("createPull");
      expect((await w.pass()).errors).toEqual([expect.stringMatching(/could not be opened: GitHub createPull failed/)]);
      expect(w.proposer.requests).toHaveLength(2);
    }
    await w.settle({ allowErrors: true });
    expect(w.proposer.requests).toHaveLength(3);
    const open = w.gh.openPulls().map((p) => w.gh.record(p.number).title);
    expect(open).toEqual(["shorter warmup"]);
  });

  it("with slots free, a pull request that cannot be opened ends the pass's starts, and the next pass waits for the backoff", async () => {
    const lrs = Array.from({ length: 40 }, (_, i) => `LR = ${(0.05 + i / 1000).toFixed(3)}`);
    const w = await measuredBaseline({ config: "slots: 20\n", runnerSlots: 20, proposals: lrs.map((lr) => change("LR = 0.04", lr, lr)) });
    for (const id of w.runner.inFlight()) w.runner.finish(id, measured(1.02));
    w.gh.failNext("createPull");
    const opened = w.gh.callsTo("createPull").length;
    const failed = await w.pass();
    expect(failed.errors).toEqual([expect.stringMatching(/could not be opened: GitHub createPull failed \(HTTP 500\)/)]);
    // Not at once (a GitHub that fails would be asked again and again): the controller backs off.
    expect(failed.again).toBe(false);
    expect(w.gh.callsTo("createPull").length - opened).toBeLessThan(16);
    await w.settle();
    expect(w.runner.inFlight()).toHaveLength(20);
  });

  it("finds a PR whose creation response was lost and trains it, without proposing again", async () => {
    const w = world();
    await w.settle();
    w.gh.failNext("createPull", { afterEffect: true, status: 502 });
    w.runner.finish("acme-research-1-1", measured(1.0));

    const failed = await w.pass();
    expect(failed.errors).toHaveLength(1);
    expect(w.gh.openPulls()).toHaveLength(1);
    expect(w.runner.inFlight()).toEqual([]);

    await w.settle();
    expect(w.gh.pulls).toHaveLength(2);
    expect(w.proposer.requests).toHaveLength(1);
    expect(w.runner.inFlight()).toEqual(["acme-research-2-1"]);
    expect(w.gh.record(w.gh.pullOf(2).number).state).toBe("queued");
  });

  it("records a result once when writing it failed half way", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);
    w.gh.failNext("updatePull");
    w.runner.finish(runOf(w, 2), measured(1.02));

    const failed = await w.pass();
    expect(failed.errors).toEqual([expect.stringMatching(/^#2: GitHub updatePull failed/)]);
    expect(pr.state).toBe("open");

    await w.settle();
    expect(pr.state).toBe("closed");
    expect(w.gh.record(pr.number).measurements).toHaveLength(1);
    expect(w.gh.checkRunsOn(pr.headSha, "val_bpb")).toHaveLength(1);
  });

  it("cleans up a run that was left behind after its result was recorded", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);
    const run = runOf(w, 2);
    // Cleaning up after recording fails (a crash there has the same effect: the record is
    // decided, the run stays).
    const cleanup = w.runner.cleanup.bind(w.runner);
    let failures = 1;
    w.runner.cleanup = async (id) => {
      if (failures-- > 0) throw new Error("HTTP 500 deleting the Job");
      return cleanup(id);
    };
    w.runner.finish(run, measured(1.02));
    await w.pass().catch(() => undefined);
    expect(w.gh.record(pr.number).state).toBe("discarded");
    expect(await w.runner.list({ owner: "acme", repo: "research" })).toContain(run);

    await w.settle();
    expect(await w.runner.list({ owner: "acme", repo: "research" })).not.toContain(run);
    expect(w.runner.cleaned).toContain(run);
    // The run in flight (the next experiment's) is not touched.
    expect(w.runner.inFlight()).toEqual([runOf(w, 3)]);
  });

  it("writes the final report of a night once, not on every pass after it", async () => {
    const w = world({ config: 'night:\n  window: "22:00-07:00"\n  timezone: UTC\n  max_experiments: 2\n', now: "2025-03-01T23:00:00Z" });
    let t = Date.parse("2025-03-01T23:00:00Z");
    w.gh.budget = new WriteBudget({ perMinute: 80, perHour: 500 }, () => t, async (ms) => {
      t += ms;
    });
    await w.settle();
    w.runner.finish("acme-research-1-1", measured(1.0));
    await w.settle();
    w.runner.finish(runOf(w, 2), measured(1.01));
    const [report] = await w.settle();
    expect(report!.waiting).toMatch(/^reached max_experiments/);
    const reportWrites = () => w.gh.callsTo("updateIssue").length + w.gh.callsTo("createIssue").length;
    const before = reportWrites();
    // Its budget line counts its own write: were it rewritten whenever it changed, every pass would write.
    for (let i = 0; i < 5; i++) await w.pass();
    expect(reportWrites()).toBe(before);
  });

  it("merges on the next pass when the merge call failed", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);
    w.gh.failNext("mergePull");
    w.runner.finish(runOf(w, 2), measured(0.9));

    const failed = await w.pass();
    expect(failed.errors).toHaveLength(1);
    expect(pr.state).toBe("open");
    expect(w.gh.record(pr.number).state).toBe("kept");

    await w.settle();
    expect(pr.merged).toBe(true);
    expect(w.runner.submitted.filter((s) => s.pull === pr.number)).toHaveLength(1);
  });

  it("carries on after a failed read at the start of a pass", async () => {
    const w = world();
    w.gh.failNext("listExperimentPulls");
    await expect(w.pass()).rejects.toThrow(/HTTP 500/);
    expect(w.gh.pulls).toHaveLength(0);

    await w.settle();
    expect(w.gh.pulls).toHaveLength(1);
  });
});

describe("people", () => {
  it("cancel the run of a PR they close while it trains; the slot goes to the next experiment", async () => {
    const w = await measuredBaseline();
    const pr = w.gh.pullOf(2);
    const run = runOf(w, 2);

    w.gh.closeByPerson(pr.number);
    await w.settle();

    expect(w.runner.cancelled).toEqual([run]);
    expect(pr.merged).toBe(false);
    // The ledger says what happened, and later passes leave it alone.
    expect(decodeRecord(pr.body)).toMatchObject({ state: "discarded", decision: { verdict: "discard" } });
    expect(decodeRecord(pr.body)!.decision!.reasons.join(" ")).toMatch(/closed before its run finished/);
    expect(w.gh.pullOf(3).state).toBe("open");
    expect(w.runner.inFlight()).toEqual([w.runner.runOf(w.gh.pullOf(3).number)]);
  });

  it("never have a run cancelled while its PR stays open", async () => {
    const w = await measuredBaseline();
    for (let i = 0; i < 3; i++) await w.pass();
    expect(w.runner.cancelled).toEqual([]);
    expect(w.runner.inFlight()).toEqual(["acme-research-2-1"]);
  });
});

describe("slots", () => {
  it("keeps two experiments in flight with slots: 2 and a runner with two slots", async () => {
    const w = await measuredBaseline({ config: "slots: 2\n", runnerSlots: 2 });

    expect(w.gh.openPulls().map((p) => w.gh.record(p.number).n)).toEqual([2, 3]);
    expect(w.runner.inFlight()).toEqual(["acme-research-2-1", "acme-research-3-1"]);

    w.runner.finish("acme-research-2-1", measured(1.02));
    await w.settle();
    expect(w.runner.inFlight()).toEqual(["acme-research-3-1", "acme-research-4-1"]);
    expect(w.runner.peakInFlight).toBe(2);
  });

  it("queue_ahead: experiments wait in the runner behind the busy slots, and one starts the moment a run ends, before any pass", async () => {
    const config = "slots: 2\nqueue_ahead: 2\nnoise:\n  baseline_runs: 1\n  max_runs: 2\n";
    const w = await measuredBaseline({ config, runnerSlots: 2, runnerQueues: true, proposals: [] });
    expect(w.gh.openPulls().map((p) => w.gh.record(p.number).n)).toEqual([2, 3, 4, 5]);
    const phases = async () => Promise.all(w.runner.inFlight().map(async (id) => `${id} ${(await w.runner.observe(id)).phase}`));
    expect(await phases()).toEqual(["acme-research-2-1 running", "acme-research-3-1 running", "acme-research-4-1 pending", "acme-research-5-1 pending"]);
    const report = await w.pass();
    expect(report.waiting).toBe("all 2 slot(s) busy and 2 experiment(s) queued behind them");

    w.runner.finish("acme-research-2-1", measured(1.02));
    // The slot is busy again with no pass in between.
    expect(await phases()).toEqual(["acme-research-3-1 running", "acme-research-4-1 running", "acme-research-5-1 pending"]);
    await w.settle();
    expect(await phases()).toEqual(["acme-research-3-1 running", "acme-research-4-1 running", "acme-research-5-1 pending", "acme-research-6-1 pending"]);
    expect(w.gh.record(w.gh.pullOf(2).number).state).toBe("discarded");

    // A promising result is measured again: that run goes ahead of the experiments queued before it.
    w.runner.finish("acme-research-3-1", measured(0.97));
    await w.settle();
    expect(w.runner.spec("acme-research-3-2").urgent).toBe(true);
    expect(w.runner.spec("acme-research-6-1").urgent).toBe(false);
    w.runner.finish("acme-research-4-1", measured(1.02));
    expect(await phases()).toEqual(["acme-research-5-1 running", "acme-research-6-1 pending", "acme-research-3-2 running"]);
  });

  it("queue_ahead with a runner that starts every run it is given: no more in flight than the slots, and the log says so once", async () => {
    const w = await measuredBaseline({ config: "slots: 2\nqueue_ahead: 2\n", runnerSlots: 2, proposals: [] });
    expect(w.runner.inFlight()).toEqual(["acme-research-2-1", "acme-research-3-1"]);
    w.runner.finish("acme-research-2-1", measured(1.02));
    await w.settle();
    expect(w.runner.peakInFlight).toBe(2);
    const warned: string[] = [];
    const log = { info: () => undefined, warn: (m: string) => warned.push(m), error: () => undefined };
    const house = newHousekeeping();
    for (let i = 0; i < 2; i++) await reconcile({ gh: w.gh, runner: w.runner, proposerFor: () => w.proposer, env: {}, now: () => w.clock.now, log, house });
    expect(warned.filter((m) => m.includes("queue_ahead"))).toEqual([
      "acme/research: queue_ahead: 2 is not used: the fake runner starts every run it is given, so slots alone count",
    ]);
  });

  it("never has more than one run in flight with slots: 1, through a night of keeps, discards and crashes", async () => {
    const w = await measuredBaseline();
    const results = [measured(0.99), measured(1.0), crashed("boom"), infraFailure("fetch"), measured(0.98), timedOut()];
    for (const r of results) {
      expect(w.runner.inFlight()).toHaveLength(1);
      w.runner.finish(w.runner.inFlight()[0]!, r);
      await w.settle();
    }
    expect(w.runner.peakInFlight).toBe(1);
    expect(w.gh.openPulls()).toHaveLength(1);
  });

  it("with many slots, carries finished experiments on and opens new ones several at once, not one request at a time", async () => {
    const w = await measuredBaseline({ config: "slots: 6\n", runnerSlots: 6, proposals: [] });
    // A night's start: the free slots are filled in one pass, their pull requests opened together.
    expect(w.runner.inFlight()).toHaveLength(6);
    const opened = w.gh.callsTo("createPull").length;
    expect(opened).toBe(7); // the baseline and six experiments

    w.gh.latencyMs = 5;
    w.gh.peakInFlight = 0;
    for (const id of w.runner.inFlight()) w.runner.finish(id, measured(1.02));
    const report = await w.pass();
    // All six decided in one pass, in order, and as many opened in their place.
    expect(report.finished.map((f) => f.n)).toEqual([2, 3, 4, 5, 6, 7]);
    expect(report.errors).toEqual([]);
    expect(w.gh.peakInFlight).toBeGreaterThan(1);
    await w.settle();
    expect(w.runner.inFlight()).toHaveLength(6);
    expect(w.gh.openPulls().map((p) => w.gh.record(p.number).n)).toEqual([8, 9, 10, 11, 12, 13]);
    // Each experiment has one pull request: nothing was opened twice by steps running together.
    const heads = w.gh.pulls.map((p) => p.head);
    expect(new Set(heads).size).toBe(heads.length);
  });

  it("opens the next experiment beside the writes that decide the finished one, not after them; after them when the hour's write budget is short", async () => {
    const w = await measuredBaseline({ config: "slots: 2\n", runnerSlots: 2, proposals: [] });
    // The record that decides experiment n is slow to write: it goes through once the next
    // experiment's pull request is opened, or after a while (then the pass opened it only after).
    const order: string[] = [];
    const updatePull = w.gh.updatePull.bind(w.gh);
    const createPull = w.gh.createPull.bind(w.gh);
    let opened = () => {};
    const slowDecision = (n: number) => {
      const openedOnce = new Promise<void>((r) => (opened = r));
      w.gh.updatePull = async (number, patch) => {
        if (number === w.gh.pullOf(n).number && patch.state === "closed") {
          await Promise.race([openedOnce, new Promise((r) => setTimeout(r, 500))]);
          order.push(`decided ${n}`);
        }
        return updatePull(number, patch);
      };
    };
    w.gh.createPull = async (p) => {
      order.push("open");
      opened();
      return createPull(p);
    };

    slowDecision(2);
    w.runner.finish(runOf(w, 2), measured(1.02));
    const report = await w.pass();
    expect(report.finished.map((f) => f.n)).toEqual([2]);
    expect(report.proposed).toEqual([4]);
    expect(order).toEqual(["open", "decided 2"]);
    expect(w.runner.inFlight()).toEqual([runOf(w, 3), runOf(w, 4)]);

    // With the hour's budget nearly spent, the start waits for the writes it must leave room for.
    let t = Date.parse("2026-03-01T23:00:00Z");
    w.gh.budget = new WriteBudget({ perMinute: 80, perHour: 60 }, () => t, async (ms) => {
      t += ms;
    });
    order.length = 0;
    slowDecision(3);
    w.runner.finish(runOf(w, 3), measured(1.02));
    const tight = await w.pass();
    expect(tight.proposed).toEqual([5]);
    expect(order).toEqual(["decided 3", "open"]);
  });

  it("trains experiments alongside the head's first baseline; one that finishes first holds no slot and is decided once the baseline is measured", async () => {
    const w = world({ config: "slots: 3\n", runnerSlots: 3 });
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "LR up"), change("DEPTH = 4", "DEPTH = 5", "Deeper"), change("WARMUP = 100", "WARMUP = 50", "Shorter warmup"));
    await w.settle();
    // No slot waits for the baseline's run.
    expect(w.runner.inFlight()).toEqual([1, 2, 3].map((n) => runOf(w, n)));
    expect(w.gh.record(w.gh.pullOf(2).number)).toMatchObject({ kind: "experiment", baselineBpb: null });

    // Experiment 2 finishes before the baseline: it waits, undecided, and its slot is filled.
    w.runner.finish(runOf(w, 2), measured(0.95));
    await w.settle();
    const two = w.gh.pullOf(2);
    expect(two.state).toBe("open");
    expect(w.gh.record(two.number).decision).toBeNull();
    expect(w.runner.inFlight()).toEqual([1, 3, 4].map((n) => runOf(w, n)));

    // The baseline is measured: experiment 2 is decided against it in the same settle, and merged.
    w.runner.finish(runOf(w, 1), measured(1.0));
    await w.settle();
    expect(w.gh.record(two.number)).toMatchObject({ state: "kept", baselineBpb: 1.0, baselineN: 1 });
    expect(two.merged).toBe(true);
  });

  it("lets at most twice the slots of experiments wait, measured, for a baseline that is still being measured", async () => {
    const w = world({ config: "slots: 2\n", runnerSlots: 2 });
    await w.settle();
    for (let n = 2; n <= 5; n++) {
      w.runner.finish(runOf(w, n), measured(1.05));
      await w.settle();
    }
    // Four wait, measured: the slot beside the baseline stays free until it is measured.
    const [report] = await w.settle();
    expect(report!.waiting).toBe("4 experiments measured ahead of the baseline wait for it");
    expect(w.runner.inFlight()).toEqual([runOf(w, 1)]);
    expect(w.gh.pulls).toHaveLength(5);
    w.runner.finish(runOf(w, 1), measured(1.0));
    await w.settle();
    expect([2, 3, 4, 5].map((n) => w.gh.record(w.gh.pullOf(n).number).state)).toEqual(["discarded", "discarded", "discarded", "discarded"]);
    expect(w.runner.inFlight()).toHaveLength(2);
  });

  it("an experiment that finished alongside a baseline that crashed waits for the next baseline, and is decided against it", async () => {
    const w = world({ config: "slots: 2\n", runnerSlots: 2 });
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "LR up"), change("DEPTH = 4", "DEPTH = 5", "Deeper"));
    await w.settle();
    w.runner.finish(runOf(w, 2), measured(1.05));
    await w.settle();
    w.runner.finish(runOf(w, 1), crashed("CUDA error: an illegal memory access"));
    await w.settle();
    // The head is measured again (baseline 4, beside experiment 3); experiment 2 still waits.
    expect(w.gh.record(w.gh.pullOf(1).number).state).toBe("crashed");
    const again = w.gh.pulls.map((p) => w.gh.record(p.number)).find((r) => r.kind === "baseline" && r.n > 1)!;
    expect(again).toBeDefined();
    expect(w.gh.record(w.gh.pullOf(2).number).decision).toBeNull();
    w.runner.finish(runOf(w, again.n), measured(1.0));
    await w.settle();
    expect(w.gh.record(w.gh.pullOf(2).number)).toMatchObject({ state: "discarded", baselineBpb: 1.0, baselineN: again.n });
  });

  it("where writes are paced, opens a few experiments a pass and asks for the next pass at once, so that decisions do not queue behind openings", async () => {
    const w = world({ config: "slots: 10\n", runnerSlots: 10 });
    let t = Date.parse("2025-03-01T23:00:00Z");
    w.gh.budget = new WriteBudget({ perMinute: 80, perHour: 500 }, () => t, async (ms) => {
      t += ms;
    });
    const first = await w.pass();
    expect(w.gh.callsTo("createPull")).toHaveLength(4);
    expect(first.again).toBe(true);
    await w.settle();
    expect(w.runner.inFlight()).toHaveLength(10);
  });

  it("uses the smaller of the configured slots and the runner's slots", async () => {
    const w = await measuredBaseline({ config: "slots: 4\n", runnerSlots: 1 });
    expect(w.runner.inFlight()).toHaveLength(1);
    expect(w.gh.openPulls()).toHaveLength(1);
  });
});

describe("the nightly window and max_experiments", () => {
  const night = 'night:\n  window: "22:00-07:00"\n  timezone: UTC\n  max_experiments: 3\n';

  it("starts nothing outside the window", async () => {
    const w = world({ config: night, now: "2025-03-01T12:00:00Z" });
    const [report] = await w.settle();
    expect(report!.waiting).toBe("outside the nightly window 22:00-07:00");
    expect(w.gh.pulls).toHaveLength(0);

    w.clock.now = new Date("2025-03-01T22:00:00Z");
    await w.settle();
    expect(w.gh.pulls).toHaveLength(1);
  });

  it("finishes what runs after the window closes, but proposes nothing new", async () => {
    const w = world({ config: night, now: "2025-03-02T06:50:00Z" });
    await w.settle();
    w.clock.now = new Date("2025-03-02T07:10:00Z");
    w.runner.finish("acme-research-1-1", measured(1.0));
    const [report] = await w.settle();

    expect(w.gh.pullOf(1).state).toBe("closed");
    expect(report!.waiting).toBe("outside the nightly window 22:00-07:00");
    expect(w.gh.openPulls()).toHaveLength(0);
  });

  it("stops proposing after max_experiments in one night, and starts again the next night", async () => {
    const w = world({ config: night, now: "2025-03-01T23:00:00Z" });
    await w.settle();
    w.runner.finish("acme-research-1-1", measured(1.0));
    await w.settle();
    w.clock.now = new Date("2025-03-02T02:00:00Z");
    w.runner.finish(runOf(w, 2), measured(1.01));
    await w.settle();
    w.runner.finish(runOf(w, 3), measured(1.01));
    const [report] = await w.settle();

    expect(report!.waiting).toBe("reached max_experiments (3) for tonight");
    expect(w.gh.pulls).toHaveLength(3);
    expect(w.gh.openPulls()).toHaveLength(0);

    w.clock.now = new Date("2025-03-02T22:30:00Z");
    await w.settle();
    expect(w.gh.openPulls().map((p) => w.gh.record(p.number).n)).toEqual([4]);
  });
});

describe("enabled: false", () => {
  it("starts no new experiment, but still records the one that runs", async () => {
    const w = await measuredBaseline({ baselineBpb: 1.0 });
    const pr = w.gh.pullOf(2);
    w.gh.pushToDefault({ [CONFIG_PATH]: singleRun("enabled: false\n") }, "Pause autoresearch");

    w.runner.finish(runOf(w, 2), measured(1.02));
    const reports = await w.settle();

    expect(pr).toMatchObject({ state: "closed", labels: ["autoresearch", "autoresearch:discard"] });
    expect(w.gh.checkRun(pr.headSha, "val_bpb").conclusion).toBe("failure");
    expect(reports[0]!.finished).toEqual([{ n: 2, verdict: "discard", valBpb: 1.02 }]);
    expect(reports.every((r) => r.proposed.length === 0)).toBe(true);
    expect(reports[reports.length - 1]!.waiting).toBe("disabled in config");
    expect(w.gh.openPulls()).toHaveLength(0);
    expect(w.runner.inFlight()).toEqual([]);
    expect(allErrors(reports)).toEqual([]);
  });

  it("does not even start a baseline", async () => {
    const w = world({ config: "enabled: false\n" });
    const [report] = await w.settle();
    expect(report!.waiting).toBe("disabled in config");
    expect(w.gh.pulls).toHaveLength(0);
  });
});

// The plan, specified: from a snapshot (what GitHub and the runner said as a pass began) to the
// steps the pass carries out. Pure functions, so each case is a table row of "given this
// ledger and these runs, do exactly this": no fake GitHub, no clock, no I/O.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config.js";
import { treeHash } from "../src/ledger/index.js";
import { planned, planPull, planStart, type Step } from "../src/reconcile/plan.js";
import type { Snapshot } from "../src/reconcile/snapshot.js";
import type { ExperimentPull, ExperimentRecord, RunObservation, TrainerResult } from "../src/types.js";
import { crashed, measured, singleRun } from "./support/fakes.js";

const HEAD = "a".repeat(40);
const OLD = "b".repeat(40);
const FILES = { "train.py": "LR = 0.04\n" };
const HEAD_TREE = treeHash(FILES);
const PREFIX = "o-r-";

function config(yaml = "") {
  const c = parseConfig(singleRun(yaml), {});
  if (!c.ok) throw new Error(JSON.stringify(c.errors));
  return c.config;
}

function baseline(n: number, bpb: number, o: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return record(n, {
    kind: "baseline",
    headSha: HEAD,
    treeHash: HEAD_TREE,
    edits: [],
    state: "kept",
    measurements: [{ runId: `${PREFIX}${n}-1`, sha: HEAD, result: measured(bpb), finishedAt: "2026-01-01T00:00:00Z" }],
    decision: { verdict: "keep", delta: null, reasons: [] },
    ...o,
  });
}

function record(n: number, o: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return {
    v: 1,
    n,
    kind: "experiment",
    title: `experiment ${n}`,
    hypothesis: "h",
    proposer: "mutate",
    baseSha: HEAD,
    headSha: `${n}`.repeat(40).slice(0, 40),
    edits: [{ path: "train.py", search: "0.04", replace: `0.0${n}` }],
    treeHash: `tree-${n}`,
    baseTreeHash: HEAD_TREE,
    guidanceSha: "g",
    baselineBpb: 1.0,
    attempt: 1,
    state: "running",
    measurements: [],
    decision: null,
    createdAt: "2026-01-01T23:00:00Z",
    updatedAt: "2026-01-01T23:00:00Z",
    ...o,
  };
}

function pullOf(r: ExperimentRecord, o: Partial<ExperimentPull> = {}): ExperimentPull {
  return {
    number: 100 + r.n,
    state: "open",
    merged: false,
    author: "bot[bot]",
    headRepo: "o/r",
    headRef: `autoresearch/${r.n}-x`,
    headSha: r.headSha,
    baseRef: "main",
    labels: [],
    title: r.title,
    body: "",
    record: r,
    ...o,
  };
}

function snapshot(pulls: ExperimentPull[], runs: Record<string, TrainerResult | "running" | "pending"> = {}, o: Partial<Snapshot> = {}): Snapshot {
  const observations = new Map<string, RunObservation>();
  for (const [runId, v] of Object.entries(runs)) {
    observations.set(runId, typeof v === "string" ? { phase: v, runId } : { phase: "finished", runId, result: v });
  }
  return {
    name: "o/r",
    at: new Date("2026-01-01T23:30:00Z"),
    config: config(),
    defaultBranch: "main",
    headSha: HEAD,
    files: FILES,
    headTreeHash: HEAD_TREE,
    guidance: { text: "# program", sha: "g" },
    pulls,
    records: pulls.flatMap((p) => (p.record ? [p.record] : [])),
    unreadable: [],
    prHeads: new Set(),
    control: { issue: null, record: { paused: null, ideas: [], notes: [] } },
    pausedBy: null,
    runs: observations,
    runIdPrefix: PREFIX,
    runnerSlots: 1,
    runnerQueues: false,
    runnerName: "kubernetes",
    unsandboxed: false,
    ...o,
  };
}

/** The plan for every PR of the snapshot, in order, as the pass makes it. */
function plan(snap: Snapshot): Step[][] {
  const w = planned(snap);
  return snap.pulls.map((p) => planPull(w, snap, p));
}

const kinds = (steps: Step[]) => steps.filter((s) => s.do !== "log").map((s) => s.do);

describe("an experiment's next steps", () => {
  it("a queued experiment whose run the runner does not have: submit it, and write nothing (GitHub counts writes)", () => {
    const r = record(2, { state: "queued" });
    const [steps] = plan(snapshot([pullOf(r)], {}, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["submit"]);
    expect(steps![0]).toMatchObject({ do: "submit", first: true, record: { n: 2, attempt: 1 } });
  });

  it("a run still training: nothing at all", () => {
    const r = record(2);
    expect(plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: "running" }, { records: [baseline(1, 1.0), r] }))).toEqual([[]]);
  });

  it("a finished run that beats the baseline on the current head: check run, record (kept), cleanup, then merge of the measured commit", () => {
    const r = record(2);
    const [steps] = plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: measured(0.9) }, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["check", "write", "cleanup", "merge"]);
    const write = steps!.find((s) => s.do === "write") as Extract<Step, { do: "write" }>;
    expect(write.record).toMatchObject({ state: "kept", decision: { verdict: "keep" } });
    expect(write.close).toBe(false);
    expect(write.finished).toEqual({ n: 2, verdict: "keep", valBpb: 0.9 });
    expect(steps!.find((s) => s.do === "merge")).toMatchObject({ sha: r.headSha });
  });

  it("a finished run that does not beat it: recorded as discarded and closed in the same write", () => {
    const r = record(2);
    const [steps] = plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: measured(1.2) }, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["check", "write", "cleanup"]);
    expect(steps![1]).toMatchObject({ do: "write", close: true, record: { state: "discarded" } });
  });

  it("a crash: recorded as crashed and closed", () => {
    const r = record(2);
    const [steps] = plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: crashed("boom") }, { records: [baseline(1, 1.0), r] }));
    expect(steps![1]).toMatchObject({ do: "write", close: true, record: { state: "crashed", decision: { verdict: "crash" } } });
  });

  it("kept, but the default branch moved while it ran: re-applied on the new head as a new attempt, never merged", () => {
    const r = record(2, { baseSha: OLD, baseTreeHash: "old-tree" });
    const [steps] = plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: measured(0.9) }, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["check", "write", "cleanup", "reapply"]);
    const re = steps!.find((s) => s.do === "reapply") as Extract<Step, { do: "reapply" }>;
    expect(re.record).toMatchObject({ state: "queued", attempt: 2, baseSha: HEAD, measurements: [], decision: null });
    expect(re.files["train.py"]).toBe("LR = 0.02\n");
  });

  it("two keeps from the same base: the better one is merged, the other waits (and is re-applied after the merge)", () => {
    const a = record(2);
    const b = record(3, { edits: [{ path: "train.py", search: "0.04", replace: "0.05" }] });
    const snap = snapshot([pullOf(a), pullOf(b)], { [`${PREFIX}2-1`]: measured(0.95), [`${PREFIX}3-1`]: measured(0.9) }, { records: [baseline(1, 1.0), a, b] });
    const [first, second] = plan(snap);
    expect(kinds(first!)).toEqual(["check", "write", "cleanup"]); // #102 waits: #103 did better
    expect(first!.some((s) => s.do === "log" && /#103 from the same base did better/.test(s.msg))).toBe(true);
    expect(kinds(second!)).toEqual(["check", "write", "cleanup", "merge"]);
  });

  it("after a merge is planned, no later experiment merges in the same pass (the head it was measured on is gone)", () => {
    const a = record(2, { state: "kept", decision: { verdict: "keep", delta: -0.1, reasons: [] } });
    const b = record(3, { state: "kept", decision: { verdict: "keep", delta: -0.05, reasons: [] } });
    const [first, second] = plan(snapshot([pullOf(a), pullOf(b)], {}, { records: [baseline(1, 1.0), a, b] }));
    expect(kinds(first!)).toEqual(["merge"]);
    expect(second).toEqual([]);
  });

  it("paused while training: the run is cancelled, said on a cancelled check run, and queued as a new attempt", () => {
    const r = record(2);
    const [steps] = plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: "running" }, { records: [baseline(1, 1.0), r], pausedBy: "alice" }));
    expect(kinds(steps!)).toEqual(["cancel", "check", "write", "cleanup"]);
    expect(steps![1]).toMatchObject({ check: { conclusion: "cancelled", externalId: `${PREFIX}2-1` } });
    expect(steps![2]).toMatchObject({ record: { state: "queued", attempt: 2 } });
  });

  it("paused while queued: nothing is submitted", () => {
    const r = record(2, { state: "queued" });
    expect(plan(snapshot([pullOf(r)], {}, { records: [baseline(1, 1.0), r], pausedBy: "alice" }))).toEqual([[]]);
  });

  it("closed by a person while training: the run is cancelled and the record says why", () => {
    const r = record(2);
    const [steps] = plan(snapshot([pullOf(r, { state: "closed" })], { [`${PREFIX}2-1`]: "running" }, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["cancel", "write"]);
    const write = steps![2] as Extract<Step, { do: "write" }>;
    expect(write.record.state).toBe("discarded");
    expect(write.record.decision!.reasons.join(" ")).toMatch(/closed before its run finished/);
  });

  it("a result that names another run or commit is never recorded: the run is dropped and measured anew", () => {
    const r = record(2);
    const forged = { ...measured(0.1), runId: `${PREFIX}9-1` };
    const [steps] = plan(snapshot([pullOf(r)], { [`${PREFIX}2-1`]: forged }, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["cleanup", "submit"]);
  });

  it("a run the runner lost: submitted again under the same run id, not counted as a new start", () => {
    const r = record(2);
    const [steps] = plan(snapshot([pullOf(r)], {}, { records: [baseline(1, 1.0), r] }));
    expect(kinds(steps!)).toEqual(["submit"]);
    expect((steps!.find((s) => s.do === "submit") as Extract<Step, { do: "submit" }>).first).toBeUndefined();
  });
});

describe("the next experiment", () => {
  const base = baseline(1, 1.0, { state: "kept" });

  it("no baseline for the head's tree: the baseline, numbered after every record", () => {
    const snap = snapshot([], {}, { records: [] });
    const s = planStart(planned(snap), snap, false, null);
    expect(s).toMatchObject({ start: "baseline", record: { n: 1, kind: "baseline", treeHash: HEAD_TREE } });
  });

  it("a baseline exists: a proposal, numbered past PRs whose record cannot be read (their numbers are taken)", () => {
    const snap = snapshot([pullOf(base, { state: "closed" })], {}, { unreadable: [7] });
    expect(planStart(planned(snap), snap, false, null)).toMatchObject({ start: "proposal", n: 8 });
  });

  it("every slot busy: waits, and asks for proposals ahead", () => {
    const r = record(2);
    const snap = snapshot([pullOf(base, { state: "closed" }), pullOf(r)], { [`${PREFIX}2-1`]: "running" });
    expect(planStart(planned(snap), snap, false, null)).toMatchObject({ start: false, waiting: "all 1 slot(s) busy", askAhead: true });
  });

  it("queue_ahead: behind busy slots, that many more start where the runner queues them, and none where it would run them all", () => {
    const queueAhead = config("queue_ahead: 2\n");
    // k experiments in flight: the first training, the others waiting in the runner.
    const inFlight = (k: number, o: Partial<Snapshot>) => {
      const rs = Array.from({ length: k }, (_, i) => record(2 + i));
      return snapshot([pullOf(base, { state: "closed" }), ...rs.map((r) => pullOf(r))], Object.fromEntries(rs.map((r) => [`${PREFIX}${r.n}-1`, r.n === 2 ? "running" : "pending"])), o);
    };
    const queues = { config: queueAhead, runnerQueues: true };
    // One slot training, one run queued: one more is submitted behind them.
    expect(planStart(planned(inFlight(2, queues)), inFlight(2, queues), false, null)).toMatchObject({ start: "proposal", n: 4, inFlight: 2 });
    expect(planStart(planned(inFlight(3, queues)), inFlight(3, queues), false, null)).toMatchObject({
      start: false,
      waiting: "all 1 slot(s) busy and 2 experiment(s) queued behind them",
    });
    // A runner that starts every run it is given (Kubernetes): queue_ahead would be more slots.
    const starts = { config: queueAhead, runnerQueues: false };
    expect(planStart(planned(inFlight(1, starts)), inFlight(1, starts), false, null)).toMatchObject({
      start: false,
      waiting: "all 1 slot(s) busy (queue_ahead is not used: the kubernetes runner starts every run it is given)",
    });
  });

  it("the head moved in this pass: another pass at once, on the new head", () => {
    const snap = snapshot([pullOf(base, { state: "closed" })]);
    expect(planStart(planned(snap), snap, true, null)).toMatchObject({ start: false, again: true });
  });

  it("paused, or the steering record unreadable: nothing starts", () => {
    const paused = snapshot([pullOf(base, { state: "closed" })], {}, { pausedBy: "alice" });
    expect(planStart(planned(paused), paused, false, null)).toMatchObject({ start: false, waiting: expect.stringMatching(/^paused by @alice/) });
    const broken = snapshot([pullOf(base, { state: "closed" })], {}, {
      control: { issue: null, record: { paused: null, ideas: [], notes: [] }, malformed: "its JSON does not parse" },
    });
    expect(planStart(planned(broken), broken, false, null)).toMatchObject({ start: false, waiting: expect.stringMatching(/cannot be read/) });
  });

  it("the write budget cannot carry one more experiment and the ones in flight: held back, with what it needs", () => {
    const snap = snapshot([pullOf(base, { state: "closed" })]);
    expect(planStart(planned(snap), snap, false, { hourLeft: 5 })).toMatchObject({ start: false, budgetNeed: 6 });
    expect(planStart(planned(snap), snap, false, { hourLeft: 6 })).toMatchObject({ start: "proposal" });
    // By git push, the branch and its commit are no API writes.
    expect(planStart(planned(snap), snap, false, { hourLeft: 3, refsByGit: true })).toMatchObject({ start: false, budgetNeed: 4 });
    expect(planStart(planned(snap), snap, false, { hourLeft: 4, refsByGit: true })).toMatchObject({ start: "proposal" });
  });

  it("outside the nightly window, and past max_experiments: the night is over", () => {
    const windowed = snapshot([pullOf(base, { state: "closed" })], {}, { config: config("night:\n  window: 01:00-05:00\n") });
    expect(planStart(planned(windowed), windowed, false, null)).toMatchObject({ waiting: "outside the nightly window 01:00-05:00" });
    const capped = snapshot([pullOf(base, { state: "closed" })], {}, { config: config("night:\n  max_experiments: 1\n") });
    expect(planStart(planned(capped), capped, false, null)).toMatchObject({ waiting: "reached max_experiments (1) for tonight" });
  });
});

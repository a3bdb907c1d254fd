import { describe, expect, it } from "vitest";
import { bestBpb, buildHistory, currentBaseline } from "../../src/history.js";
import type { ExperimentRecord, Measurement, TrainerResult } from "../../src/types.js";

function run(val_bpb: number | null, over: Partial<TrainerResult> = {}): Measurement {
  return {
    runId: "r",
    sha: "s",
    finishedAt: "2025-03-01T00:00:00Z",
    result: { status: val_bpb === null ? "crash" : "ok", val_bpb, exit_code: val_bpb === null ? 1 : 0, reason: "", log_tail: "", summary: {}, ...over },
  };
}

function rec(n: number, over: Partial<ExperimentRecord>): ExperimentRecord {
  return {
    v: 1,
    n,
    kind: "experiment",
    title: `experiment ${n}`,
    hypothesis: `hypothesis ${n}`,
    proposer: "mutate",
    baseSha: "b",
    headSha: "h",
    edits: [],
    treeHash: `tree-${n}`,
    baseTreeHash: "tree-base",
    guidanceSha: null,
    baselineBpb: 1.0,
    attempt: 1,
    state: "queued",
    measurements: [],
    decision: null,
    createdAt: "2025-03-01T00:00:00Z",
    updatedAt: "2025-03-01T00:00:00Z",
    ...over,
  };
}

const decision = (verdict: "keep" | "discard" | "crash", delta: number | null, reason: string) => ({ verdict, delta, reasons: [reason] });

const ledger: ExperimentRecord[] = [
  rec(4, { state: "discarded", measurements: [run(1.0004)], decision: decision("discard", 0.0004, "within noise.") }),
  rec(1, { kind: "baseline", treeHash: "tree-base", baselineBpb: null, state: "kept", measurements: [run(1.0)], decision: decision("keep", null, "Baseline measured.") }),
  rec(2, { state: "kept", measurements: [run(0.99)], decision: decision("keep", -0.01, "better.") }),
  rec(3, { state: "discarded", measurements: [run(1.02)], decision: decision("discard", 0.02, "worse.") }),
  rec(5, { state: "crashed", measurements: [run(null, { status: "oom", reason: "CUDA out of memory" })], decision: null }),
  rec(6, { state: "running" }),
  rec(7, { state: "superseded" }),
];

describe("buildHistory", () => {
  it("lists every experiment in order of n with what the proposer should learn from it", () => {
    const h = buildHistory(ledger, 0.001);
    expect(h.map((e) => [e.n, e.verdict, e.outcome])).toEqual([
      [1, "baseline", "baseline"],
      [2, "keep", "better"],
      [3, "discard", "worse"],
      [4, "discard", "within noise"],
      [5, "crash", "crash"],
      [6, "running", "pending"],
      [7, "superseded", "pending"],
    ]);
  });

  it("carries the figures, the reasons and the tree hash", () => {
    const h = buildHistory(ledger);
    expect(h[1]).toEqual({
      n: 2,
      title: "experiment 2",
      hypothesis: "hypothesis 2",
      verdict: "keep",
      valBpb: 0.99,
      delta: -0.01,
      outcome: "better",
      reason: "better.",
      treeHash: "tree-2",
    });
    expect(h[4]!.reason).toBe("The run ran out of memory (exit code 1): CUDA out of memory.");
    expect(h[5]).toMatchObject({ valBpb: null, delta: null, reason: null });
  });

  it("tells noise from regressions by the threshold it is given", () => {
    expect(buildHistory(ledger, 0.0001)[3]!.outcome).toBe("worse");
  });
});

describe("currentBaseline", () => {
  it("is the figure measured for exactly the head's tree", () => {
    expect(currentBaseline(ledger, "tree-base")).toEqual({ bpb: 1.0, n: 1, runs: 1 });
    // After experiment 2 was merged the head's tree is experiment 2's tree.
    expect(currentBaseline(ledger, "tree-2")).toEqual({ bpb: 0.99, n: 2, runs: 1 });
  });

  it("ignores discarded, crashed and unfinished experiments with that tree", () => {
    expect(currentBaseline(ledger, "tree-3")).toBeNull();
    expect(currentBaseline(ledger, "tree-5")).toBeNull();
    expect(currentBaseline(ledger, "tree-6")).toBeNull();
    expect(currentBaseline(ledger, "unknown")).toBeNull();
  });

  it("averages repeated measurements of the same tree", () => {
    const again = rec(8, { kind: "baseline", treeHash: "tree-2", state: "kept", measurements: [run(0.98), run(0.97)] });
    expect(currentBaseline([...ledger, again], "tree-2")).toEqual({ bpb: (0.99 + 0.98 + 0.97) / 3, n: 8, runs: 3 });
  });

  it("skips a crashed baseline", () => {
    const crashed = rec(9, { kind: "baseline", treeHash: "tree-x", state: "crashed", measurements: [run(null)] });
    expect(currentBaseline([crashed], "tree-x")).toBeNull();
  });
});

describe("bestBpb", () => {
  it("is the lowest kept figure", () => {
    expect(bestBpb(ledger)).toBe(0.99);
    expect(bestBpb([])).toBeNull();
    expect(bestBpb(ledger.filter((r) => r.state !== "kept"))).toBeNull();
  });
});

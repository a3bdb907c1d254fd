// Noise measured, not guessed: σ pooled from repeated runs of identical trees, the keep threshold
// from σ, the runs on each side and the false-keep rate, a promising first run confirmed before
// any merge, and a baseline that stays honest. Specified with the pure parts and the fakes.
import { describe, expect, it } from "vitest";
import { CONFIG_PATH } from "../src/config.js";
import { estimateNoise, normalQuantile } from "../src/noise.js";
import { decide, PROMISING_Z, thresholdFor, type DecideInput } from "../src/policy.js";
import { renderReport } from "../src/report.js";
import type { ExperimentRecord, Measurement, TrainerResult } from "../src/types.js";
import { change, measured } from "./support/fakes.js";
import { loopWorld } from "./support/world.js";

const ok = (v: number, hardware?: string): TrainerResult => ({ ...measured(v), ...(hardware ? { hardware } : {}) });
let runs = 0;
const m = (v: number, hardware?: string): Measurement => ({ runId: `r${++runs}`, sha: "s", result: ok(v, hardware), finishedAt: `2026-03-01T23:${String(runs % 60).padStart(2, "0")}:00Z` });

function rec(n: number, tree: string, values: number[], o: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return {
    v: 1, n, kind: "experiment", title: `e${n}`, hypothesis: "h", proposer: "p", baseSha: "b", headSha: "h", edits: [], treeHash: tree,
    baseTreeHash: "t0", guidanceSha: null, baselineBpb: 1, attempt: 1, state: "discarded", measurements: values.map((v) => m(v)),
    decision: null, createdAt: "2026-03-01T23:00:00Z", updatedAt: "2026-03-01T23:00:00Z", ...o,
  };
}

describe("σ from the ledger", () => {
  it("pools the spread of every tree measured more than once, and only on one hardware", () => {
    const records = [
      rec(1, "t0", [1.0, 1.2, 1.1], { kind: "baseline", state: "kept" }),
      rec(2, "t2", [0.9, 1.1]),
      rec(3, "t3", [0.5]), // one run: no spread to learn from
      rec(4, "t0", [1.05], { kind: "baseline", state: "kept" }), // the same tree measured again
    ];
    const noise = estimateNoise(records)!;
    // t0: 1.0, 1.2, 1.1, 1.05 (mean 1.0875, ss 0.021875); t2: 0.9, 1.1 (ss 0.02); df 3 + 1 = 4.
    expect(noise.df).toBe(4);
    expect(noise.sigma).toBeCloseTo(Math.sqrt((0.021875 + 0.02) / 4), 12);
    expect(estimateNoise([rec(1, "t0", [1.0, 1.2])])).toBeNull(); // 1 degree of freedom is not enough
    const h200 = [rec(1, "t0", [1.0, 1.1, 1.2]).measurements, []];
    void h200;
    const mixed = [{ ...rec(1, "t0", []), measurements: [m(1.0, "gpu"), m(1.1, "gpu"), m(1.2, "gpu"), m(5, "cpu"), m(9, "cpu")] }];
    expect(estimateNoise(mixed, "gpu")!.sigma).toBeCloseTo(0.1, 12);
    expect(estimateNoise(mixed, "cpu")).toBeNull();
  });

  it("turns a false-keep rate into a quantile of the normal distribution", () => {
    expect(normalQuantile(0.975)).toBeCloseTo(1.959964, 5);
    expect(normalQuantile(0.99)).toBeCloseTo(2.326348, 5);
    expect(normalQuantile(0.01)).toBeCloseTo(-2.326348, 5);
    expect(normalQuantile(0.9)).toBeCloseTo(PROMISING_Z, 3);
  });
});

describe("the sequential rule", () => {
  const settings = { baselineRuns: 3, maxRuns: 4, falseKeepRate: 0.01, floor: 0.01 };
  const input = (values: number[], o: Partial<DecideInput> = {}): DecideInput => ({
    kind: "experiment", measurements: values.map((v) => m(v)), baselineBpb: 1.0, baselineRuns: 3, minDelta: "auto",
    noise: { sigma: 0.01, df: 10, hardware: null }, settings, ...o,
  });

  it("measures a baseline baseline_runs times", () => {
    expect(decide({ ...input([1.0, 1.01]), kind: "baseline", baselineBpb: null }).action).toBe("more");
    expect(decide({ ...input([1.0, 1.01, 0.99]), kind: "baseline", baselineBpb: null }).action).toBe("keep");
  });

  it("holds the threshold to σ, the runs on each side and the false-keep rate spread over the looks", () => {
    const t1 = thresholdFor(input([0.98]), 1);
    const se1 = 0.01 * Math.sqrt(1 + 1 / 3);
    expect(t1.promising).toBeCloseTo(PROMISING_Z * se1, 12);
    const t2 = thresholdFor(input([0.98, 0.98]), 2);
    // three looks (runs 2, 3 and 4) share the 1%: z(1 − 0.01/3) standard errors
    expect(t2.keep).toBeCloseTo(normalQuantile(1 - 0.01 / 3) * 0.01 * Math.sqrt(1 / 2 + 1 / 3), 12);
    expect(t2).toMatchObject({ source: "noise", sigma: 0.01, df: 10, runs: 2, baselineRuns: 3 });
    // A number for min_delta replaces both bounds; without σ the floor does.
    expect(thresholdFor(input([0.98], { minDelta: 0.002 }), 1)).toMatchObject({ keep: 0.002, promising: 0.002, source: "min_delta" });
    expect(thresholdFor(input([0.98], { noise: null }), 1)).toMatchObject({ keep: 0.01, source: "floor" });
  });

  it("never keeps on one run: a promising first run is measured again, an unpromising one discarded at once", () => {
    expect(decide(input([0.95])).action).toBe("more"); // 5σ better on its first run: confirmed first
    expect(decide(input([0.995])).action).toBe("discard"); // 0.5σ: not promising
    expect(decide(input([0.95])).reasons[0]).toMatch(/promising, so it is measured again before any merge \(run 2 of at most 4\)/);
  });

  it("keeps when the mean of its runs passes the threshold for that many runs, and stops at max_runs", () => {
    expect(decide(input([0.95, 0.96])).action).toBe("keep");
    const keep = decide(input([0.95, 0.96]));
    expect(keep.reasons[0]).toMatch(/val_bpb 0\.955000 \(mean of 2 runs\) is 0\.045000 lower than the baseline 1\.000000 \(mean of 3 runs\), more than the threshold 0\.0\d+ \(for a false-keep rate of 1%: σ 0\.010000 from 10 degrees of freedom, 2 runs against 3\)/);
    expect(decide(input([0.985, 0.99])).action).toBe("more"); // promising, not yet clear
    expect(decide(input([0.985, 0.99, 0.99, 0.99])).action).toBe("discard"); // max_runs reached
    expect(decide(input([0.985, 1.01])).action).toBe("discard"); // no longer promising
  });

  it("with max_runs 1, one run decides", () => {
    expect(decide(input([0.95], { settings: { ...settings, maxRuns: 1 } })).action).toBe("keep");
  });
});

function world(config: string) {
  const w = loopWorld({ files: { "program.md": "# Tonight\n", "train.py": "LR = 0.04\nDEPTH = 4\n", "prepare.py": "", [CONFIG_PATH]: config }, steering: false, reportEveryMs: 0 });
  const finish = async (n: number, v: number) => {
    w.runner.finish(w.runOf(n), measured(v));
    await w.settle();
  };
  return { ...w, finish };
}

describe("a night with the noise defaults (min_delta auto)", () => {
  it("measures the baseline three times with three seeds, confirms a promising change, and shows σ and every run", async () => {
    const w = world("");
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "LR up"), change("DEPTH = 4", "DEPTH = 5", "Deeper"));
    await w.settle();
    for (const v of [1.0, 1.02, 0.98]) await w.finish(1, v);
    const baseline = w.gh.record(w.gh.pullOf(1).number);
    expect(baseline.measurements.map((x) => x.result.val_bpb)).toEqual([1.0, 1.02, 0.98]);
    expect(w.runner.submitted.filter((s) => s.pull === w.gh.pullOf(1).number).map((s) => s.seed)).toEqual([1, 2, 3]);
    expect(baseline.state).toBe("kept");

    // σ = 0.02 from 2 degrees of freedom. Experiment 2's first run is 4σ better: promising.
    await w.finish(2, 0.92);
    const two = w.gh.pullOf(2).number;
    expect(w.gh.record(two).state).toBe("queued");
    expect(w.gh.record(two).attempt).toBe(2);
    expect(w.gh.pull(two).merged).toBe(false);
    // Its second run confirms it: kept on the mean of both.
    await w.finish(2, 0.93);
    const r = w.gh.record(two);
    expect(r.state).toBe("kept");
    expect(w.gh.pull(two).merged).toBe(true);
    // σ pools the baseline's three runs and the experiment's own two (0.00085 over 3 degrees of freedom).
    expect(r.decision!.threshold).toMatchObject({ source: "noise", df: 3, runs: 2, baselineRuns: 3 });
    expect(r.decision!.threshold!.sigma).toBeCloseTo(Math.sqrt(0.00085 / 3), 9);
    const check = w.gh.checkRunsOn(r.headSha, "val_bpb").find((c) => c.conclusion === "success")!;
    expect(check.output.title).toBe("val_bpb 0.925000 (−0.075000 vs baseline, mean of 2 runs)");
    expect(check.output.summary).toMatch(/σ 0\.016833 from 3 degrees of freedom, 2 runs against 3/);
    expect(check.output.text).toMatch(/Every run:[\s\S]*\| 1 \|[\s\S]*\| 2 \|/);
    expect(w.gh.pull(two).body).toMatch(/val_bpb \*\*0\.925000\*\* \(mean of 2 runs\)[\s\S]*Noise: σ 0\.016833/);

    // The merged tree is the new head: its baseline is experiment 2's own runs, no new baseline run.
    // Experiment 3 (0.5σ better on its first run) is not promising: discarded after one run.
    await w.finish(3, 0.915);
    expect(w.gh.record(w.gh.pullOf(3).number)).toMatchObject({ state: "discarded", baselineBpb: 0.925 });
    expect(w.gh.record(w.gh.pullOf(3).number).measurements).toHaveLength(1);
  });

  it("measures the head again every rebaseline_every experiments, and the report says where the night started", async () => {
    const w = world("noise:\n  rebaseline_every: 2\n  baseline_runs: 2\n  max_runs: 1\n");
    w.proposer.queue(change("LR = 0.04", "LR = 0.05", "a"), change("LR = 0.04", "LR = 0.06", "b"), change("LR = 0.04", "LR = 0.07", "c"));
    await w.settle();
    for (const v of [1.0, 1.02]) await w.finish(1, v);
    await w.finish(2, 1.05);
    await w.finish(3, 1.06);
    // Two experiments since the baseline: the head is measured again before the next proposal.
    const four = w.gh.record(w.gh.pullOf(4).number);
    expect(four).toMatchObject({ kind: "baseline", title: "Baseline: measure the current train.py again" });
    for (const v of [0.99, 1.01]) await w.finish(4, v);
    await w.finish(5, 1.04);
    const five = w.gh.record(w.gh.pullOf(5).number);
    // Compared with the mean of all four runs of the head's tree.
    expect(five.baselineBpb).toBeCloseTo(1.005, 12);
    expect(five.decision!.threshold!.baselineRuns).toBe(4);
    const report = w.gh.issues.find((i) => i.labels.includes("autoresearch:report"))!.body;
    // The same tree measured again is not progress: every run of it counts, at the start as at the end.
    expect(report).toContain("**Best val_bpb:** 1.005000 → 1.005000; the night started from its first baseline");
    expect(report).toMatch(/\*\*Noise:\*\* σ 0\.0\d+ per run, from \d+ degrees of freedom/);
    expect(report).toMatch(/\*\*Runs:\*\* 7 training runs: 5 first runs, 0 to confirm promising changes, 2 repeated baseline runs/);
  });
});

describe("the morning report", () => {
  it("states the share of runs that went to confirmation", () => {
    const base = { ...rec(1, "t0", [1.0, 1.1, 0.9], { kind: "baseline", state: "kept" }) };
    const confirmed = rec(2, "t2", [0.8, 0.82], { state: "kept" });
    const body = renderReport({ night: "2026-03-01", records: [base, confirmed], before: [], pulls: new Map(), complete: true });
    expect(body).toMatch(/5 training runs: 2 first runs, 1 to confirm promising changes, 2 repeated baseline runs \(extra runs: 60% of its runs\)/);
  });
});

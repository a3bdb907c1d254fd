import { describe, expect, it } from "vitest";
import { bpbChart, renderReport, reportTitle } from "../../src/report.js";
import type { ExperimentRecord, TrainerResult } from "../../src/types.js";

const ok = (v: number): TrainerResult => ({ status: "ok", val_bpb: v, exit_code: 0, reason: "", log_tail: "", summary: { peak_vram_mb: 2048 } });
const crash = (reason: string): TrainerResult => ({ status: "crash", val_bpb: null, exit_code: 1, reason, log_tail: reason, summary: {}, stage: "train" });

function rec(n: number, o: Partial<ExperimentRecord> & { result?: TrainerResult }): ExperimentRecord {
  const { result, ...rest } = o;
  return {
    v: 1,
    n,
    kind: "experiment",
    title: `experiment ${n}`,
    hypothesis: `hypothesis ${n}`,
    proposer: "mutate",
    baseSha: "b".repeat(40),
    headSha: String(n).repeat(40).slice(0, 40),
    edits: [],
    treeHash: `t${n}`,
    baseTreeHash: "t0",
    guidanceSha: null,
    baselineBpb: 1.1,
    attempt: 1,
    state: "discarded",
    measurements: result ? [{ runId: `r${n}`, sha: "c".repeat(40), result, finishedAt: "2026-03-01T23:00:00Z" }] : [],
    decision: null,
    createdAt: "2026-03-01T23:00:00Z",
    updatedAt: "2026-03-01T23:00:00Z",
    ...rest,
  };
}

describe("the morning report", () => {
  const before = [rec(1, { kind: "baseline", state: "kept", result: ok(1.2), createdAt: "2026-02-28T23:00:00Z" })];
  const night = [
    rec(2, { kind: "baseline", state: "kept", result: ok(1.1), decision: { verdict: "keep", delta: null, reasons: [] } }),
    rec(3, { state: "kept", result: ok(1.0), title: "Raise the LR", hypothesis: "Faster convergence.", decision: { verdict: "keep", delta: -0.1, reasons: [] } }),
    rec(4, { state: "discarded", result: ok(1.3), decision: { verdict: "discard", delta: 0.3, reasons: [] } }),
    rec(5, { state: "crashed", result: crash("CUDA out of memory"), title: "Huge batch", decision: { verdict: "crash", delta: null, reasons: [] } }),
  ];
  const pulls = new Map([[2, 12], [3, 13], [4, 14], [5, 15]]);

  it("counts, best before → after, kept with hypotheses, crashes with reasons, the chart and results.tsv", () => {
    const body = renderReport({ night: "2026-03-01", records: night, before, pulls, complete: true });
    expect(body).toContain("The night of 2026-03-01 is over");
    expect(body).toContain("| 4 | 1 | 1 | 1 | 1 | 0 |");
    expect(body).toContain("**Best val_bpb:** 1.200000 → 1.000000");
    expect(body).toMatch(/\| #13 Raise the LR \| 1\.000000 \(1\) \| -0\.100000 \| Faster convergence\. \|/);
    expect(body).toMatch(/#15 Huge batch \|.*CUDA out of memory/);
    expect(body).toContain("xychart-beta");
    expect(body).toContain('x-axis ["#2", "#3", "#4"]');
    expect(body).toContain("line [1.100000, 1.000000, 1.300000]");
    expect(body).toContain("<details><summary>results.tsv</summary>");
    expect(body).toContain("commit\tval_bpb\tmemory_gb\tstatus\tdescription");
    expect(body).toMatch(/\t0\.000000\t0\.0\tcrash\tHuge batch/);
    expect(reportTitle("2026-03-01")).toContain("2026-03-01");
  });

  it("is the same text for the same ledger, and says when the night is still running", () => {
    const a = renderReport({ night: "2026-03-01", records: night, before, pulls, complete: false });
    const b = renderReport({ night: "2026-03-01", records: [...night].reverse(), before, pulls, complete: false });
    expect(a).toBe(b);
    expect(a).toContain("in progress");
  });

  it("escapes text from proposals and draws no chart without measurements", () => {
    const body = renderReport({
      night: "2026-03-01",
      records: [rec(2, { state: "kept", result: ok(1), title: "a | b <!-- x", decision: { verdict: "keep", delta: -0.1, reasons: [] } })],
      before: [],
      pulls: new Map(),
      complete: false,
    });
    expect(body).toContain("a \\| b &lt;!-- x");
    expect(bpbChart([rec(2, { state: "crashed", result: crash("x") })])).toBe("");
  });
});

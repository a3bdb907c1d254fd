import { describe, expect, it } from "vitest";
import { classifyOutcome, decide, meanValBpb } from "../../src/policy.js";
import type { Measurement, TrainerResult } from "../../src/types.js";

function result(over: Partial<TrainerResult> = {}): TrainerResult {
  return { status: "ok", val_bpb: 1.0, exit_code: 0, reason: "", log_tail: "", summary: {}, ...over };
}

let runs = 0;
function m(over: Partial<TrainerResult> = {}): Measurement {
  runs++;
  return { runId: `r${runs}`, sha: "abc1234def", result: result(over), finishedAt: "2025-03-01T00:00:00Z" };
}

const ok = (val_bpb: number) => m({ val_bpb });
const infra = (stage: "fetch" | "prepare", reason = "network unreachable") =>
  m({ status: "crash", val_bpb: null, exit_code: 1, stage, reason });

describe("decide: baselines", () => {
  it("keeps a baseline that measured", () => {
    expect(decide({ kind: "baseline", measurements: [ok(0.9979)], baselineBpb: null, minDelta: 0.001 })).toEqual({
      action: "keep",
      delta: null,
      reasons: ["Baseline measured: val_bpb 0.997900."],
      conclusion: "success",
    });
  });

  it("records a crashed baseline as a crash", () => {
    const d = decide({
      kind: "baseline",
      measurements: [m({ status: "crash", val_bpb: null, exit_code: 1, reason: "Traceback: ZeroDivisionError" })],
      baselineBpb: null,
      minDelta: 0.001,
    });
    expect(d).toEqual({
      action: "crash",
      delta: null,
      reasons: ["The run crashed (exit code 1): Traceback: ZeroDivisionError."],
      conclusion: "failure",
    });
  });
});

describe("decide: experiments", () => {
  const base = { kind: "experiment" as const, baselineBpb: 0.9979, minDelta: 0.001 };

  it("keeps an improvement larger than the noise threshold", () => {
    expect(decide({ ...base, measurements: [ok(0.99)] })).toEqual({
      action: "keep",
      delta: -0.0079,
      reasons: ["val_bpb 0.990000 is 0.007900 lower than the baseline 0.997900, more than the threshold 0.001000 (min_delta)."],
      conclusion: "success",
      threshold: { keep: 0.001, promising: 0.001, source: "min_delta", sigma: null, df: 0, hardware: null, runs: 1, baselineRuns: 1 },
    });
  });

  it("discards a change within noise as neutral, exactly at the threshold included", () => {
    // 0.9969 − 0.9979 is −0.001 in decimal but −0.0010000000000000009 in floating point.
    for (const v of [0.9969, 0.9989, 0.9979, 0.9975]) {
      const d = decide({ ...base, measurements: [ok(v)] });
      expect(d.action).toBe("discard");
      expect(d.conclusion).toBe("neutral");
      expect(d.reasons[0]).toMatch(/within noise \(±0\.001000: the threshold 0\.001000 \(min_delta\)\)\.$/);
    }
    expect(decide({ ...base, measurements: [ok(0.9975)] }).reasons).toEqual([
      "val_bpb 0.997500 differs from the baseline 0.997900 by -0.000400, within noise (±0.001000: the threshold 0.001000 (min_delta)).",
    ]);
    expect(decide({ ...base, measurements: [ok(0.9969)] }).delta).toBe(-0.001);
  });

  it("keeps just past the threshold", () => {
    expect(decide({ ...base, measurements: [ok(0.996899)] }).action).toBe("keep");
    expect(decide({ ...base, measurements: [ok(0.998901)] }).conclusion).toBe("failure");
  });

  it("discards a regression as a failure", () => {
    expect(decide({ ...base, measurements: [ok(1.01)] })).toEqual({
      action: "discard",
      delta: 0.0121,
      reasons: ["val_bpb 1.010000 is 0.012100 worse than the baseline 0.997900."],
      conclusion: "failure",
      threshold: { keep: 0.001, promising: 0.001, source: "min_delta", sigma: null, df: 0, hardware: null, runs: 1, baselineRuns: 1 },
    });
  });

  it("treats any improvement as progress with a zero threshold, and no change as noise", () => {
    expect(decide({ ...base, minDelta: 0, measurements: [ok(0.997899)] }).action).toBe("keep");
    expect(decide({ ...base, minDelta: 0, measurements: [ok(0.9979)] })).toMatchObject({ action: "discard", conclusion: "neutral" });
  });

  it("uses the mean of several successful runs", () => {
    const d = decide({ ...base, measurements: [ok(0.99), ok(0.994)] });
    expect(d.delta).toBe(-0.0059);
    expect(d.reasons[0]).toBe(
      "val_bpb 0.992000 (mean of 2 runs) is 0.005900 lower than the baseline 0.997900, more than the threshold 0.001000 (min_delta).",
    );
  });

  it.each([
    [{ status: "crash" as const, exit_code: 1, reason: "RuntimeError: shape mismatch" }, "The run crashed (exit code 1): RuntimeError: shape mismatch.", "failure"],
    [{ status: "oom" as const, exit_code: 137, reason: "CUDA out of memory." }, "The run ran out of memory (exit code 137): CUDA out of memory.", "failure"],
    [{ status: "timeout" as const, exit_code: null, reason: "killed after 720 s" }, "The run exceeded its time limit and was stopped: killed after 720 s.", "timed_out"],
    [{ status: "nan" as const, exit_code: 1, reason: "" }, "The loss became NaN or the run reported a failure.", "failure"],
    [{ status: "ok" as const, val_bpb: null, reason: "no val_bpb line" }, "The run finished without printing a usable val_bpb: no val_bpb line.", "failure"],
  ])("records a failed training as a crash: %j", (over, reason, conclusion) => {
    expect(decide({ ...base, measurements: [m({ val_bpb: null, ...over })] })).toEqual({
      action: "crash",
      delta: null,
      reasons: [reason],
      conclusion,
    });
  });

  it("counts a crash of any training run against the change, even after a good run", () => {
    const d = decide({ ...base, measurements: [ok(0.99), m({ status: "nan", val_bpb: null, reason: "loss is nan" })] });
    expect(d.action).toBe("crash");
  });

  it("refuses to judge an experiment without a baseline", () => {
    expect(() => decide({ ...base, baselineBpb: null, measurements: [ok(0.99)] })).toThrow(
      "decide: an experiment needs a baseline val_bpb to be compared against",
    );
  });
});

describe("decide: infrastructure failures", () => {
  const base = { kind: "experiment" as const, baselineBpb: 0.9979, minDelta: 0.001 };

  it("reruns a run that failed before training, up to two reruns by default", () => {
    expect(decide({ ...base, measurements: [infra("fetch")] })).toEqual({
      action: "rerun",
      delta: null,
      reasons: ["Attempt 1 of 3 failed before training (fetch: network unreachable); the run is started again."],
      conclusion: "neutral",
    });
    expect(decide({ ...base, measurements: [infra("fetch"), infra("prepare", "disk full.")] }).action).toBe("rerun");
    expect(decide({ ...base, measurements: [infra("fetch"), infra("fetch"), infra("prepare", "disk full.")] })).toEqual({
      action: "crash",
      delta: null,
      reasons: ["All 3 attempts failed before training; the last one at prepare: disk full."],
      conclusion: "failure",
    });
  });

  it("honours maxAttempts", () => {
    expect(decide({ ...base, maxAttempts: 1, measurements: [infra("prepare")] }).action).toBe("crash");
    expect(decide({ ...base, maxAttempts: 5, measurements: [infra("prepare"), infra("prepare"), infra("prepare")] }).action).toBe("rerun");
  });

  it("reruns baselines too", () => {
    expect(decide({ kind: "baseline", baselineBpb: null, minDelta: 0.001, measurements: [infra("fetch")] }).action).toBe("rerun");
  });

  it("ignores earlier infrastructure failures once a training run finished", () => {
    expect(decide({ ...base, measurements: [infra("fetch"), ok(0.99)] })).toMatchObject({ action: "keep", delta: -0.0079 });
  });

  it("reruns a run the full disk failed during training, and does not hold it against the change", () => {
    const diskFull = () =>
      m({ status: "crash", val_bpb: null, exit_code: null, stage: "train", infrastructure: true, reason: "the disk is full: No space left on device writing /srv/.runs/o-r-2-1/train.log (0 bytes free there)" });
    expect(decide({ ...base, measurements: [diskFull()] })).toEqual({
      action: "rerun",
      delta: null,
      reasons: [
        "Attempt 1 of 3 failed outside the experiment (train: the disk is full: No space left on device writing /srv/.runs/o-r-2-1/train.log (0 bytes free there)); the run is started again.",
      ],
      conclusion: "neutral",
    });
    expect(decide({ ...base, measurements: [diskFull(), ok(0.99)] })).toMatchObject({ action: "keep", delta: -0.0079 });
    expect(decide({ ...base, measurements: [diskFull(), diskFull(), diskFull()] })).toMatchObject({
      action: "crash",
      reasons: [expect.stringMatching(/^All 3 attempts failed outside the experiment; the last one at train: the disk is full/)],
    });
  });

  it("does not rerun a failure during training", () => {
    expect(decide({ ...base, measurements: [m({ status: "crash", val_bpb: null, stage: "train", reason: "boom" })] }).action).toBe(
      "crash",
    );
  });

  it("asks for a run when nothing was measured", () => {
    expect(decide({ ...base, measurements: [] }).action).toBe("rerun");
  });
});

describe("classifyOutcome and meanValBpb", () => {
  it("classifies deltas against the threshold (negative is better)", () => {
    expect(classifyOutcome(-0.002, 0.001)).toBe("better");
    expect(classifyOutcome(-0.001, 0.001)).toBe("within noise");
    expect(classifyOutcome(0.9969 - 0.9979, 0.001)).toBe("within noise");
    expect(classifyOutcome(0.0005, 0.001)).toBe("within noise");
    expect(classifyOutcome(0.0011, 0.001)).toBe("worse");
  });

  it("averages only successful measurements", () => {
    expect(meanValBpb([ok(1), ok(2), m({ status: "crash", val_bpb: null })])).toBe(1.5);
    expect(meanValBpb([m({ status: "crash", val_bpb: null })])).toBeNull();
  });
});

describe("decide: a run that broke its time budget", () => {
  it("is never kept, however good the val_bpb it printed, and the reason gives both figures", () => {
    const lied = m({
      status: "over_budget",
      val_bpb: 0.5,
      reason: "not a valid measurement: the run reported 300 s of training, but its command ran only 2 s by the wall clock",
    });
    const d = decide({ kind: "experiment", measurements: [lied], baselineBpb: 1.0, minDelta: 0.001 });
    expect(d.action).toBe("crash");
    expect(d.conclusion).toBe("failure");
    expect(d.reasons[0]).toMatch(/broke its time budget, measured from outside.*300 s of training.*2 s by the wall clock/);
    expect(meanValBpb([lied])).toBeNull();
  });
});

// The decision policy: from the measurements of one experiment (or baseline) to keep / discard /
// crash / rerun, with the reasons written into the PR. Pure, so every rule is tested directly.
//
// val_bpb is lower-is-better, so delta = val_bpb − baseline and a negative delta is progress.
// An improvement counts only when it is larger than the noise threshold `minDelta`.

import type { Measurement, TrainerResult } from "./types.js";

export type Action = "keep" | "discard" | "crash" | "rerun";
export type Conclusion = "success" | "neutral" | "failure" | "timed_out";
export type Outcome = "better" | "within noise" | "worse";

export interface DecideInput {
  kind: "baseline" | "experiment";
  /** Every run of this experiment so far, oldest first (infrastructure failures included). */
  measurements: Measurement[];
  /** What an experiment is compared against; ignored for a baseline. */
  baselineBpb: number | null;
  minDelta: number;
  /** Runs allowed in total when runs fail before training (fetch/prepare); default 3 (two reruns). */
  maxAttempts?: number;
}

export interface Decision {
  action: Action;
  /** val_bpb − baseline, rounded to 1e-9 (null for baselines, crashes and reruns). */
  delta: number | null;
  reasons: string[];
  /** The check run conclusion for this decision (meaningless for `rerun`: the check stays open). */
  conclusion: Conclusion;
}

export const DEFAULT_MAX_ATTEMPTS = 3;

/** val_bpb values are printed with 6 decimals; everything the policy says uses the same. */
export function fmtBpb(x: number): string {
  return x.toFixed(6);
}

function fmtSigned(x: number): string {
  return (x > 0 ? "+" : x < 0 ? "-" : "±") + Math.abs(x).toFixed(6);
}

/**
 * Deltas are differences of 6-decimal figures; rounding away float dust keeps the boundary
 * exact (0.9969 − 0.9979 is an improvement of exactly 0.001, not 0.0010000000000000009).
 */
function roundDelta(x: number): number {
  const r = Math.round(x * 1e9) / 1e9;
  return r === 0 ? 0 : r;
}

/** A run that stopped before training started: it says nothing about the change. */
export function isInfrastructureFailure(r: TrainerResult): boolean {
  return r.status !== "ok" && (r.stage === "fetch" || r.stage === "prepare");
}

/** A finished training with a usable figure. */
export function isMeasured(r: TrainerResult): r is TrainerResult & { val_bpb: number } {
  return r.status === "ok" && typeof r.val_bpb === "number" && Number.isFinite(r.val_bpb);
}

/** Mean val_bpb over the successful measurements, or null when there is none. */
export function meanValBpb(measurements: Measurement[]): number | null {
  const values = measurements.map((m) => m.result).filter(isMeasured).map((r) => r.val_bpb);
  if (values.length === 0) return null;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** How a delta reads to people and to the proposer. */
export function classifyOutcome(delta: number, minDelta: number): Outcome {
  const d = roundDelta(delta);
  if (-d > minDelta) return "better";
  if (d > minDelta) return "worse";
  return "within noise";
}

/** One sentence on why a training run failed, from the harness's status and reason. */
export function describeFailure(r: TrainerResult): string {
  const why = r.reason.trim().replace(/\.+$/, "");
  const detail = why ? `: ${why}` : "";
  const code = r.exit_code !== null && r.exit_code !== 0 ? ` (exit code ${r.exit_code})` : "";
  switch (r.status) {
    case "timeout":
      return `The run exceeded its time limit and was stopped${detail}.`;
    case "oom":
      return `The run ran out of memory${code}${detail}.`;
    case "nan":
      return `The loss became NaN or the run reported a failure${detail}.`;
    case "over_budget":
      return `The run broke its time budget, measured from outside, so its val_bpb is not a measurement${detail}.`;
    case "ok":
      return `The run finished without printing a usable val_bpb${detail}.`;
    default:
      return `The run crashed${code}${detail}.`;
  }
}

function failureConclusion(r: TrainerResult): Conclusion {
  return r.status === "timeout" ? "timed_out" : "failure";
}

function runsPhrase(n: number): string {
  return n === 1 ? "" : ` (mean of ${n} runs)`;
}

export function decide(input: DecideInput): Decision {
  const { measurements, minDelta } = input;
  const maxAttempts = input.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const last = measurements[measurements.length - 1];
  if (!last) {
    return { action: "rerun", delta: null, reasons: ["Nothing has been measured yet."], conclusion: "neutral" };
  }

  // Infrastructure first: a failed fetch or data preparation is retried, not held against the change.
  if (isInfrastructureFailure(last.result)) {
    const stage = last.result.stage;
    const why = last.result.reason.trim().replace(/\.+$/, "") || "no reason given";
    if (measurements.length < maxAttempts) {
      return {
        action: "rerun",
        delta: null,
        reasons: [
          `Attempt ${measurements.length} of ${maxAttempts} failed before training (${stage}: ${why}); the run is started again.`,
        ],
        conclusion: "neutral",
      };
    }
    return {
      action: "crash",
      delta: null,
      reasons: [`All ${maxAttempts} attempts failed before training; the last one at ${stage}: ${why}.`],
      conclusion: "failure",
    };
  }

  // Earlier infrastructure failures are ignored; any failed training counts against the change.
  const trainings = measurements.filter((m) => !isInfrastructureFailure(m.result));
  const failed = [...trainings].reverse().find((m) => !isMeasured(m.result));
  if (failed) {
    return {
      action: "crash",
      delta: null,
      reasons: [describeFailure(failed.result)],
      conclusion: failureConclusion(failed.result),
    };
  }
  const bpb = meanValBpb(trainings)!;
  const runs = runsPhrase(trainings.length);

  if (input.kind === "baseline") {
    return {
      action: "keep",
      delta: null,
      reasons: [`Baseline measured: val_bpb ${fmtBpb(bpb)}${runs}.`],
      conclusion: "success",
    };
  }

  if (input.baselineBpb === null) {
    // The controller measures a baseline before any experiment; reaching this is a bug there.
    throw new Error("decide: an experiment needs a baseline val_bpb to be compared against");
  }
  const base = input.baselineBpb;
  const delta = roundDelta(bpb - base);
  const outcome = classifyOutcome(delta, minDelta);
  const noise = `±${fmtBpb(minDelta)}`;
  if (outcome === "better") {
    return {
      action: "keep",
      delta,
      reasons: [
        `val_bpb ${fmtBpb(bpb)}${runs} is ${fmtBpb(-delta)} lower than the baseline ${fmtBpb(base)}, more than the noise threshold ${fmtBpb(minDelta)}.`,
      ],
      conclusion: "success",
    };
  }
  if (outcome === "within noise") {
    return {
      action: "discard",
      delta,
      reasons: [
        `val_bpb ${fmtBpb(bpb)}${runs} differs from the baseline ${fmtBpb(base)} by ${fmtSigned(delta)}, within noise (${noise}).`,
      ],
      conclusion: "neutral",
    };
  }
  return {
    action: "discard",
    delta,
    reasons: [`val_bpb ${fmtBpb(bpb)}${runs} is ${fmtBpb(delta)} worse than the baseline ${fmtBpb(base)}.`],
    conclusion: "failure",
  };
}

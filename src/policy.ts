// The decision policy: from the measurements of one experiment (or baseline) to keep / discard /
// crash / rerun / measure once more, with the reasons written into the PR. Pure, so every rule is
// tested directly.
//
// val_bpb is lower-is-better, so delta = val_bpb − baseline and a negative delta is progress.
//
// The sequential rule (min_delta: auto; `noise` settings in the config):
//
// - A baseline is measured `baseline_runs` times, with different seeds.
// - An experiment's first run is *promising* when its improvement exceeds 1.2816 standard errors
//   (a no-op change looks that good one time in ten); anything less is discarded at once, so
//   extra runs go to candidates only.
// - A promising change is measured again before any merge. After run k (k ≥ 2) it is kept when
//   the mean improvement of its k runs exceeds z(1 − α/L) standard errors, where α is
//   `false_keep_rate`, L = max_runs − 1 the number of looks (runs 2 … max_runs: a union bound
//   keeps the false-keep rate of a change that does nothing below α), and the standard error is
//   σ·√(1/k + 1/n_b) with n_b the baseline's runs. Otherwise it is measured again while it stays
//   promising and k < max_runs, and discarded after that.
// - σ is the pooled noise of the ledger (src/noise.ts). Until it is known (fewer than 2 degrees
//   of freedom) both bounds are `noise.floor`. A number for min_delta replaces both bounds.
// - With max_runs 1 a single run decides (no confirmation).

import { normalQuantile, type NoiseEstimate } from "./noise.js";
import type { DecisionThreshold, Measurement, TrainerResult } from "./types.js";

export type Action = "keep" | "discard" | "crash" | "rerun" | "more";
export type Conclusion = "success" | "neutral" | "failure" | "timed_out";
export type Outcome = "better" | "within noise" | "worse";

export interface DecideInput {
  kind: "baseline" | "experiment";
  /** Every run of this experiment so far, oldest first (infrastructure failures included). */
  measurements: Measurement[];
  /** What an experiment is compared against; ignored for a baseline. */
  baselineBpb: number | null;
  /** A fixed threshold, or "auto": from the noise. */
  minDelta: number | "auto";
  /** Runs allowed in total when runs fail before training (fetch/prepare); default 3 (two reruns). */
  maxAttempts?: number;
  /** How many successful runs the baseline's figure is the mean of; default 1. */
  baselineRuns?: number;
  /** σ of one run on this hardware, when the ledger knows it. */
  noise?: NoiseEstimate | null;
  /** Runs and false-keep rate (the config's `noise`); absent: one run decides. */
  settings?: { baselineRuns: number; maxRuns: number; falseKeepRate: number; floor: number };
}

/** The bar an experiment was held to (kept in its record, shown on every surface). */
export type Threshold = DecisionThreshold;

/** Improvement (in standard errors) that makes a first run promising: a no-op does it 1 time in 10. */
export const PROMISING_Z = 1.2816;

export interface Decision {
  action: Action;
  /** val_bpb − baseline, rounded to 1e-9 (null for baselines, crashes and reruns). */
  delta: number | null;
  reasons: string[];
  /** The check run conclusion for this decision (meaningless for `rerun`: the check stays open). */
  conclusion: Conclusion;
  /** The bar it was held to (experiments that were measured). */
  threshold?: Threshold;
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

/**
 * A run that stopped before training started, or that the machine failed (a full disk): it
 * says nothing about the change.
 */
export function isInfrastructureFailure(r: TrainerResult): boolean {
  return r.status !== "ok" && (r.infrastructure === true || r.stage === "fetch" || r.stage === "prepare");
}

/** How a failure of the infrastructure is described: before training, or around it. */
function beforeTraining(r: TrainerResult): string {
  return r.stage === "fetch" || r.stage === "prepare" ? "before training" : "outside the experiment";
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

const LEGACY = { baselineRuns: 1, maxRuns: 1, falseKeepRate: 0.01, floor: 0.01 };

/** The keep and promising bounds for an experiment of `runs` successful runs. */
export function thresholdFor(input: DecideInput, runs: number): Threshold {
  const s = input.settings ?? LEGACY;
  const nb = Math.max(1, input.baselineRuns ?? 1);
  const base = { runs, baselineRuns: nb, sigma: input.noise?.sigma ?? null, df: input.noise?.df ?? 0, hardware: input.noise?.hardware ?? null };
  if (typeof input.minDelta === "number") return { ...base, keep: input.minDelta, promising: input.minDelta, source: "min_delta" };
  if (!input.noise) return { ...base, keep: s.floor, promising: s.floor, source: "floor" };
  const looks = s.maxRuns >= 2 ? s.maxRuns - 1 : 1;
  const se = input.noise.sigma * Math.sqrt(1 / Math.max(1, runs) + 1 / nb);
  return { ...base, keep: normalQuantile(1 - s.falseKeepRate / looks) * se, promising: PROMISING_Z * se, source: "noise" };
}

/** The threshold in words: what it is and where it comes from. */
export function describeThreshold(t: Threshold, falseKeepRate = 0.01): string {
  switch (t.source) {
    case "min_delta":
      return `the threshold ${fmtBpb(t.keep)} (min_delta)`;
    case "floor":
      return `the threshold ${fmtBpb(t.keep)} (the floor: the noise is not known yet)`;
    case "noise":
      return (
        `the threshold ${fmtBpb(t.keep)} (for a false-keep rate of ${Number((falseKeepRate * 100).toPrecision(3))}%: ` +
        `σ ${fmtBpb(t.sigma!)} from ${t.df} degrees of freedom, ${t.runs} ${t.runs === 1 ? "run" : "runs"} against ${t.baselineRuns})`
      );
  }
}

export function decide(input: DecideInput): Decision {
  const { measurements } = input;
  const settings = input.settings ?? LEGACY;
  const maxAttempts = input.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  const last = measurements[measurements.length - 1];
  if (!last) {
    return { action: "rerun", delta: null, reasons: ["Nothing has been measured yet."], conclusion: "neutral" };
  }

  // Infrastructure first: a failed fetch or data preparation is retried, not held against the change.
  if (isInfrastructureFailure(last.result)) {
    const stage = last.result.stage;
    const why = last.result.reason.trim().replace(/\.+$/, "") || "no reason given";
    const failures = measurements.filter((m) => isInfrastructureFailure(m.result)).length;
    if (failures < maxAttempts) {
      return {
        action: "rerun",
        delta: null,
        reasons: [`Attempt ${failures} of ${maxAttempts} failed ${beforeTraining(last.result)} (${stage}: ${why}); the run is started again.`],
        conclusion: "neutral",
      };
    }
    return {
      action: "crash",
      delta: null,
      reasons: [`All ${maxAttempts} attempts failed ${beforeTraining(last.result)}; the last one at ${stage}: ${why}.`],
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
  const k = trainings.length;
  const runs = runsPhrase(k);

  if (input.kind === "baseline") {
    if (k < settings.baselineRuns) {
      return {
        action: "more",
        delta: null,
        reasons: [
          `Baseline run ${k} of ${settings.baselineRuns}: val_bpb ${fmtBpb(bpb)}${runs}; it is measured again with another seed, so that the noise is known.`,
        ],
        conclusion: "neutral",
      };
    }
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
  const improvement = -delta;
  const t = thresholdFor(input, k);
  const bar = describeThreshold(t, settings.falseKeepRate);
  const baseRuns = runsPhrase(t.baselineRuns);
  const minRuns = settings.maxRuns >= 2 ? 2 : 1;
  const verdict = (action: "keep" | "discard" | "more", reasons: string[], conclusion: Conclusion): Decision => ({
    action,
    delta,
    reasons,
    conclusion,
    threshold: t,
  });
  if (k >= minRuns && improvement > t.keep) {
    return verdict(
      "keep",
      [`val_bpb ${fmtBpb(bpb)}${runs} is ${fmtBpb(improvement)} lower than the baseline ${fmtBpb(base)}${baseRuns}, more than ${bar}.`],
      "success",
    );
  }
  if (k < settings.maxRuns && improvement > t.promising) {
    return verdict(
      "more",
      [
        `val_bpb ${fmtBpb(bpb)}${runs} is ${fmtBpb(improvement)} lower than the baseline ${fmtBpb(base)}${baseRuns}: promising, ` +
          `so it is measured again before any merge (run ${k + 1} of at most ${settings.maxRuns}).`,
      ],
      "neutral",
    );
  }
  if (classifyOutcome(delta, t.keep) === "worse") {
    return verdict("discard", [`val_bpb ${fmtBpb(bpb)}${runs} is ${fmtBpb(delta)} worse than the baseline ${fmtBpb(base)}${baseRuns}.`], "failure");
  }
  return verdict(
    "discard",
    [
      `val_bpb ${fmtBpb(bpb)}${runs} differs from the baseline ${fmtBpb(base)}${baseRuns} by ${fmtSigned(delta)}, within noise (±${fmtBpb(t.keep)}: ${bar}).`,
    ],
    "neutral",
  );
}

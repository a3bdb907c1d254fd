// What the ledger says about the past: the history the proposer is shown, the baseline an
// experiment on the current default branch is measured against, and the best figure so far.

import { classifyOutcome, describeFailure, isMeasured, meanValBpb } from "./policy.js";
import type { ExperimentRecord, HistoryEntry } from "./types.js";

/** The noise threshold used to tell "within noise" from "worse" when none is given. */
const DEFAULT_MIN_DELTA = 0.001;

function reasonOf(r: ExperimentRecord): string | null {
  if (r.decision && r.decision.reasons.length > 0) return r.decision.reasons.join(" ");
  if (r.state === "crashed") {
    const failed = [...r.measurements].reverse().find((m) => !isMeasured(m.result));
    if (failed) return describeFailure(failed.result);
  }
  return null;
}

function entryFor(r: ExperimentRecord, minDelta: number): HistoryEntry {
  const valBpb = meanValBpb(r.measurements);
  const delta =
    r.decision?.delta ?? (valBpb !== null && r.baselineBpb !== null && r.kind === "experiment" ? valBpb - r.baselineBpb : null);
  const base = { n: r.n, title: r.title, hypothesis: r.hypothesis, valBpb, delta, reason: reasonOf(r), treeHash: r.treeHash };
  if (r.state === "queued" || r.state === "running") return { ...base, verdict: "running", outcome: "pending" };
  // Held for review: its figure is not to be learned from until a person vouches for it.
  if (r.state === "review") return { ...base, verdict: "review", outcome: "pending" };
  if (r.state === "crashed") return { ...base, verdict: "crash", outcome: "crash" };
  if (r.kind === "baseline") return { ...base, verdict: "baseline", outcome: "baseline" };
  if (r.state === "superseded") {
    return { ...base, verdict: "superseded", outcome: delta === null ? "pending" : classifyOutcome(delta, r.decision?.threshold?.keep ?? minDelta) };
  }
  if (r.state === "kept") return { ...base, verdict: "keep", outcome: "better" };
  // Discarded: "within noise" is kept apart from "worse" so the proposer does not learn that a
  // harmless change hurt.
  return { ...base, verdict: "discard", outcome: delta === null ? "worse" : classifyOutcome(delta, r.decision?.threshold?.keep ?? minDelta) };
}

/**
 * Every experiment in order of n, finished and in flight, as the proposer sees it. A discarded
 * experiment is "within noise" or "worse" by `minDelta` (the setting in force now).
 */
export function buildHistory(records: ExperimentRecord[], minDelta: number = DEFAULT_MIN_DELTA): HistoryEntry[] {
  return [...records].sort((a, b) => a.n - b.n).map((r) => entryFor(r, minDelta));
}

/**
 * The val_bpb measured for exactly the tree `headTreeHash` (the editable files of the default
 * branch head): the successful measurements of baselines and kept experiments with that tree
 * hash, averaged; `n` is the latest such experiment. null means the head needs a baseline run.
 */
export function currentBaseline(
  records: ExperimentRecord[],
  headTreeHash: string,
  hardware?: string | null,
): { bpb: number; n: number; runs: number } | null {
  // A kept experiment was merged as measured, so its measurements are of the head's tree too.
  const matching = records.filter((r) => r.treeHash === headTreeHash && r.state === "kept");
  let measurements = matching.flatMap((r) => r.measurements.filter((m) => isMeasured(m.result)));
  // Compared on the same hardware when the baseline was measured there (noise is per hardware).
  if (hardware !== undefined) {
    const same = measurements.filter((m) => (m.result.hardware ?? null) === hardware);
    if (same.length) measurements = same;
  }
  const bpb = meanValBpb(measurements);
  if (bpb === null) return null;
  const n = Math.max(...matching.filter((r) => r.measurements.some((m) => isMeasured(m.result))).map((r) => r.n));
  return { bpb, n, runs: measurements.length };
}

/**
 * The lowest val_bpb of any kept tree (a baseline's, or a merged experiment's): the mean of every
 * run of that tree, however many records measured it. null when nothing was kept.
 */
export function bestBpb(records: ExperimentRecord[]): number | null {
  let best: number | null = null;
  for (const tree of new Set(records.filter((r) => r.state === "kept").map((r) => r.treeHash))) {
    const bpb = treeBpb(records, tree);
    if (bpb !== null && (best === null || bpb < best)) best = bpb;
  }
  return best;
}

/** The mean of every successful run of the kept records of one tree, or null. */
export function treeBpb(records: ExperimentRecord[], tree: string): number | null {
  return meanValBpb(records.filter((r) => r.state === "kept" && r.treeHash === tree).flatMap((r) => r.measurements));
}

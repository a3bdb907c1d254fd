// The labels of experiment PRs: the state of each at a glance, and a filter for people.
import type { ExperimentRecord } from "../types.js";

/** Every experiment PR carries this label; the ledger is `is:pr label:autoresearch`. */
export const LABEL = "autoresearch";

export const STATE_LABELS = {
  running: "autoresearch:running",
  review: "autoresearch:review",
  keep: "autoresearch:keep",
  discard: "autoresearch:discard",
  crash: "autoresearch:crash",
  baseline: "autoresearch:baseline",
  superseded: "autoresearch:superseded",
} as const;

export interface LabelSpec {
  name: string;
  color: string;
  description: string;
}

/** The labels the bot creates on a repository (for GitHubPort.ensureLabels). */
export const LABELS: LabelSpec[] = [
  { name: LABEL, color: "5319e7", description: "An autoresearch experiment" },
  { name: STATE_LABELS.running, color: "fbca04", description: "Experiment queued or training" },
  { name: STATE_LABELS.review, color: "d93f0b", description: "Improved, but touches what decides its score: a person must keep it" },
  { name: STATE_LABELS.keep, color: "0e8a16", description: "Improved val_bpb: kept" },
  { name: STATE_LABELS.discard, color: "c5def5", description: "No improvement beyond noise: discarded" },
  { name: STATE_LABELS.crash, color: "b60205", description: "The training run failed" },
  { name: STATE_LABELS.baseline, color: "1d76db", description: "Measurement of the default branch as it is" },
  { name: STATE_LABELS.superseded, color: "d4c5f9", description: "The default branch moved; not measured against it" },
];

/** The full label set an experiment PR should carry in its current state. */
export function labelsFor(r: Pick<ExperimentRecord, "kind" | "state">): string[] {
  const labels: string[] = [LABEL];
  if (r.kind === "baseline") labels.push(STATE_LABELS.baseline);
  switch (r.state) {
    case "queued":
    case "running":
      labels.push(STATE_LABELS.running);
      break;
    case "review":
      labels.push(STATE_LABELS.review);
      break;
    case "kept":
      labels.push(STATE_LABELS.keep);
      break;
    case "discarded":
      labels.push(STATE_LABELS.discard);
      break;
    case "crashed":
      labels.push(STATE_LABELS.crash);
      break;
    case "superseded":
      labels.push(STATE_LABELS.superseded);
      break;
  }
  return labels;
}

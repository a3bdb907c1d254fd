// What a person's command does to an experiment (`/autoresearch rerun` and `keep`, in a comment
// or with a check run's button): a transition of its record (src/record-state.ts), written back
// to its PR, with the reply that says what happened or why nothing did.
import { writeRecord } from "../ledger/index.js";
import { isMeasured } from "../policy.js";
import * as state from "../record-state.js";
import type { ExperimentPull, ExperimentRecord, GitHubPort } from "../types.js";
import type { Clock } from "../log.js";

export interface Outcome {
  ok: boolean;
  reply?: string;
}

/** Reopen a closed experiment PR: its branch is restored at the commit that was measured. */
async function reopen(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord): Promise<void> {
  await gh.restoreBranch(pull.headRef, r.headSha);
  await gh.updatePull(pull.number, { state: "open" });
  pull.state = "open";
}

/** Where a command acts: the experiment's PR and record, who asked, and the clock. */
export interface Target {
  gh: GitHubPort;
  pull: ExperimentPull;
  /** The record as it is to be written (a click adds its delivery id first). */
  record: ExperimentRecord;
  by: string;
  now: Clock;
}

const SETTLING = "This experiment is being settled right now; ask again once its PR is closed.";

/** `/autoresearch rerun`: measure the change once more; the decision uses every measurement. */
export async function rerun(t: Target): Promise<Outcome> {
  const { gh, pull, record: r, by } = t;
  if (r.kind === "baseline") return { ok: false, reply: "A baseline is not measured again on request; experiments are." };
  if (pull.merged) return { ok: false, reply: "This experiment is merged already; there is nothing to measure again." };
  if (pull.state === "open" && r.state === "review") {
    // Held for review: measured once more, and held again unless a person keeps it.
    await writeRecord(gh, pull, state.measureAgain(r, { undecide: true }), t.now());
    return { ok: true, reply: `@${by}: measuring ${r.headSha.slice(0, 7)} again; the decision will use every measurement.` };
  }
  if (pull.state === "open") {
    if (!state.inFlight(r)) return { ok: false, reply: SETTLING };
    await writeRecord(gh, pull, state.rerunOwed(r, (r.reruns ?? 0) + 1), t.now());
    return { ok: true, reply: `@${by}: once this run ends the change is measured once more, and the decision uses every measurement.` };
  }
  if (r.state !== "discarded" && r.state !== "crashed") {
    return { ok: false, reply: `This experiment is ${r.state}; only discarded or crashed experiments are measured again.` };
  }
  await reopen(gh, pull, r);
  // A crash says nothing about the change: only a run that measured it is kept.
  const next = state.measureAgain(r, { undecide: true, forget: r.state === "crashed" });
  await writeRecord(gh, pull, next, t.now());
  return {
    ok: true,
    reply: `@${by}: reopened to measure ${r.headSha.slice(0, 7)} again` + (next.measurements.length ? "; the decision will use both measurements." : "."),
  };
}

/** `/autoresearch keep`: merge the change once it is measured on the current head, unless it crashes. */
export async function adopt(t: Target): Promise<Outcome> {
  const { gh, pull, record: r, by } = t;
  if (r.kind === "baseline") return { ok: false, reply: "A baseline has nothing to merge." };
  if (pull.merged || r.state === "kept") return { ok: false, reply: "This experiment is kept already." };
  if (pull.state === "open" && r.state === "review") {
    // A person looked at what the review rules flagged and vouches for it: merged as measured
    // (or re-applied and measured again if the default branch moved).
    await writeRecord(gh, pull, state.keptBy(r, by, `Reviewed and kept by @${by} with /autoresearch keep.`), t.now());
    return { ok: true, reply: `@${by}: kept after review. It is merged as measured (re-applied and measured again first if the default branch moved).` };
  }
  if (pull.state === "open" && !state.inFlight(r)) return { ok: false, reply: SETTLING };
  const wasOpen = pull.state === "open";
  if (!wasOpen) await reopen(gh, pull, r);
  let next: ExperimentRecord;
  if (wasOpen) {
    // Still being measured: the decision will keep it unless the run crashes.
    next = state.adoptedBy(r, by);
  } else if (r.state === "discarded" && r.measurements.some((m) => isMeasured(m.result))) {
    // Measured and fine: merged as measured, or re-applied and measured again if the default branch moved.
    next = state.keptBy(r, by, `Adopted by @${by} with /autoresearch keep.`);
  } else {
    next = state.adoptedBy(state.measureAgain(r, { forget: true }), by);
  }
  await writeRecord(gh, pull, next, t.now());
  return {
    ok: true,
    reply:
      `@${by}: adopted. The change is merged once it is measured on the current default branch ` +
      "(if the branch moved it is re-applied and measured again first); only a crash stops it.",
  };
}

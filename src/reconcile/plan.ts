// Plan: what a pass does, decided from its snapshot alone. No I/O and no clock here: every
// function takes the snapshot (and what was planned so far) and returns the steps to carry out,
// which src/reconcile/act.ts does through the ports. A plan assumes its steps succeed; a step
// that fails stops its experiment's later steps, and the next pass plans again from what GitHub
// and the runner then say.
import { applyEdits } from "../edits.js";
import { currentBaseline } from "../history.js";
import { treeHash } from "../ledger/index.js";
import { defuse, oneLine } from "../markdown.js";
import { estimateNoise } from "../noise.js";
import { decide, isMeasured } from "../policy.js";
import * as state from "../record-state.js";
import { checkRunFor, UNSANDBOXED, VAL_BPB_CHECK } from "../checks.js";
import { inWindow, nightKey } from "../config.js";
import { describeFlags, outlierFlag, scanChange } from "../review.js";
import { joinPath, runIdWith, type Snapshot } from "./snapshot.js";
import type { CheckRunSpec, ExperimentPull, ExperimentRecord, RunObservation, TrainerResult } from "../types.js";

/** One thing to do for an experiment; its steps run in order and stop at the first failure. */
export type Step =
  /** Download its commit and hand the run to the runner (idempotent by run id). */
  | { do: "submit"; record: ExperimentRecord; first?: boolean }
  | { do: "cancel"; runId: string }
  /** Let the runner forget a run whose result is recorded (`quiet`: a failure is not an error). */
  | { do: "cleanup"; runId: string; quiet?: boolean }
  | { do: "check"; check: CheckRunSpec }
  /** The record, its labels and (with `close`) the closing of its PR, in one write. */
  | { do: "write"; record: ExperimentRecord; close?: boolean; finished?: Finished }
  | { do: "close" }
  /** Merge the measured commit, unless the default branch moved since the snapshot. */
  | { do: "merge"; sha: string; title: string; message: string }
  /** Commit the re-applied files on the PR's branch, then write the record with the new commit. */
  | { do: "reapply"; record: ExperimentRecord; files: Record<string, string>; message: string }
  | { do: "log"; level: "info" | "warn"; msg: string };

export interface Finished {
  n: number;
  verdict: string;
  valBpb: number | null;
}

/** What the plan has decided so far in this pass: later experiments are planned on top of it. */
export interface Planned {
  records: ExperimentRecord[];
  /** Experiments this pass opened (their PRs are not in the snapshot). */
  opened: number[];
  /** A merge is planned: the head the snapshot read is stale for the rest of the pass. */
  moved: boolean;
  /**
   * Experiments whose run has finished, measured, while their base's first baseline is still
   * being measured: they are decided once it is, and hold no slot meanwhile.
   */
  parked: Set<number>;
}

export function planned(snap: Snapshot): Planned {
  return { records: [...snap.records], opened: [], moved: false, parked: new Set() };
}

function update(w: Planned, r: ExperimentRecord): void {
  const i = w.records.findIndex((x) => x.n === r.n);
  if (i >= 0) w.records[i] = r;
  else w.records.push(r);
}

/** The run of `r`'s current attempt, as the snapshot saw it (a run this pass asks for: missing). */
function observed(snap: Snapshot, r: ExperimentRecord): RunObservation {
  const runId = runIdOf(snap, r);
  return snap.runs.get(runId) ?? { phase: "missing", runId };
}

export function runIdOf(snap: Pick<Snapshot, "runIdPrefix">, r: Pick<ExperimentRecord, "n" | "attempt">): string {
  return runIdWith(snap.runIdPrefix, r);
}

/** A decided record whose PR closes with the write that records it (a baseline has nothing to merge). */
export function closesWithRecord(r: ExperimentRecord): boolean {
  return r.state === "discarded" || r.state === "crashed" || r.state === "superseded" || (r.kind === "baseline" && r.state === "kept");
}

/**
 * A queued experiment whose base has no baseline yet. It holds no slot: it trains alongside
 * that baseline while a slot is free, else waits for it.
 */
export function waitsForBaseline(records: ExperimentRecord[], r: ExperimentRecord): boolean {
  return r.kind === "experiment" && r.baselineBpb === null && !currentBaseline(records, r.baseTreeHash);
}

/** A baseline of `tree` is queued or being measured. */
function baselineInFlight(records: ExperimentRecord[], tree: string): boolean {
  return records.some((x) => x.kind === "baseline" && x.baseTreeHash === tree && state.inFlight(x));
}

/** The largest improvement (baseline − mean, in bpb) of any experiment kept so far; null: none. */
function largestKept(records: ExperimentRecord[]): number | null {
  const kept = records.filter((x) => x.kind === "experiment" && x.state === "kept" && x.decision?.delta != null);
  return kept.length ? Math.max(...kept.map((x) => -(x.decision!.delta as number))) : null;
}

// ------------------------------------------------------------------ one experiment

/** The steps that move one experiment on, from the snapshot and what was planned before it. */
export function planPull(w: Planned, snap: Snapshot, pull: ExperimentPull): Step[] {
  const r = pull.record;
  if (!r) return [];
  const steps = pull.state === "open" ? planOpen(w, snap, pull, r) : planClosed(snap, r);
  return steps;
}

/** A PR a person closed before its experiment was decided: discarded, its run stopped. */
function planClosed(snap: Snapshot, r: ExperimentRecord): Step[] {
  if (r.state === "review") {
    return [{ do: "write", record: state.discarded(r, "The pull request was closed while it was held for review; it is not merged.", { keepReasons: true }) }];
  }
  if (!state.inFlight(r)) return [];
  const obs = observed(snap, r);
  const steps: Step[] = [];
  if (obs.phase === "running" || obs.phase === "pending") {
    steps.push({ do: "log", level: "info", msg: `closed while running; cancelling ${obs.runId}` }, { do: "cancel", runId: obs.runId });
  }
  steps.push({ do: "write", record: state.discarded(r, "The pull request was closed before its run finished; the run was cancelled.") });
  return steps;
}

/** Where an experiment's plan goes after a step: on (its record moved on), done for this pass, or decided. */
type Next = { r: ExperimentRecord; then: "on" | "done" | "decided" };

function planOpen(w: Planned, snap: Snapshot, pull: ExperimentPull, start: ExperimentRecord): Step[] {
  const steps: Step[] = [];
  let r = start;
  // A loop, not recursion: a run that asks for another measurement starts it in the same pass.
  for (;;) {
    const next = r.state === "queued" ? planQueued(w, snap, pull, r, steps) : r.state === "running" ? planRunning(w, snap, pull, r, steps) : null;
    if (!next) break;
    r = next.r;
    if (next.then === "done") return steps;
    if (next.then === "decided") break;
  }
  update(w, r);

  // A decided experiment whose PR is still open: carry out the decision (again, if a previous
  // pass stopped half way). Its branch is deleted later, when the write budget has room.
  const closing = steps.some((s) => s.do === "write" && s.close);
  if (r.state === "kept" && r.kind === "experiment") steps.push(...planKeep(w, snap, pull, r));
  else if (closesWithRecord(r) && !closing) steps.push({ do: "close" });
  return steps;
}

/** A queued experiment: submitted when its baseline is known and the runner does not have it. */
function planQueued(w: Planned, snap: Snapshot, pull: ExperimentPull, queued: ExperimentRecord, steps: Step[]): Next {
  let r = queued;
  if (r.kind === "experiment" && r.baselineBpb === null) {
    // Measured against the tree it was built on: wait until that tree has a baseline, or train
    // now while that baseline is being measured (and be decided once it is).
    const base = currentBaseline(w.records, r.baseTreeHash ?? "");
    const alongside = baselineInFlight(w.records, r.baseTreeHash) && (observed(snap, r).phase !== "missing" || slotFree(w, snap, r.n));
    if (base) r = { ...r, baselineBpb: base.bpb, baselineN: base.n };
    else if (!alongside) {
      // Its base has no baseline yet. If the default branch moved on again meanwhile, that
      // baseline will never be measured: move the change to the current head instead.
      if (r.baseSha !== snap.headSha && r.baseTreeHash !== snap.headTreeHash && !w.moved) {
        steps.push(...planReapply(w, snap, pull, r, "before this experiment could be measured", "It was waiting for a baseline, but"));
      }
      return { r, then: "done" };
    }
  }
  // The record is not rewritten when its run starts (GitHub counts every write); the runner
  // knows whether this attempt was submitted in an earlier pass.
  if (observed(snap, r).phase !== "missing") return { r: state.started(r), then: "on" };
  if (snap.pausedBy) return { r, then: "done" }; // submitted again on /autoresearch resume
  steps.push({ do: "submit", record: r, first: true }, { do: "log", level: "info", msg: `training ${r.headSha.slice(0, 7)} as ${runIdOf(snap, r)}` });
  update(w, state.started(r));
  return { r, then: "done" };
}

/** A running experiment: its run lost, paused, still training, or finished and decided. */
function planRunning(w: Planned, snap: Snapshot, pull: ExperimentPull, r: ExperimentRecord, steps: Step[]): Next {
  const runId = runIdOf(snap, r);
  const obs = observed(snap, r);
  if (obs.phase === "missing") {
    // The runner lost it (restart with a wiped run directory, node drained…): run it again.
    steps.push({ do: "log", level: "warn", msg: `run ${runId} is unknown to the runner; submitting it again` }, { do: "submit", record: r });
    update(w, r);
    return { r, then: "done" };
  }
  if (obs.phase !== "finished" && snap.pausedBy) {
    // Paused: give the GPU back now. The experiment goes back to the queue and is measured
    // from the start, under a new run id, once the loop is resumed.
    const again = state.measureAgain(r);
    const summary =
      (snap.unsandboxed ? `${UNSANDBOXED}\n\n` : "") +
      `@${snap.pausedBy} paused the loop. This experiment is measured again from the start after \`/autoresearch resume\`.`;
    steps.push(
      { do: "cancel", runId },
      {
        do: "check",
        check: {
          name: VAL_BPB_CHECK,
          headSha: r.headSha,
          externalId: runId,
          status: "completed",
          conclusion: "cancelled",
          output: { title: "Cancelled: the loop was paused", summary },
        },
      },
      { do: "write", record: again },
      { do: "cleanup", runId, quiet: true },
      { do: "log", level: "info", msg: `paused; cancelled ${runId}, queued again` },
    );
    update(w, again);
    return { r: again, then: "done" };
  }
  if (obs.phase !== "finished") {
    update(w, r);
    return { r, then: "done" };
  }
  const foreign = foreignResult(obs.result, runId, r.headSha);
  if (foreign) {
    // A result that is not this run's (a run id reused after a lost record, a stale run
    // folder): never recorded. The run is dropped and this experiment measured anew.
    steps.push(
      { do: "log", level: "warn", msg: `the result of ${runId} ${foreign}; discarding it and measuring ${r.headSha.slice(0, 7)} again` },
      { do: "cleanup", runId },
      { do: "submit", record: r },
    );
    update(w, r);
    return { r, then: "done" };
  }
  return planResult(w, snap, pull, r, obs.result, runId, steps);
}

/** A finished run of a running experiment: recorded, then measured again or decided. */
function planResult(w: Planned, snap: Snapshot, pull: ExperimentPull, running: ExperimentRecord, result: TrainerResult, runId: string, steps: Step[]): Next {
  let r = running;
  if (!r.measurements.some((m) => m.runId === runId)) {
    r = { ...r, measurements: [...r.measurements, { runId, sha: r.headSha, result, finishedAt: snap.at.toISOString() }] };
  }
  // The ledger's noise includes this run from here on (a baseline's repeated runs measure it).
  update(w, r);
  // Compared with every run of the baseline's tree on this run's hardware, and with the noise
  // the ledger has measured there (this experiment's own repeated runs included).
  const hardware = result.hardware ?? null;
  const baseline = r.kind === "experiment" ? currentBaseline(w.records, r.baseTreeHash, hardware) : null;
  if (baseline) r = { ...r, baselineBpb: baseline.bpb, baselineN: baseline.n };
  if (r.kind === "experiment" && r.baselineBpb === null && isMeasured(result)) {
    // Trained alongside its base's first baseline, which is not measured yet: its run waits,
    // finished, and it is decided on the pass that has the baseline. If that baseline will never
    // come (it crashed or was closed, and the default branch has moved on), the change moves to
    // the current head instead.
    if (!baselineInFlight(w.records, r.baseTreeHash) && r.baseTreeHash !== snap.headTreeHash && !w.moved) {
      steps.push(...planReapply(w, snap, pull, r, "before this experiment could be compared", "It was measured, but its baseline never was, and"));
      return { r, then: "done" };
    }
    w.parked.add(r.n);
    update(w, r);
    return { r, then: "done" };
  }
  const noise = estimateNoise(w.records, hardware);
  const d = decide({
    kind: r.kind,
    measurements: r.measurements,
    baselineBpb: r.baselineBpb,
    baselineRuns: baseline?.runs ?? 1,
    minDelta: snap.config.minDelta,
    noise,
    settings: snap.config.noise,
  });
  if (d.action === "more" || d.action === "rerun") {
    // A baseline measures the noise and a promising change is confirmed before any merge (the
    // next run starts now); a failure of the infrastructure is tried again on the next pass.
    // The check run is written once, with the decision; the record keeps every run meanwhile.
    r = state.measureAgain(r);
    steps.push({ do: "write", record: r }, { do: "cleanup", runId }, { do: "log", level: "info", msg: `measuring again: ${d.reasons.join(" ")}` });
    update(w, r);
    return { r, then: d.action === "more" ? "on" : "done" };
  }
  if ((r.reruns ?? 0) > 0 && d.action !== "crash") {
    // Measured again on request (/autoresearch rerun): the decision waits for every run, and
    // the next run is submitted now rather than on the next trigger.
    r = state.measureAgain(state.rerunOwed(r, (r.reruns ?? 1) - 1));
    steps.push({ do: "write", record: r }, { do: "cleanup", runId }, { do: "log", level: "info", msg: "measuring again on request" });
    update(w, r);
    return { r, then: "on" };
  }
  if (r.reruns) r = state.rerunOwed(r, 0); // a crash decides at once; no further runs are owed
  let verdict: "keep" | "discard" | "crash" = d.action;
  const reasons = [...d.reasons];
  if (r.adoptedBy && verdict === "discard") {
    // Adopted with /autoresearch keep: merged as measured unless the run crashed.
    verdict = "keep";
    reasons.push(`Kept anyway: adopted by @${r.adoptedBy} with /autoresearch keep.`);
  }
  if (verdict === "keep" && r.kind === "experiment" && !r.adoptedBy && d.delta !== null) {
    const outlier = outlierFlag(-d.delta, noise?.sigma ?? null, largestKept(w.records));
    if (outlier) r = { ...r, flags: [...(r.flags ?? []).filter((f) => f.rule !== "outlier"), outlier] };
  }
  const held = verdict === "keep" && r.kind === "experiment" && (r.flags?.length ?? 0) > 0 && !r.adoptedBy;
  if (held) {
    reasons.push(
      `Held for review, not merged: ${r.flags!.some((f) => f.lines.length) ? "the change touches " : "it is "}${describeFlags(r.flags!)}. ` +
        "Someone with write access merges it with /autoresearch keep, or closes the pull request.",
    );
  }
  r = state.decided(r, { verdict, delta: d.delta, reasons, ...(d.threshold ? { threshold: d.threshold } : {}) }, held);
  const last = r.measurements[r.measurements.length - 1];
  steps.push(
    { do: "check", check: checkRunFor(r, runId, snap.config, { unsandboxed: snap.unsandboxed }) },
    { do: "write", record: r, close: closesWithRecord(r), finished: { n: r.n, verdict: held ? "review" : verdict, valBpb: last?.result.val_bpb ?? null } },
    { do: "cleanup", runId },
    { do: "log", level: "info", msg: `${held ? "held for review" : verdict}: ${reasons.join(" ")}` },
  );
  return { r, then: "decided" };
}

/**
 * Why a finished run's result does not belong to this experiment's run, or null when it does:
 * the harness reports the run id and the commit it measured (it checks the archive it unpacked
 * against that commit), and both must be the ones the record expects.
 */
export function foreignResult(result: { runId?: string | null; commit?: string | null }, runId: string, sha: string): string | null {
  if (result.runId != null && result.runId !== runId) return `is run ${result.runId}'s`;
  if (result.commit && result.commit !== sha) {
    return `measured ${result.commit.slice(0, 12)}, not ${sha.slice(0, 12)}`;
  }
  return null;
}

/** A kept experiment: merged when it is the measured commit on the current head, else re-applied. */
function planKeep(w: Planned, snap: Snapshot, pull: ExperimentPull, r: ExperimentRecord): Step[] {
  // Another experiment is merged earlier in this pass: the head read at the start is stale, and
  // merging this one now would merge a combination nobody measured. The next pass reads the
  // new head and re-applies this change on it.
  if (w.moved) return [];
  if (r.baseSha === snap.headSha && pull.headSha === r.headSha) {
    // Several slots: experiments from the same base may finish together. Merge the best keep
    // first; the others are then re-applied on the new head and measured again.
    const better = betterKeepFromSameBase(w, snap, r);
    if (better !== null) return [{ do: "log", level: "info", msg: `kept, but #${better} from the same base did better; it is merged first` }];
    w.moved = true;
    return [{ do: "merge", sha: r.headSha, title: defuse(oneLine(`${r.title} (#${pull.number})`, 200)), message: mergeMessage(r) }];
  }
  // The default branch moved while it ran: re-apply the edits on the new head and measure
  // again, or close it as superseded when they no longer apply.
  return planReapply(w, snap, pull, r, "while this experiment ran", "It improved val_bpb, but");
}

/** val_bpb − baseline of an experiment: its decision's delta, or its finished run's result. */
function deltaOf(w: Planned, snap: Snapshot, r: ExperimentRecord): number | null {
  if (r.state === "kept") return r.decision?.delta ?? null;
  // One that trained alongside its baseline has the baseline only from this pass on.
  const base = r.baselineBpb ?? currentBaseline(w.records, r.baseTreeHash)?.bpb ?? null;
  if (!state.inFlight(r) || base === null) return null;
  const obs = observed(snap, r);
  if (obs.phase !== "finished" || obs.result.status !== "ok" || obs.result.val_bpb === null) return null;
  return obs.result.val_bpb - base;
}

/**
 * The PR number of another open experiment built on the same base that is kept, or finished
 * and about to be decided, with a lower val_bpb than `r`; null when `r` is the best.
 */
function betterKeepFromSameBase(w: Planned, snap: Snapshot, r: ExperimentRecord): number | null {
  const mine = r.decision?.delta;
  if (mine === null || mine === undefined) return null;
  for (const p of snap.pulls) {
    const o = w.records.find((x) => x.n === p.record?.n);
    if (!o || o.n === r.n || p.state !== "open" || o.kind !== "experiment" || o.baseSha !== r.baseSha) continue;
    if (o.state !== "kept" && !state.inFlight(o)) continue;
    const theirs = deltaOf(w, snap, o);
    if (theirs !== null && (theirs < mine || (theirs === mine && o.n < r.n))) return p.number;
  }
  return null;
}

/**
 * Put the experiment's edits on the current head of the default branch as a new commit to be
 * measured (state queued), or close it as superseded when they no longer apply.
 */
function planReapply(w: Planned, snap: Snapshot, pull: ExperimentPull, r: ExperimentRecord, when: string, lead: string): Step[] {
  const applied = applyEdits(snap.files, r.edits, snap.config.editable);
  if (!applied.ok) {
    const gone = state.superseded(r, `${lead} ${snap.defaultBranch} moved and the change no longer applies: ${applied.error}`);
    update(w, gone);
    return [{ do: "write", record: gone, close: true }];
  }
  const base = currentBaseline(w.records, snap.headTreeHash);
  const next = state.reapplied(r, {
    baseSha: snap.headSha,
    baseTreeHash: snap.headTreeHash,
    headSha: "", // the commit act makes
    treeHash: treeHash(applied.files),
    flags: scanChange(snap.files, applied.files),
    baseline: base ? { bpb: base.bpb, n: base.n } : null,
    note: `${snap.defaultBranch} moved to ${snap.headSha.slice(0, 7)} ${when}: the change was re-applied on it and is measured again before any merge.`,
  });
  update(w, next);
  return [{ do: "reapply", record: next, files: prefixed(snap.config.workdir, applied.files), message: commitMessage(next) }];
}

export function prefixed(workdir: string, files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([p, t]) => [joinPath(workdir, p), t]));
}

/** The last line of every experiment commit's message names its experiment. */
const EXPERIMENT_TRAILER = "autoresearch experiment";

// Commit messages quote the proposal (an LLM's words): defused, so that no mention or marker
// travels into the repository's history in the bot's name.
export function commitMessage(r: ExperimentRecord): string {
  return defuse(`${oneLine(r.title, 200)}\n\n${r.hypothesis}\n\n${EXPERIMENT_TRAILER} ${r.n} (proposed by ${r.proposer})`);
}

/** Whether a commit message is the one commitMessage writes for experiment n. */
export function isExperimentCommit(message: string, n: number): boolean {
  return new RegExp(`\\n${EXPERIMENT_TRAILER} ${n} \\(proposed by [^\\n]*\\)\\n?$`).test(message);
}

function mergeMessage(r: ExperimentRecord): string {
  return defuse(`${r.hypothesis}\n\n${r.decision?.reasons.join(" ") ?? ""}`.trim());
}

// ------------------------------------------------------------------ the next experiment

/** What the pass does about a new experiment, once every open one has moved on. */
export type StartPlan =
  | { start: false; waiting: string; again?: boolean; askAhead?: boolean }
  /** The write budget cannot carry one more experiment now (`need` writes). */
  | { start: false; waiting: null; budgetNeed: number }
  | { start: "baseline"; record: ExperimentRecord; inFlight: number }
  | { start: "proposal"; n: number; inFlight: number };

export interface BudgetView {
  hourLeft: number;
  /** The branch and its commit go by git push, not as API writes (src/github/git-wire.ts). */
  refsByGit?: boolean;
}

/**
 * API writes an experiment costs from proposal to decision: PR 1, check run 1, record 1, merge
 * 1, and through the REST API also its commit 2 (the branch, then the file).
 */
export function writesPerExperiment(refsByGit: boolean): number {
  return refsByGit ? 4 : 6;
}
/** Writes kept back for each experiment in flight: its check run, record, merge and one confirmation. */
export const RESERVE_PER_RUN = 4;

/**
 * What starts next on the head: a proposal (its tree has a baseline that is not due again, or
 * one is being measured right now), else a baseline (none yet, or one is due again).
 */
export function nextStart(w: Planned, snap: Snapshot, busy = holdingSlots(w, snap)): { kind: "proposal" } | { kind: "baseline"; again: string | null } {
  const baseline = currentBaseline(w.records, snap.headTreeHash);
  const measuring = busy.some((r) => r.kind === "baseline" && r.baseTreeHash === snap.headTreeHash);
  // While the head's baseline is measured (its first, or again), experiments on it train
  // alongside: no slot waits for the baseline's runs, and each is decided once it is measured.
  if (measuring) return { kind: "proposal" };
  const again = baseline ? rebaselineReason(w.records, snap.headTreeHash, snap.config.noise.rebaselineEvery) : null;
  if (baseline && !again) return { kind: "proposal" };
  return { kind: "baseline", again };
}

/** The next experiment number: after every record, and after every PR whose record is unreadable. */
export function nextNumber(snap: Pick<Snapshot, "unreadable">, records: ExperimentRecord[]): number {
  return Math.max(0, ...records.map((r) => r.n), ...snap.unreadable) + 1;
}

/**
 * Experiments that hold a slot. One waiting for its base's baseline does not (that baseline must
 * start), nor does one whose run has finished and waits for the baseline it trained alongside.
 */
export function holdingSlots(w: Planned, snap: Snapshot): ExperimentRecord[] {
  const open = new Set([...snap.pulls.filter((p) => p.state === "open" && p.record).map((p) => p.record!.n), ...w.opened]);
  // One this pass opened was started for a free slot, with or without its baseline.
  const holds = (r: ExperimentRecord) => r.state === "running" || (r.state === "queued" && (w.opened.includes(r.n) || !waitsForBaseline(w.records, r)));
  return w.records.filter((r) => open.has(r.n) && !w.parked.has(r.n) && holds(r));
}

/**
 * Experiments held in flight at once: one per slot (the config's slots, at most the runner's),
 * and where the runner holds runs until a slot frees, `queue_ahead` more submitted behind them,
 * so that a slot whose run ends starts the next at once instead of after a pass has opened it.
 */
export function capacity(snap: Pick<Snapshot, "config" | "runnerSlots" | "runnerQueues">): number {
  return slotCount(snap) + (snap.runnerQueues ? snap.config.queueAhead : 0);
}

/** Runs that train at once: the config's slots, at most the runner's. */
export function slotCount(snap: Pick<Snapshot, "config" | "runnerSlots">): number {
  return Math.min(snap.config.slots, snap.runnerSlots);
}

/** A slot (or a place in the runner's queue) is free for experiment n (not counting n itself). */
function slotFree(w: Planned, snap: Snapshot, n: number): boolean {
  return holdingSlots(w, snap).filter((r) => r.n !== n).length < capacity(snap);
}

/** Whether a new experiment starts, and which: the baseline when the head's tree needs one, else a proposal. */
export function planStart(w: Planned, snap: Snapshot, moved: boolean, budget: BudgetView | null): StartPlan {
  const c = snap.config;
  if (moved) return { start: false, waiting: `${snap.defaultBranch} moved; continuing on the new head`, again: true };
  if (!c.enabled) return { start: false, waiting: "disabled in config" };
  if (snap.pausedBy) return { start: false, waiting: `paused by @${snap.pausedBy} (/autoresearch resume starts the experiments again)` };
  if (snap.control.malformed) {
    return {
      start: false,
      waiting:
        `the steering record in issue #${snap.control.issue?.number ?? "?"} cannot be read (${snap.control.malformed}); ` +
        "no experiment starts until it is fixed, so that no pause, idea or note in it is lost (edit the issue, or delete its hidden record to start afresh)",
    };
  }
  const busy = holdingSlots(w, snap);
  const slots = slotCount(snap);
  const room = capacity(snap);
  if (busy.length >= room) {
    // queue_ahead where the runner would start every run at once (Kubernetes): said, not obeyed.
    const queued =
      room > slots
        ? ` and ${room - slots} experiment(s) queued behind them`
        : c.queueAhead > 0
          ? ` (queue_ahead is not used: the ${snap.runnerName} runner starts every run it is given)`
          : "";
    return { start: false, waiting: `all ${c.slots} slot(s) busy${queued}`, askAhead: true };
  }
  if (c.night?.window && !inWindow(c, snap.at)) return { start: false, waiting: `outside the nightly window ${c.night.window}` };
  if (c.night?.maxExperiments && startedTonight(snap, w.records) >= c.night.maxExperiments) {
    return { start: false, waiting: `reached max_experiments (${c.night.maxExperiments}) for tonight` };
  }
  // GitHub's write budget: a new experiment starts only when the hour can carry it and what
  // the experiments in flight still have to write. Held back, not failed.
  const need = writesPerExperiment(budget?.refsByGit ?? false) + RESERVE_PER_RUN * (busy.length + w.parked.size);
  if (budget && budget.hourLeft < need) return { start: false, waiting: null, budgetNeed: need };

  // Experiments measured ahead of their baseline wait for it: at most twice the slots of them
  // (the baseline's further runs, by default two), so that a night of short runs does not pile
  // up undecided experiments while the baseline is measured.
  if (w.parked.size >= 2 * slots) {
    return { start: false, waiting: `${w.parked.size} experiments measured ahead of the baseline wait for it` };
  }
  const n = nextNumber(snap, w.records);
  const next = nextStart(w, snap, busy);
  if (next.kind === "proposal") return { start: "proposal", n, inFlight: busy.length };
  const again = next.again;
  return {
    start: "baseline",
    inFlight: busy.length,
    record: {
      ...newRecord(snap, n),
      kind: "baseline",
      title: again ? "Baseline: measure the current train.py again" : "Baseline: measure the current train.py",
      hypothesis: again
        ? `No change. The default branch is measured again (${again}): comparisons use every run of it, and the noise stays up to date.`
        : "No change. This measures the current default branch so that the following experiments have a val_bpb to beat.",
      proposer: "baseline",
      headSha: "",
      edits: [],
      treeHash: snap.headTreeHash,
      baselineBpb: null,
    },
  };
}

/** Experiments started in the night the snapshot's time is in (max_experiments counts them). */
export function startedTonight(snap: Pick<Snapshot, "config" | "at">, records: ExperimentRecord[]): number {
  const key = nightKey(snap.config, snap.at);
  return records.filter((r) => nightKey(snap.config, new Date(r.createdAt)) === key).length;
}

/** What every new record starts with. */
export function newRecord(snap: Snapshot, n: number) {
  const at = snap.at.toISOString();
  return {
    v: 1 as const,
    n,
    baseSha: snap.headSha,
    baseTreeHash: snap.headTreeHash,
    guidanceSha: snap.guidance.sha,
    attempt: 1,
    state: "queued" as const,
    measurements: [],
    decision: null,
    createdAt: at,
    updatedAt: at,
  };
}

/**
 * Why the head's tree should be measured again although it has a baseline, or null: every
 * `every` experiments built on it since it was last measured, and whenever the latest run came
 * from other hardware than the baseline's runs (noise and figures are per hardware).
 */
export function rebaselineReason(records: ExperimentRecord[], headTreeHash: string, every: number): string | null {
  const measuredHead = records.filter((r) => r.treeHash === headTreeHash && r.state === "kept" && r.measurements.some((m) => isMeasured(m.result)));
  if (!measuredHead.length) return null;
  const lastN = Math.max(...measuredHead.map((r) => r.n));
  const since = records.filter((r) => r.kind === "experiment" && r.n > lastN && r.baseTreeHash === headTreeHash).length;
  if (since >= every) return `${since} experiments since it was last measured`;
  const runs = records.flatMap((r) => r.measurements.filter((m) => isMeasured(m.result)));
  const latest = runs.reduce<(typeof runs)[number] | null>((a, m) => (!a || m.finishedAt > a.finishedAt ? m : a), null);
  const hardware = latest?.result.hardware;
  if (hardware && !measuredHead.some((r) => r.measurements.some((m) => m.result.hardware === hardware))) {
    return `the runs now come from ${hardware}, where it was never measured`;
  }
  return null;
}

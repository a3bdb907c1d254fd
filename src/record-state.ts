// The experiment record's state machine: every change of a record's state is one of these
// transitions, and nothing else sets `state`. Each returns a new record (the one it is given is
// left as it was), so a plan can be built from a snapshot and thrown away.
//
//   queued ──submit──▶ running ──decide──▶ kept | review | discarded | crashed
//     ▲                  │                   │
//     └── measureAgain ◀─┘ (another run,     ├─ review ──keep anyway──▶ kept
//     └── reapplied (the head moved)         └─ closed by a person ──▶ discarded
//   any open state ──the change no longer applies──▶ superseded
import type { ExperimentRecord, Verdict } from "./types.js";

type Decision = NonNullable<ExperimentRecord["decision"]>;

/** A run of it is wanted (queued) or under way (running). */
export function inFlight(r: Pick<ExperimentRecord, "state">): boolean {
  return r.state === "queued" || r.state === "running";
}

/** Its run was submitted. Not written to GitHub: the runner knows which attempts it has. */
export function started(r: ExperimentRecord): ExperimentRecord {
  return { ...r, state: "running" };
}

export interface AgainOptions {
  /** Forget the decision (a held or decided experiment measured again). */
  undecide?: boolean;
  /** Forget the measurements too (a crash says nothing about the change; the tree changed). */
  forget?: boolean;
}

/** Measure it once more, under the next attempt's run id (and so a seed of its own). */
export function measureAgain(r: ExperimentRecord, o: AgainOptions = {}): ExperimentRecord {
  return {
    ...r,
    attempt: r.attempt + 1,
    state: "queued",
    ...(o.undecide || o.forget ? { decision: null } : {}),
    ...(o.forget ? { measurements: [] } : {}),
  };
}

/** Further measurements owed on request (/autoresearch rerun), before the decision. */
export function rerunOwed(r: ExperimentRecord, owed: number): ExperimentRecord {
  return { ...r, reruns: owed };
}

/** The policy's verdict, carried out: kept, held for review, crashed or discarded. */
export function decided(r: ExperimentRecord, decision: Decision, held: boolean): ExperimentRecord {
  const state = held ? "review" : decision.verdict === "keep" ? "kept" : decision.verdict === "crash" ? "crashed" : "discarded";
  return { ...r, decision, state };
}

/** Discarded without a (further) measurement; the reason is added to the record's. */
export function discarded(r: ExperimentRecord, reason: string, o: { keepReasons?: boolean } = {}): ExperimentRecord {
  return {
    ...r,
    state: "discarded",
    decision: {
      verdict: "discard",
      delta: r.decision?.delta ?? null,
      reasons: [...(o.keepReasons ? (r.decision?.reasons ?? []) : []), reason],
    },
  };
}

/** The default branch moved and the change no longer applies on it. */
export function superseded(r: ExperimentRecord, reason: string): ExperimentRecord {
  return { ...r, state: "superseded", decision: { verdict: "discard", delta: r.decision?.delta ?? null, reasons: [reason] } };
}

/** Kept by a person (/autoresearch keep): merged as measured. */
export function keptBy(r: ExperimentRecord, by: string, reason: string): ExperimentRecord {
  return {
    ...r,
    adoptedBy: by,
    state: "kept",
    decision: { verdict: "keep" as Verdict, delta: r.decision?.delta ?? null, reasons: [...(r.decision?.reasons ?? []), reason] },
  };
}

/** Adopted while still to be measured: the decision keeps it unless the run crashes. */
export function adoptedBy(r: ExperimentRecord, by: string): ExperimentRecord {
  return { ...r, adoptedBy: by };
}

export interface NewBase {
  baseSha: string;
  baseTreeHash: string;
  headSha: string;
  treeHash: string;
  flags: ExperimentRecord["flags"];
  baseline: { bpb: number; n: number } | null;
  /** Why, for the PR body. */
  note: string;
}

/** Its edits were put on the moved default branch as a new commit: measured from scratch. */
export function reapplied(r: ExperimentRecord, b: NewBase): ExperimentRecord {
  const out: ExperimentRecord = {
    ...measureAgain(r, { forget: true }),
    baseSha: b.baseSha,
    baseTreeHash: b.baseTreeHash,
    headSha: b.headSha,
    treeHash: b.treeHash,
    baselineBpb: b.baseline?.bpb ?? null,
    baselineN: b.baseline?.n ?? null,
    reapplied: b.note,
  };
  if (b.flags?.length) out.flags = b.flags;
  else delete out.flags;
  return out;
}

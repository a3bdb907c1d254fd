// Propose: the next experiment's change, from the proposer (an LLM, or the built-in mutations).
// The only slow call of a pass, so proposals are asked for ahead while the runs train
// (prepareProposals), and whatever comes back is checked, not trusted (experimentFrom).
import { inWindow, type Config } from "../config.js";
import { applyEdits } from "../edits.js";
import { buildHistory, bestBpb, currentBaseline } from "../history.js";
import { treeHash } from "../ledger/index.js";
import { scanChange } from "../review.js";
import { guidanceWithIdea, nextIdea, notesForPrompt } from "../steering/control.js";
import { capacity, holdingSlots, newRecord, nextNumber, nextStart, prefixed, slotCount, startedTonight, type Planned } from "./plan.js";
import type { Housekeeping, Prepared } from "./house.js";
import type { Snapshot } from "./snapshot.js";
import type { Logger } from "../log.js";
import type { ExperimentRecord, Proposal, ProposalRequest, ProposerPort } from "../types.js";

export interface ProposeDeps {
  proposerFor(config: Config): ProposerPort;
  house: Housekeeping;
  log: Logger;
}

/** What a proposer is asked: the head's files, guidance, history and notes. */
function proposalRequest(snap: Snapshot, records: ExperimentRecord[], guidance: string, notes: string[], seed: number): ProposalRequest {
  return {
    guidance,
    files: snap.files,
    editablePaths: snap.config.editable,
    history: buildHistory(records, typeof snap.config.minDelta === "number" ? snap.config.minDelta : undefined),
    bestBpb: bestBpb(records),
    triedTreeHashes: new Set([...records.map((r) => r.treeHash), snap.headTreeHash]),
    seed,
    ...(notes.length ? { reviewerNotes: notes } : {}),
  };
}

/**
 * Ask for the next proposals while the runs train, one per slot, so that a slot that frees up
 * starts its next run without waiting for the LLM; and where places in the runner's queue
 * (queue_ahead) are free, as at the night's start, one for each of those too, so that the queue
 * fills in one model call rather than one per slot's worth of places. Once the queue is full it
 * is one per slot again: proposals are thrown away when the head moves. Only when the next start
 * would be a proposal (not a baseline, not a queued idea, within the night) and from the current
 * head: a proposal made from another head or guidance is thrown away when it would be used.
 */
export function prepareProposals(d: ProposeDeps, snap: Snapshot, w: Planned): void {
  const { house } = d;
  const c = snap.config;
  const slots = slotCount(snap);
  const room = capacity(snap);
  const queueFree = room > slots ? Math.max(0, room - Math.max(slots, holdingSlots(w, snap).length)) : 0;
  const want = slots + queueFree;
  const fresh = (p: Prepared) => p.headSha === snap.headSha && p.guidanceSha === snap.guidance.sha;
  house.prepared = house.prepared.filter(fresh);
  if (want - house.prepared.length < topUp(want) || w.moved || snap.pausedBy || snap.control.malformed || !c.enabled) return;
  if (c.night?.window && !inWindow(c, snap.at)) return;
  if (c.night?.maxExperiments && startedTonight(snap, w.records) + house.prepared.length >= c.night.maxExperiments) return;
  // Not when a baseline must start first; while one is measured (the head's first, or its
  // measurement again), the proposals that follow it are asked for already.
  if (nextStart(w, snap).kind === "baseline") return;
  let proposer: ProposerPort;
  try {
    proposer = d.proposerFor(c);
  } catch {
    return; // said when a proposal is needed
  }
  if (!c.proposer.askAhead || !proposer.asksAhead || nextIdea(snap.control.record, w.records)) return;
  const notes = notesForPrompt(snap.control.record);
  const nextN = nextNumber(snap, w.records);
  const request = proposalRequest(snap, w.records, snap.guidance.text, notes, nextN);
  const before = house.prepared.length;
  while (house.prepared.length < want) {
    const proposal = proposer.propose({ ...request, seed: nextN + house.prepared.length });
    proposal.catch(() => undefined); // said when it is used
    house.prepared.push(preparedFrom(snap, proposer.name, notes, proposal));
  }
  if (house.prepared.length > before) {
    d.log.info(`${snap.name}: asked for ${house.prepared.length - before} proposal(s) ahead (${house.prepared.length} prepared)`);
  }
}

/** A proposal as kept between passes: with the head, guidance, proposer and notes it was made from. */
function preparedFrom(snap: Snapshot, proposer: string, notes: string[], proposal: Promise<Proposal>, failedOpens = 0): Prepared {
  return { headSha: snap.headSha, guidanceSha: snap.guidance.sha, proposer, notes: notes.join("\n"), proposal, failedOpens };
}

/**
 * Proposals asked for together, at least: one at a few slots; at many, a quarter of them. Every
 * request carries the whole history and the files, built once for the proposals asked for
 * together; asked one at a time at 64 slots, building them was most of what the bot allocated.
 * The quarter still asked for keeps three quarters of the slots' proposals ready.
 */
function topUp(slots: number): number {
  return slots >= 8 ? Math.floor(slots / 4) : 1;
}

/** The oldest prepared proposal that fits this head, guidance and notes and is a new tree, or null. */
async function takePrepared(
  d: ProposeDeps,
  snap: Snapshot,
  records: ExperimentRecord[],
  proposer: string,
  notes: string[],
): Promise<{ proposal: Proposal; failedOpens: number } | null> {
  const { house } = d;
  while (house.prepared.length) {
    const p = house.prepared.shift()!;
    if (p.headSha !== snap.headSha || p.guidanceSha !== snap.guidance.sha || p.proposer !== proposer || p.notes !== notes.join("\n")) continue;
    try {
      const proposal = await p.proposal;
      const applied = applyEdits(snap.files, proposal.edits, snap.config.editable);
      if (applied.ok && !records.some((r) => r.treeHash === treeHash(applied.files))) return { proposal, failedOpens: p.failedOpens };
    } catch (err) {
      d.log.warn(`${snap.name}: a proposal prepared ahead failed (${(err as Error).message}); asking again`);
    }
  }
  return null;
}

/** A proposed experiment: its record, the files of its commit, and how to keep its proposal when it cannot be opened. */
export interface ProposedExperiment {
  record: ExperimentRecord;
  files: Record<string, string>;
  /** The proposal as a prepared one, for the next pass; null for a queued idea's (asked for with the idea). */
  keep: Prepared | null;
}

/**
 * An experiment that could not be opened (GitHub failing) keeps its proposal for the next
 * pass, which opens it without asking the model again, at most this many times in all: a
 * proposal GitHub refuses every time is given up, and the next one asked for.
 */
const OPENS_PER_PROPOSAL = 3;

/** Keep the proposal of an experiment that could not be opened, first in line, unless it failed to open too often. */
export function keepUnopened(house: Housekeeping, keep: Prepared | null): void {
  if (!keep) return;
  const failedOpens = keep.failedOpens + 1;
  if (failedOpens < OPENS_PER_PROPOSAL) house.prepared.unshift({ ...keep, failedOpens });
}

/** The next experiment: its record and the files of its commit (throws when the proposal cannot be used). */
export async function proposeExperiment(d: ProposeDeps, snap: Snapshot, w: Planned, n: number): Promise<ProposedExperiment> {
  const proposer = d.proposerFor(snap.config);
  // A queued idea (/autoresearch try) is the first instruction; maintainers' notes follow program.md.
  // The built-in proposer reads no text: ideas wait for a proposer that does.
  const idea = proposer.name !== "mutate" ? nextIdea(snap.control.record, w.records) : null;
  const notes = notesForPrompt(snap.control.record);
  // One asked for while the runs trained, when it was made from this head, guidance and notes
  // and still applies as a new tree; else asked for now.
  const early = idea ? null : await takePrepared(d, snap, w.records, proposer.name, notes);
  const proposal =
    early?.proposal ??
    (await proposer.propose(proposalRequest(snap, w.records, idea ? guidanceWithIdea(snap.guidance.text, idea) : snap.guidance.text, notes, n)));
  const keep = idea ? null : preparedFrom(snap, proposer.name, notes, Promise.resolve(proposal), early?.failedOpens ?? 0);
  return { ...experimentFrom(snap, w.records, n, proposal, idea?.id ?? null), keep };
}

/** A proposal as an experiment record, checked: only the editable files change, and into a tree not tried before. */
export function experimentFrom(
  snap: Snapshot,
  records: ExperimentRecord[],
  n: number,
  proposal: Proposal,
  ideaId: number | null,
): { record: ExperimentRecord; files: Record<string, string> } {
  const applied = applyEdits(snap.files, proposal.edits, snap.config.editable);
  if (!applied.ok) throw new Error(`the proposal from ${proposal.proposer} does not apply: ${applied.error}`);
  const hash = treeHash(applied.files);
  if (records.some((r) => r.treeHash === hash)) throw new Error(`the proposal from ${proposal.proposer} repeats an earlier experiment`);
  // None yet while the head's first baseline is measured: the record gets it when it is decided.
  const baseline = currentBaseline(records, snap.headTreeHash);
  // What a person must look at before this change may be merged (src/review.ts).
  const flags = scanChange(snap.files, applied.files);
  const record: ExperimentRecord = {
    ...newRecord(snap, n),
    kind: "experiment",
    title: proposal.title,
    hypothesis: proposal.hypothesis,
    proposer: proposal.proposer,
    headSha: "",
    edits: proposal.edits,
    treeHash: hash,
    baselineBpb: baseline?.bpb ?? null,
    baselineN: baseline?.n ?? null,
  };
  // Which guidance revision this proposal used, when it changed since the previous experiment.
  const previous = records.filter((r) => r.kind === "experiment" && r.guidanceSha).sort((a, b) => b.n - a.n)[0];
  if (previous?.guidanceSha && previous.guidanceSha !== snap.guidance.sha) record.previousGuidanceSha = previous.guidanceSha;
  if (ideaId !== null) record.ideaId = ideaId;
  if (flags.length) record.flags = flags;
  return { record, files: prefixed(snap.config.workdir, applied.files) };
}

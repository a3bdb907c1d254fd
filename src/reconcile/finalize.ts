// Finalize: work that follows a pass and can wait for a spare write budget. The morning report,
// deleting finished experiments' branches, and cleaning up runs left behind by a crash.
import { inFlight } from "../record-state.js";
import { publishReports } from "./report.js";
import { isExperimentCommit, RESERVE_PER_RUN } from "./plan.js";
import { runIdPrefix, type Snapshot } from "./snapshot.js";
import type { Housekeeping } from "./house.js";
import { parseBranchName } from "../ledger/index.js";
import type { Logger } from "../log.js";
import type { ExperimentPull, GitHubPort, RunnerPort } from "../types.js";

/** The morning report is rewritten at most this often while a night goes on (and when it ends). */
export const REPORT_EVERY_MS = 10 * 60_000;
/** Branches deleted at most per pass (work that waits for a spare write budget). */
const PRUNE_PER_PASS = 20;
/**
 * By git, finished branches are deleted this many at a time while experiments run (one push for
 * them all, and one listing of the branches), and whatever is left once none runs.
 */
const PRUNE_BATCH = 8;

/** Per experiment number, the attempt its record waited for as the pass began, and whether a run of it is still wanted. */
export type WaitingFor = Map<number, { attempt: number; live: boolean }>;

/**
 * What each record waited for as GitHub showed it when the pass began (records change during a
 * pass, and a write may fail).
 */
export function runsWaitedFor(pulls: ExperimentPull[]): WaitingFor {
  const out: WaitingFor = new Map();
  for (const p of pulls) {
    const r = p.record;
    if (r) out.set(r.n, { attempt: r.attempt, live: p.state === "open" && inFlight(r) });
  }
  return out;
}

/**
 * Writes that work which can wait (the report, deleting branches) may use now: what the hour
 * and the minute leave after every experiment in flight has its reserve, less a fifth of the
 * budget kept for experiments. Unlimited when no budget is known.
 */
export function spareWrites(gh: GitHubPort, inFlight: number): number {
  const b = gh.budget;
  if (!b) return Number.POSITIVE_INFINITY;
  const left = b.left();
  const hour = left.hour - RESERVE_PER_RUN * inFlight - Math.ceil(b.limits.perHour / 5);
  const minute = left.minute - Math.ceil(b.limits.perMinute / 4);
  return Math.max(0, Math.min(hour, minute));
}

export interface FinalizeInput {
  gh: GitHubPort;
  runner: RunnerPort;
  log: Logger;
  house: Housekeeping;
  snap: Snapshot;
  /** The ledger after the pass (with the experiments it opened). */
  pulls: ExperimentPull[];
  waitingFor: WaitingFor;
  /** Experiments the pass decided. */
  finished: number[];
  /** Why no experiment started, if none did. */
  waiting: string | null;
  firstPass: boolean;
  reportEveryMs: number;
  /**
   * Numbers this pass gave out: a branch of one whose opening failed may have a pull request the
   * snapshot does not show yet, so it is never taken for a stray in this pass.
   */
  numbered: number[];
}

/** Errors of work that is tried again on the next pass (the report's are also said in the pass's report). */
export async function finalize(f: FinalizeInput): Promise<string[]> {
  const { gh, house, snap, log } = f;
  const errors: string[] = [];
  const running = f.pulls.filter((p) => p.state === "open" && p.record && inFlight(p.record)).length;
  const now = snap.at.getTime();
  // The morning report follows the ledger, as work that can wait: rewritten at most every
  // reportEveryMs while experiments end, and at once when the night is over and after a start
  // (a report a crash left stale is brought up to date).
  for (const n of f.finished) house.reportDue.add(n);
  const nightEnded = /^(outside the nightly window|reached max_experiments)/.test(f.waiting ?? "");
  if (!nightEnded) house.nightReported = false;
  const due = house.reportDue.size > 0 && now - house.reportAt >= f.reportEveryMs && spareWrites(gh, running) >= 2;
  // The final report once a night is over, not on every pass after it: its budget line counts
  // its own write, so each rewrite would call for the next.
  const final = nightEnded && (!house.nightReported || house.reportDue.size > 0);
  if (due || final || f.firstPass) {
    try {
      await publishReports(gh, snap.config, f.pulls, [...house.reportDue], snap.at);
      if (house.reportDue.size > 0) house.reportAt = now;
      house.reportDue.clear();
      if (nightEnded) house.nightReported = true;
    } catch (err) {
      const msg = `morning report: ${(err as Error).message}`;
      errors.push(msg);
      log.error(`${snap.name}: ${msg} (retried on the next pass)`);
    }
  }
  try {
    // By git, deleting branches costs no API write: it need not wait for a spare budget.
    const max = gh.refsByGit ? PRUNE_PER_PASS : Math.min(PRUNE_PER_PASS, spareWrites(gh, running));
    await pruneBranches(gh, snap, f.pulls, house, max, log, gh.refsByGit && running > 0 ? PRUNE_BATCH : 1, new Set(f.numbered));
  } catch (err) {
    log.warn(`${snap.name}: deleting finished experiments' branches failed: ${(err as Error).message} (tried again later)`);
  }
  try {
    await sweepRuns(gh, f.runner, f.waitingFor, log);
  } catch (err) {
    log.warn(`${snap.name}: cleaning up finished runs failed: ${(err as Error).message} (tried again later)`);
  }
  return errors;
}

/**
 * Clean up the runs the runner still holds for experiments that no longer wait for them: the
 * record was decided, or has moved on to a later attempt. A result is recorded before its run is
 * cleaned up, so a crash (or a failed cleanup) in between leaves the run behind, on Kubernetes
 * as Jobs. A run of a number this pass does not know, or of a later attempt than the record
 * shows (a listing behind the times), is left alone.
 */
async function sweepRuns(gh: GitHubPort, runner: RunnerPort, records: WaitingFor, log: Logger): Promise<void> {
  if (!runner.cleanup) return;
  const ids = await runner.list(gh.repo);
  if (!ids.length) return;
  const prefix = runIdPrefix(gh.repo);
  for (const id of ids) {
    const m = /^(\d+)-(\d+)$/.exec(id.startsWith(prefix) ? id.slice(prefix.length) : "");
    const r = m ? records.get(Number(m[1])) : undefined;
    if (!m || !r) continue;
    const attempt = Number(m[2]);
    if (r.live ? attempt >= r.attempt : attempt > r.attempt) continue;
    await runner.cleanup(id);
    log.info(`${gh.repo.owner}/${gh.repo.repo}: cleaned up ${id}, left behind by a run already recorded`);
  }
}

/**
 * Delete the branches of finished experiments (the bot's own closed or merged PRs), up to `max`
 * of them: work that waits for a spare write budget. A branch is deleted only while it still
 * points at the commit its PR ended with: one a person moved, or a stranger's branch that merely
 * looks like an experiment's, is left alone. Listing the branches costs one read, and only once
 * this process knows of `batch` finished experiments whose branches it has not seen gone, or
 * when a start may have left a stray (see strayBranches).
 */
async function pruneBranches(gh: GitHubPort, snap: Snapshot, pulls: ExperimentPull[], house: Housekeeping, max: number, log: Logger, batch: number, numbered: Set<number>): Promise<void> {
  if (max < 1) return;
  const { pruned } = house;
  const open = new Set(pulls.filter((p) => p.state === "open").map((p) => p.headRef));
  for (const b of open) pruned.delete(b); // reopened: its branch was restored
  const candidates = pulls.filter((p) => p.state === "closed" && p.record && p.headSha && !pruned.has(p.headRef) && !open.has(p.headRef));
  if ((!candidates.length || candidates.length < batch) && !house.strayCheck) return;
  const listed = await gh.listExperimentBranches();
  house.strayCheck = false;
  const existing = new Map(listed.map((b) => [b.name, b.sha]));
  const doomed: { name: string; sha: string }[] = [];
  for (const p of candidates) {
    const sha = existing.get(p.headRef);
    if (sha === p.headSha && doomed.length < max) doomed.push({ name: p.headRef, sha });
    else if (sha === undefined || sha !== p.headSha) pruned.add(p.headRef); // gone, or not ours to delete
  }
  const strays = await ownStrays(gh, strayBranches(listed, snap, pulls).filter((b) => !numbered.has(b.n)), house, max - doomed.length);
  // One call for them all: by git, one push deletes every one of them.
  await gh.deleteBranches([...doomed, ...strays]);
  for (const b of doomed) pruned.add(b.name);
  if (doomed.length) log.info(`${gh.repo.owner}/${gh.repo.repo}: deleted ${doomed.length} finished experiment branch(es)`);
  for (const b of strays) log.warn(`${gh.repo.owner}/${gh.repo.repo}: deleted ${b.name}: its commit was pushed but no pull request was opened from it`);
}

/**
 * Branches a start may have left behind: pushed, then the bot died or GitHub failed before its
 * pull request was opened. Starts are opened several at once, so a later number may have its PR
 * while an earlier one's never came, and that number is not given out again. A candidate is an
 * `autoresearch/<n>-…` branch that no pull request (anyone's) is opened from, with a number no
 * higher than the newest the ledger has: a start still being opened has a higher one.
 */
function strayBranches(listed: { name: string; sha: string }[], snap: Pick<Snapshot, "prHeads" | "unreadable">, pulls: ExperimentPull[]): { name: string; sha: string; n: number }[] {
  const newest = Math.max(0, ...snap.unreadable, ...pulls.flatMap((p) => (p.record ? [p.record.n] : [])));
  const used = new Set([...snap.prHeads, ...pulls.map((p) => p.headRef)]);
  return listed.flatMap((b) => {
    const parsed = parseBranchName(b.name);
    return parsed !== null && parsed.n <= newest && !used.has(b.name) ? [{ ...b, n: parsed.n }] : [];
  });
}

/**
 * The candidates that are the bot's own starts, up to `max`: their commit is the one the bot
 * makes for that experiment number (its message names it). A person's branch that merely sits
 * under `autoresearch/` is left alone, and read once per process (at that commit).
 */
async function ownStrays(gh: GitHubPort, candidates: { name: string; sha: string; n: number }[], house: Housekeeping, max: number): Promise<{ name: string; sha: string }[]> {
  const out: { name: string; sha: string }[] = [];
  for (const c of candidates) {
    if (out.length >= max) break;
    const key = `${c.name}@${c.sha}`;
    if (house.notStrays.has(key)) continue;
    if (isExperimentCommit(await gh.commitMessage(c.sha), c.n)) out.push({ name: c.name, sha: c.sha });
    else house.notStrays.add(key);
  }
  return out;
}

// reconcile(repo): the whole loop as one idempotent, level-triggered pass.
//
//   snapshot  read desired state (config and program.md on the default branch) and observed
//             state (experiment PRs with their hidden records, the control issue, every run a
//             record waits for) once;                                         (snapshot.ts)
//   plan      decide each experiment's next steps from the snapshot alone: submit its run,
//             record its result, merge or close it;                           (plan.ts)
//   act       carry them out through the GitHub and runner ports;             (act.ts)
//   propose   when a slot is free, the next experiment: a baseline, or a change from the
//             proposer;                                                       (propose.ts)
//   finalize  the morning report, branch and run cleanup, as the budget allows (finalize.ts).
//
// Nothing lives only in memory: a pass after a crash or restart reads the same state back from
// GitHub and the runner and carries on where the last one stopped.
import { configCheck } from "../checks.js";
import { quietLog, systemClock, type Clock, type Logger } from "../log.js";
import { markUsedIdeas, writeControl } from "../steering/control.js";
import { actPull, nothingActed, openExperiment, type ActDeps, type Acted } from "./act.js";
import { finalize, REPORT_EVERY_MS, runsWaitedFor } from "./finalize.js";
import { houseFor, type Housekeeping } from "./house.js";
import { capacity, planPull, planned, planStart, RESERVE_PER_RUN, writesPerExperiment, type Planned, type Step } from "./plan.js";
import { keepUnopened, prepareProposals, proposeExperiment, type ProposeDeps, type ProposedExperiment } from "./propose.js";
import { readSnapshot, type Snapshot } from "./snapshot.js";
import type { Config } from "../config.js";
import type { ExperimentPull, GitHubPort, ProposerPort, RunnerPort } from "../types.js";

export { runIdFor } from "./snapshot.js";
export { foreignResult, rebaselineReason, writesPerExperiment } from "./plan.js";
export { REPORT_EVERY_MS, spareWrites } from "./finalize.js";
export { newHousekeeping, type Housekeeping, type Prepared } from "./house.js";
export type { Logger } from "../log.js";

/**
 * Experiments opened in one pass at most; a pass with more free slots asks for another at once.
 * At 64 slots of short runs, 16 a pass left slots waiting for the pass after; more than half the
 * slots a pass keeps the pass, and the decisions of the runs that end meanwhile, waiting.
 */
const MAX_STARTS_PER_PASS = 32;
/**
 * The same where GitHub's writes are paced: a write budget of GitHub's order (at most
 * PACED_PER_MINUTE writes a minute; GitHub's is 80), under which the client spaces writes a
 * second or more apart, and pull requests, which notify people, further. Sixteen openings then
 * make a pass of a minute, and the writes that decide finished experiments, and so free their
 * slots, or carry a baseline on to its next run, would wait behind them.
 */
const MAX_STARTS_PER_PACED_PASS = 4;
const PACED_PER_MINUTE = 120;
/**
 * Experiments carried a step on at once, and as many opened at once beside them. Each works on
 * its own pull request, branch and run, and at most one merge is planned per pass; one after
 * another, a pass at 64 slots spent most of its time waiting on one request at a time while runs
 * sat finished. Twice this, times the controller's passes at once (4), stays under GitHub's 100
 * concurrent requests. (Writes still reach GitHub one at a time where its throttling is on: the
 * client queues them.)
 */
const AT_ONCE = 12;

export interface ReconcileDeps {
  gh: GitHubPort;
  runner: RunnerPort;
  /** Builds the proposer the repo's config asks for (throws when it cannot, e.g. no API key). */
  proposerFor(config: Config): ProposerPort;
  env?: Record<string, string | undefined>;
  now?: Clock;
  log?: Logger;
  /** The first pass for this repository since the bot started: the morning report is checked. */
  firstPass?: boolean;
  /** What this repository's passes remember between them (the controller keeps one per repository). */
  house?: Housekeeping;
  /** How often the morning report may be rewritten while a night goes on (default REPORT_EVERY_MS). */
  reportEveryMs?: number;
}

export interface ReconcileReport {
  /** Why no new experiment was started, when none was. */
  waiting: string | null;
  submitted: number[];
  finished: { n: number; verdict: string; valBpb: number | null }[];
  proposed: number[];
  errors: string[];
  /** The default branch moved during this pass (a merge): run another pass on the new head. */
  again: boolean;
  /** Run the next pass at this time (ms since the epoch): new experiments wait for the write budget. */
  retryAt?: number;
}

export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const { gh, runner } = deps;
  const log = deps.log ?? quietLog;
  const clock = deps.now ?? systemClock;
  const house = houseFor(gh, deps.house);
  const report: ReconcileReport = { waiting: null, submitted: [], finished: [], proposed: [], errors: [], again: false };

  // 1. Snapshot.
  const snap = await readSnapshot({ gh, runner, env: deps.env ?? process.env, at: clock(), log });
  if ("check" in snap) {
    await gh.upsertCheckRun(snap.check);
    log.warn(`${gh.repo.owner}/${gh.repo.repo}: the loop waits: ${snap.waiting}`);
    report.waiting = snap.waiting;
    return report;
  }
  if (snap.config.queueAhead > 0 && !snap.runnerQueues && !house.saidQueueUnused) {
    house.saidQueueUnused = true;
    log.warn(`${snap.name}: queue_ahead: ${snap.config.queueAhead} is not used: the ${snap.runnerName} runner starts every run it is given, so slots alone count`);
  }
  const waitingFor = runsWaitedFor(snap.pulls);
  const pulls = [...snap.pulls];
  const act: ActDeps = { gh, runner, clock, log };
  const acted = nothingActed();

  // 2. Plan and act: every experiment one step on, on top of what was planned before it.
  // Every experiment is planned first (planning is pure and in order: a merge planned for one
  // holds back the others'), then carried out, several at once.
  const w = planned(snap);
  const work = snap.pulls.map((pull) => ({ pull, steps: planPull(w, snap, pull) })).filter((x) => x.steps.length);
  const lane = lanes(AT_ONCE);
  const acting = Promise.all(work.map(({ pull, steps }) => lane(() => actPull(act, snap, pull, steps, acted))));
  // The next experiments start beside the writes that decide the finished ones, in lanes of
  // their own: a slot whose run ended does not wait for the records of every other experiment
  // that ended with it. They start after those writes where a planned merge moves the head (no
  // experiment starts on the old one), and where the hour's write budget is short enough that
  // whether one starts depends on what those writes leave of it.
  const budget = gh.budget;
  const roomy = !budget || budget.left().hour >= writesOf(work) + MAX_STARTS_PER_PASS * (writesPerExperiment(false) + RESERVE_PER_RUN);
  if (w.moved || !roomy) await acting;

  // 3. Propose: the next experiments, while slots are free. Several slots free (the night's
  // start, after a merge) are filled in this pass, not one pass after another: each pass reads
  // the snapshot again, which is most of what a pass costs. Each is numbered and proposed in
  // turn, and opened and submitted while the next is proposed.
  const opening: Promise<void>[] = [];
  const openLane = lanes(AT_ONCE);
  // A start that could not be opened (GitHub failing) ends the pass's starts, and the next pass
  // comes after the controller's backoff, not at once.
  let openFailed = false;
  const d: StartDeps = { gh, act, acted, snap, w, report, propose: { proposerFor: deps.proposerFor, house, log } };
  const paced = gh.budget !== undefined && gh.budget.limits.perMinute <= PACED_PER_MINUTE;
  const maxStarts = paced ? MAX_STARTS_PER_PACED_PASS : MAX_STARTS_PER_PASS;
  for (let i = 0; i < maxStarts && !openFailed; i++) {
    report.again = false;
    const next = await reserveNext(d);
    if (!next) break;
    opening.push(
      openLane(() => openNext(d, next)).then((opened) => {
        if (opened) pulls.push(opened);
        else openFailed = true;
      }),
    );
    if (!report.again) break; // no slot left
  }
  await Promise.all([acting, ...opening]);
  if (openFailed) report.again = false;
  report.submitted.push(...acted.submitted.sort((a, b) => a - b));
  report.finished.push(...acted.finished.sort((a, b) => a.n - b.n));
  report.errors.unshift(...acted.errors);

  // 4. Finalize.
  report.errors.push(
    ...(await finalize({
      gh,
      runner,
      log,
      house,
      snap,
      pulls,
      waitingFor,
      finished: report.finished.map((f) => f.n),
      waiting: report.waiting,
      firstPass: deps.firstPass ?? false,
      reportEveryMs: deps.reportEveryMs ?? REPORT_EVERY_MS,
      numbered: report.proposed,
    })),
  );
  // A start that could not be opened may have pushed its branch. The next pass, whose snapshot
  // shows whether its pull request came after all (a write that failed after it was carried
  // out), lists the branches and deletes it if not.
  if (openFailed) house.strayCheck = true;
  return report;
}

interface StartDeps {
  gh: GitHubPort;
  act: ActDeps;
  acted: Acted;
  snap: Snapshot;
  w: Planned;
  report: ReconcileReport;
  propose: ProposeDeps;
}

/** An experiment numbered and proposed in a pass, to be opened; `last`: it takes the last free slot. */
interface Reserved extends ProposedExperiment {
  last: boolean;
}

/** The next experiment when planStart says one starts: numbered, proposed and counted in `w`; null when none starts. */
async function reserveNext(d: StartDeps): Promise<Reserved | null> {
  const { gh, snap, w, report, propose } = d;
  const log = d.act.log;
  const budget = gh.budget;
  const start = planStart(w, snap, d.acted.moved, budget ? { hourLeft: budget.left().hour, refsByGit: gh.refsByGit ?? false } : null);
  if (!start.start) {
    if ("budgetNeed" in start && budget) {
      // Held back, not failed: the next pass runs when enough of the hour's writes have aged out.
      budget.heldBack();
      report.retryAt = budget.fitsAt(start.budgetNeed);
      const used = budget.limits.perHour - budget.left().hour;
      report.waiting =
        `GitHub write budget: ${used} of ${budget.limits.perHour} writes used in the last hour; ` +
        `the next experiment starts at ${new Date(report.retryAt).toISOString().slice(11, 16)} UTC`;
      log.info(`${snap.name}: ${report.waiting}`);
    } else if ("waiting" in start && start.waiting !== null) {
      report.waiting = start.waiting;
      if (start.again) report.again = true;
      if (start.askAhead) prepareProposals(propose, snap, w);
    }
    return null;
  }
  // An idea an experiment used is marked so (also when a crash came between the two writes).
  if (markUsedIdeas(snap.control.record, w.records)) await writeControl(gh, snap.control);
  try {
    // Several slots free (the night's start, a merge): their proposals are asked for at once,
    // not one pass after another.
    prepareProposals(propose, snap, w);
    const next: ProposedExperiment = start.start === "baseline" ? { record: start.record, files: {}, keep: null } : await proposeExperiment(propose, snap, w, start.n);
    // Counted from now on, so that the next start of this pass takes the next number and slot.
    w.records.push(next.record);
    w.opened.push(next.record.n);
    report.proposed.push(next.record.n);
    // A slot is still free: fill it now (another pass at once) rather than on the next trigger.
    const last = start.inFlight + 1 >= capacity(snap);
    if (!last) report.again = true;
    return { ...next, last };
  } catch (err) {
    await failedStart(d, `proposal failed: ${(err as Error).message}`);
    return null;
  }
}

/** Open a reserved experiment's pull request and submit its run; its PR, or null when opening failed. */
async function openNext(d: StartDeps, next: Reserved): Promise<ExperimentPull | null> {
  const { gh, snap, w } = d;
  try {
    const pull = await openExperiment(d.act, snap, next.record, next.files);
    if (next.record.ideaId != null && markUsedIdeas(snap.control.record, w.records)) {
      await writeControl(gh, snap.control).catch((err: Error) => d.act.log.warn(`${snap.name}: the control issue could not be updated: ${err.message}`));
    }
    // Submitted right away rather than on the next pass.
    await actPull(d.act, snap, pull, planPull(w, snap, pull), d.acted);
    // Every slot is busy now: the proposals for the next ones are asked for while they train.
    if (next.last) prepareProposals(d.propose, snap, w);
    return pull;
  } catch (err) {
    // The model's work is not lost with it: the next pass opens the same proposal (a new tree
    // still, from the same head), unless this pull request was opened after all.
    keepUnopened(d.propose.house, next.keep);
    await failedStart(d, `experiment ${next.record.n} could not be opened: ${(err as Error).message}`, "The next experiment could not be opened");
    return null;
  }
}

/** A start that failed: said in the pass's report, the log and a check run; the next pass tries again. */
async function failedStart(d: StartDeps, msg: string, title = "The next experiment could not be proposed"): Promise<void> {
  const { gh, snap, report } = d;
  report.errors.push(msg);
  report.waiting = msg;
  d.act.log.error(`${snap.name}: ${msg} (retried on the next pass)`);
  await gh
    .upsertCheckRun({ ...configCheck(snap.headSha, title, [msg]), externalId: "proposer" })
    .catch(() => undefined);
}

/** Writes a pass's planned steps make at most (a re-applied change: its commit, branch and record). */
function writesOf(work: { steps: Step[] }[]): number {
  const per: Partial<Record<Step["do"], number>> = { check: 1, write: 1, close: 1, merge: 1, reapply: 3 };
  return work.reduce((n, x) => n + x.steps.reduce((m, s) => m + (per[s.do] ?? 0), 0), 0);
}

/** A function that runs tasks at most `limit` at a time, in the order they were given. */
function lanes(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let free = limit;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (free > 0) free -= 1;
    else await new Promise<void>((r) => waiting.push(r));
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else free += 1;
    }
  };
}

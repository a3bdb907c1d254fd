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
import { planPull, planned, planStart, type Planned } from "./plan.js";
import { prepareProposals, proposeExperiment } from "./propose.js";
import { readSnapshot, type Snapshot } from "./snapshot.js";
import type { Config } from "../config.js";
import type { ExperimentPull, GitHubPort, ProposerPort, RunnerPort } from "../types.js";

export { runIdFor } from "./snapshot.js";
export { foreignResult, rebaselineReason, writesPerExperiment } from "./plan.js";
export { REPORT_EVERY_MS, spareWrites } from "./finalize.js";
export { newHousekeeping, type Housekeeping, type Prepared } from "./house.js";
export type { Logger } from "../log.js";

/** Experiments opened in one pass at most; a pass with more free slots asks for another at once. */
const MAX_STARTS_PER_PASS = 8;

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
  const waitingFor = runsWaitedFor(snap.pulls);
  const pulls = [...snap.pulls];
  const act: ActDeps = { gh, runner, clock, log };
  const acted = nothingActed();

  // 2. Plan and act: every experiment one step on, on top of what was planned before it.
  const w = planned(snap);
  for (const pull of snap.pulls) {
    const steps = planPull(w, snap, pull);
    if (steps.length) await actPull(act, snap, pull, steps, acted);
  }

  // 3. Propose: the next experiments, while slots are free. Several slots free (the night's
  // start, after a merge) are filled in this pass, not one pass after another: each pass reads
  // the snapshot again, which is most of what a pass costs.
  for (let i = 0; i < MAX_STARTS_PER_PASS; i++) {
    report.again = false;
    const opened = await startNext({ gh, act, acted, house, snap, w, report, proposerFor: deps.proposerFor });
    if (!opened) break;
    pulls.push(opened);
    if (!report.again) break; // no slot left
  }
  report.submitted.push(...acted.submitted);
  report.finished.push(...acted.finished);
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
    })),
  );
  return report;
}

interface StartDeps {
  gh: GitHubPort;
  act: ActDeps;
  acted: Acted;
  house: Housekeeping;
  snap: Snapshot;
  w: Planned;
  report: ReconcileReport;
  proposerFor: ReconcileDeps["proposerFor"];
}

/** Open and submit the next experiment when planStart says one starts; its PR, or null. */
async function startNext(d: StartDeps): Promise<ExperimentPull | null> {
  const { gh, snap, w, report } = d;
  const log = d.act.log;
  const propose = { proposerFor: d.proposerFor, house: d.house, log };
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
    const next = start.start === "baseline" ? { record: start.record, files: {} } : await proposeExperiment(propose, snap, w, start.n);
    const pull = await openExperiment(d.act, snap, next.record, next.files);
    w.records.push(next.record);
    w.opened.push(next.record.n);
    report.proposed.push(next.record.n);
    if (next.record.ideaId != null && markUsedIdeas(snap.control.record, w.records)) {
      await writeControl(gh, snap.control).catch((err: Error) => log.warn(`${snap.name}: the control issue could not be updated: ${err.message}`));
    }
    // Submitted right away rather than on the next pass.
    await actPull(d.act, snap, pull, planPull(w, snap, pull), d.acted);
    // A slot is still free: fill it now (another pass at once) rather than on the next trigger.
    if (start.inFlight + 1 < Math.min(snap.config.slots, snap.runnerSlots)) report.again = true;
    else prepareProposals(propose, snap, w);
    return pull;
  } catch (err) {
    const msg = `proposal failed: ${(err as Error).message}`;
    report.errors.push(msg);
    report.waiting = msg;
    log.error(`${snap.name}: ${msg} (retried on the next pass)`);
    await gh
      .upsertCheckRun({ ...configCheck(snap.headSha, "The next experiment could not be proposed", [msg]), externalId: "proposer" })
      .catch(() => undefined);
    return null;
  }
}

// reconcile(repo): the whole loop as one idempotent, level-triggered pass.
//
// It reads desired state (config and program.md on the default branch), observed state
// (experiment PRs with their hidden records, runs known to the runner) and moves each
// experiment one step: submit its run, record its result, merge or close it, propose the
// next one. Nothing lives only in memory: a pass after a crash or restart reads the same
// state back from GitHub and the runner and carries on where the last one stopped.
import { CONFIG_PATH, parseConfig, inWindow, nightKey, type Config } from "./config.js";
import { applyEdits } from "./edits.js";
import { buildHistory, currentBaseline, bestBpb } from "./history.js";
import { branchName, labelsFor, LABELS, renderBody, treeHash } from "./ledger.js";
import { estimateNoise } from "./noise.js";
import { decide, isMeasured } from "./policy.js";
import { checkRunFor, configCheck, UNSANDBOXED, VAL_BPB_CHECK } from "./checks.js";
import { defuse, oneLine } from "./markdown.js";
import { guidanceWithIdea, markUsedIdeas, nextIdea, notesForPrompt, publishReports, readControl, writeControl, type Control } from "./steering.js";
import { describeFlags, outlierFlag, scanChange } from "./review.js";
import { readLedger } from "./trust.js";
import type {
  ExperimentPull,
  ExperimentRecord,
  GitHubPort,
  Proposal,
  ProposalRequest,
  ProposerPort,
  RunnerPort,
  RunSpec,
  TrainerResult,
} from "./types.js";

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface ReconcileDeps {
  gh: GitHubPort;
  runner: RunnerPort;
  /** Builds the proposer the repo's config asks for (throws when it cannot, e.g. no API key). */
  proposerFor(config: Config): ProposerPort;
  env?: Record<string, string | undefined>;
  now?: () => Date;
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

const quietLog: Logger = { info() {}, warn() {}, error() {} };
/** Runner kinds a repo's config can name; runners with other names (test doubles) accept any. */
const RUNNER_KINDS: string[] = ["local", "kubernetes"];

/** What every run id of a repository starts with. */
function runIdPrefix(gh: GitHubPort): string {
  return `${`${gh.repo.owner}-${gh.repo.repo}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-")}-`;
}

export function runIdFor(gh: GitHubPort, r: ExperimentRecord): string {
  return `${runIdPrefix(gh)}${r.n}-${r.attempt}`;
}

interface Snapshot {
  config: Config;
  defaultBranch: string;
  headSha: string;
  files: Record<string, string>;
  headTreeHash: string;
  guidance: { text: string; sha: string };
  pulls: ExperimentPull[];
  records: ExperimentRecord[];
  /** A merge in this pass moved the default branch: headSha, files and headTreeHash are stale. */
  moved: boolean;
  /** Who paused the loop (/autoresearch pause): runs are cancelled and nothing is submitted. */
  pausedBy: string | null;
  /** Per experiment number, the attempt its record waited for as the pass began (see sweepRuns). */
  waitingFor: Map<number, { attempt: number; live: boolean }>;
}

/** Writes an experiment costs from proposal to decision (commit 2, PR 1, check run 1, record 1, merge 1). */
export const WRITES_PER_EXPERIMENT = 6;
/** Writes kept back for each experiment in flight: its check run, record, merge and one confirmation. */
const RESERVE_PER_RUN = 4;
/** The morning report is rewritten at most this often while a night goes on (and when it ends). */
export const REPORT_EVERY_MS = 10 * 60_000;
/** Branches deleted at most per pass (work that waits for a spare write budget). */
const PRUNE_PER_PASS = 20;

/** What a repository's passes remember between them, in this process (a restart starts afresh). */
export interface Housekeeping {
  /** When the morning report was last written (ms since the epoch). */
  reportAt: number;
  /** Experiments decided since then. */
  reportDue: Set<number>;
  /** The night is over and its final report was written by this process (until a night starts). */
  nightReported: boolean;
  /** Experiment branches known to be deleted. */
  pruned: Set<string>;
  /** Proposals asked for while runs train, so that no slot waits for the LLM (oldest first). */
  prepared: Prepared[];
}

/** A proposal asked for ahead of time, for the head and guidance it was made from. */
export interface Prepared {
  headSha: string;
  guidanceSha: string;
  proposer: string;
  /** The reviewer notes it was given (other notes now: it is asked again). */
  notes: string;
  proposal: Promise<Proposal>;
}

export function newHousekeeping(): Housekeeping {
  return { reportAt: 0, reportDue: new Set(), pruned: new Set(), prepared: [], nightReported: false };
}

/** Without a controller (tests call reconcile directly): kept per GitHub port. */
const housekeepingByPort = new WeakMap<GitHubPort, Housekeeping>();

function houseOf(deps: ReconcileDeps): Housekeeping {
  if (deps.house) return deps.house;
  let h = housekeepingByPort.get(deps.gh);
  if (!h) housekeepingByPort.set(deps.gh, (h = newHousekeeping()));
  return h;
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

export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const seen: { snap?: Snapshot } = {};
  const log = deps.log ?? quietLog;
  const report = await pass(deps, seen);
  const snap = seen.snap;
  if (!snap) return report;
  const house = houseOf(deps);
  const inFlight = snap.pulls.filter((p) => p.state === "open" && (p.record?.state === "queued" || p.record?.state === "running")).length;
  const now = (deps.now ?? (() => new Date()))();
  // The morning report follows the ledger, as work that can wait: rewritten at most every
  // REPORT_EVERY_MS while experiments end, and at once when the night is over and after a start
  // (a report a crash left stale is brought up to date).
  for (const f of report.finished) house.reportDue.add(f.n);
  const nightEnded = /^(outside the nightly window|reached max_experiments)/.test(report.waiting ?? "");
  if (!nightEnded) house.nightReported = false;
  const due = house.reportDue.size > 0 && now.getTime() - house.reportAt >= (deps.reportEveryMs ?? REPORT_EVERY_MS) && spareWrites(deps.gh, inFlight) >= 2;
  // The final report once a night is over, not on every pass after it: its budget line counts
  // its own write, so each rewrite would call for the next.
  const final = nightEnded && (!house.nightReported || house.reportDue.size > 0);
  if (due || final || deps.firstPass) {
    try {
      await publishReports(deps.gh, snap.config, snap.pulls, [...house.reportDue], now);
      if (house.reportDue.size > 0) house.reportAt = now.getTime();
      house.reportDue.clear();
      if (nightEnded) house.nightReported = true;
    } catch (err) {
      const msg = `morning report: ${(err as Error).message}`;
      report.errors.push(msg);
      log.error(`${deps.gh.repo.owner}/${deps.gh.repo.repo}: ${msg} (retried on the next pass)`);
    }
  }
  try {
    await pruneBranches(deps.gh, snap, house.pruned, Math.min(PRUNE_PER_PASS, spareWrites(deps.gh, inFlight)), log);
  } catch (err) {
    log.warn(`${deps.gh.repo.owner}/${deps.gh.repo.repo}: deleting finished experiments' branches failed: ${(err as Error).message} (tried again later)`);
  }
  try {
    await sweepRuns(deps, snap.waitingFor, log);
  } catch (err) {
    log.warn(`${deps.gh.repo.owner}/${deps.gh.repo.repo}: cleaning up finished runs failed: ${(err as Error).message} (tried again later)`);
  }
  return report;
}

/**
 * What each record waited for as GitHub showed it when the pass began (records change in memory
 * during a pass, and a write may fail): the attempt, and whether a run of it is still wanted.
 */
function runsWaitedFor(pulls: ExperimentPull[]): Snapshot["waitingFor"] {
  const out: Snapshot["waitingFor"] = new Map();
  for (const p of pulls) {
    const r = p.record;
    if (r) out.set(r.n, { attempt: r.attempt, live: p.state === "open" && (r.state === "queued" || r.state === "running") });
  }
  return out;
}

/**
 * Clean up the runs the runner still holds for experiments that no longer wait for them: the
 * record was decided, or has moved on to a later attempt. A result is recorded before its run is
 * cleaned up, so a crash (or a failed cleanup) in between leaves the run behind, on Kubernetes
 * as Jobs. A run of a number this pass does not know, or of a later attempt than the record
 * shows (a listing behind the times), is left alone.
 */
async function sweepRuns(deps: ReconcileDeps, records: Snapshot["waitingFor"], log: Logger): Promise<void> {
  const { runner, gh } = deps;
  if (!runner.cleanup) return;
  const ids = await runner.list(gh.repo);
  if (!ids.length) return;
  const prefix = runIdPrefix(gh);
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
 * looks like an experiment's, is left alone. Listing the branches costs one read, and only while
 * this process knows of a finished experiment whose branch it has not seen gone.
 */
async function pruneBranches(gh: GitHubPort, snap: Snapshot, pruned: Set<string>, max: number, log: Logger): Promise<void> {
  if (max < 1) return;
  const open = new Set(snap.pulls.filter((p) => p.state === "open").map((p) => p.headRef));
  for (const b of open) pruned.delete(b); // reopened: its branch was restored
  const candidates = snap.pulls.filter((p) => p.state === "closed" && p.record && p.headSha && !pruned.has(p.headRef) && !open.has(p.headRef));
  if (!candidates.length) return;
  const existing = new Map((await gh.listExperimentBranches()).map((b) => [b.name, b.sha]));
  const doomed: string[] = [];
  for (const p of candidates) {
    const sha = existing.get(p.headRef);
    if (sha === p.headSha && doomed.length < max) doomed.push(p.headRef);
    else if (sha === undefined || sha !== p.headSha) pruned.add(p.headRef); // gone, or not ours to delete
  }
  for (const b of doomed) {
    await gh.deleteBranch(b);
    pruned.add(b);
  }
  if (doomed.length) log.info(`${gh.repo.owner}/${gh.repo.repo}: deleted ${doomed.length} finished experiment branch(es)`);
}

async function pass(deps: ReconcileDeps, seen: { snap?: Snapshot }): Promise<ReconcileReport> {
  const log = deps.log ?? quietLog;
  const now = deps.now ?? (() => new Date());
  const { gh, runner } = deps;
  const report: ReconcileReport = { waiting: null, submitted: [], finished: [], proposed: [], errors: [], again: false };
  const name = `${gh.repo.owner}/${gh.repo.repo}`;

  // 1. Desired state from the default branch.
  const defaultBranch = await gh.getDefaultBranch();
  const headSha = await gh.getBranchSha(defaultBranch);
  const configFile = await gh.readFile(CONFIG_PATH, headSha);
  const parsed = parseConfig(configFile?.text ?? null, deps.env ?? process.env);
  if (!parsed.ok) {
    const problems = parsed.errors.map((e) => `${e.path || "(file)"}: ${e.message}`);
    await gh.upsertCheckRun(configCheck(headSha, `${CONFIG_PATH} is invalid`, problems));
    log.warn(`${name}: ${CONFIG_PATH} is invalid; the loop waits: ${problems.join("; ")}`);
    report.waiting = `invalid config: ${problems.join("; ")}`;
    return report;
  }
  const config = parsed.config;
  // The runner is chosen per process (AUTORESEARCH_RUNNER); the repo's `runner:` must agree,
  // and the runner must be able to run this repo (e.g. a usable Kubernetes Job template).
  const runnerProblems: string[] = [];
  // Unset, `runner:` means whichever runner the bot has; only an explicit one must match.
  const runnerSet = /^runner\s*:/m.test(configFile?.text ?? "");
  if (RUNNER_KINDS.includes(runner.name) && runnerSet && config.runner !== runner.name) {
    runnerProblems.push(
      `runner: ${config.runner} in ${CONFIG_PATH}, but this bot runs experiments with the ${runner.name} runner ` +
        `(AUTORESEARCH_RUNNER=${runner.name}); set runner: ${runner.name} or use a bot with the ${config.runner} runner`,
    );
  } else if (runner.validate) {
    runnerProblems.push(...(await runner.validate(gh.repo)));
  }
  if (runnerProblems.length) {
    await gh.upsertCheckRun(configCheck(headSha, "autoresearch cannot run experiments", runnerProblems));
    log.warn(`${name}: the loop waits: ${runnerProblems.join("; ")}`);
    report.waiting = `runner: ${runnerProblems.join("; ")}`;
    return report;
  }
  const guidance = await gh.readFile(config.program, headSha);
  const files: Record<string, string> = {};
  const missing: string[] = [];
  for (const path of config.editable) {
    const f = await gh.readFile(joinPath(config.workdir, path), headSha);
    if (f) files[path] = f.text;
    else missing.push(joinPath(config.workdir, path));
  }
  if (!guidance || missing.length) {
    const problems = [
      ...(guidance ? [] : [`${config.program} was not found on ${defaultBranch}: the proposer needs research guidance`]),
      ...missing.map((p) => `editable file ${p} was not found on ${defaultBranch}`),
    ];
    await gh.upsertCheckRun(configCheck(headSha, "autoresearch cannot start", problems));
    log.warn(`${name}: ${problems.join("; ")}`);
    report.waiting = problems.join("; ");
    return report;
  }

  // 2. Observed state: the ledger, and the steering kept on GitHub (the control issue).
  const control = await readControl(gh, log);
  const pulls = await readLedger(gh, log);
  const snap: Snapshot = {
    config,
    defaultBranch,
    headSha,
    files,
    headTreeHash: treeHash(files),
    guidance,
    pulls,
    records: pulls.flatMap((p) => (p.record ? [p.record] : [])),
    moved: false,
    pausedBy: control.record.paused?.by ?? null,
    waitingFor: runsWaitedFor(pulls),
  };
  seen.snap = snap;

  // 3. Move every open experiment one step.
  for (const pull of pulls) {
    if (!pull.record) continue;
    try {
      if (pull.state === "open") {
        if (await advance(deps, snap, pull, pull.record, report, log)) report.again = true;
      } else if (pull.record.state === "review") {
        // Closed by a person while held for review: discarded, and said so in the record.
        const r = pull.record;
        r.state = "discarded";
        r.decision = {
          verdict: "discard",
          delta: r.decision?.delta ?? null,
          reasons: [...(r.decision?.reasons ?? []), "The pull request was closed while it was held for review; it is not merged."],
        };
        await writeRecord(gh, pull, r, (deps.now ?? (() => new Date()))());
      } else if (pull.record.state === "running" || pull.record.state === "queued") {
        // Closed by a person while queued or running: stop spending GPU time on it.
        const runId = runIdFor(gh, pull.record);
        const obs = await runner.observe(runId);
        if (obs.phase === "running" || obs.phase === "pending") {
          log.info(`${name}#${pull.number}: closed while running; cancelling ${runId}`);
          await runner.cancel(runId);
        }
        // Record it, so that later passes leave it alone and the ledger says what happened.
        const r = pull.record;
        r.state = "discarded";
        r.decision = {
          verdict: "discard",
          delta: null,
          reasons: ["The pull request was closed before its run finished; the run was cancelled."],
        };
        await writeRecord(gh, pull, r, (deps.now ?? (() => new Date()))());
      }
    } catch (err) {
      const msg = `#${pull.number}: ${(err as Error).message}`;
      report.errors.push(msg);
      log.error(`${name} ${msg} (retried on the next pass)`);
    }
  }

  // 4. Start the next experiment if a slot is free (on a fresh read of the head if it moved).
  if (report.again || snap.moved) {
    report.again = true;
    report.waiting = `${defaultBranch} moved; continuing on the new head`;
    return report;
  }
  if (!config.enabled) {
    report.waiting = "disabled in config";
    return report;
  }
  if (snap.pausedBy) {
    report.waiting = `paused by @${snap.pausedBy} (/autoresearch resume starts the experiments again)`;
    return report;
  }
  // An experiment queued until the tree it is built on has a baseline holds no slot: that
  // baseline must be able to start (with one slot, counting it would wait forever).
  const inFlight = snap.records.filter(
    (r) => isOpenPull(snap, r.n) && (r.state === "running" || (r.state === "queued" && !waitsForBaseline(snap, r))),
  );
  if (inFlight.length >= Math.min(config.slots, runner.slots)) {
    report.waiting = `all ${config.slots} slot(s) busy`;
    prepareProposals(deps, snap, control, Math.min(config.slots, runner.slots), log);
    return report;
  }
  const at = now();
  if (config.night?.window && !inWindow(config, at)) {
    report.waiting = `outside the nightly window ${config.night.window}`;
    return report;
  }
  if (config.night?.maxExperiments) {
    const key = nightKey(config, at);
    const tonight = snap.records.filter((r) => nightKey(config, new Date(r.createdAt)) === key).length;
    if (tonight >= config.night.maxExperiments) {
      report.waiting = `reached max_experiments (${config.night.maxExperiments}) for tonight`;
      return report;
    }
  }

  // GitHub's write budget: a new experiment starts only when the hour can carry it and what
  // the experiments in flight still have to write. Held back, not failed: the next pass runs
  // when enough of the hour's writes have aged out.
  const budget = gh.budget;
  const need = WRITES_PER_EXPERIMENT + RESERVE_PER_RUN * inFlight.length;
  if (budget && budget.left().hour < need) {
    budget.heldBack();
    report.retryAt = budget.fitsAt(need);
    const used = budget.limits.perHour - budget.left().hour;
    report.waiting =
      `GitHub write budget: ${used} of ${budget.limits.perHour} writes used in the last hour; ` +
      `the next experiment starts at ${new Date(report.retryAt).toISOString().slice(11, 16)} UTC`;
    log.info(`${name}: ${report.waiting}`);
    return report;
  }

  // Steering: paused, queued ideas, reviewer notes.
  // An idea an experiment used is marked so (also when a crash came between the two writes).
  if (markUsedIdeas(control.record, snap.records)) await writeControl(gh, control);

  try {
    // Several slots free (the night's start, a merge): their proposals are asked for at once,
    // not one pass after another.
    prepareProposals(deps, snap, control, Math.min(config.slots, runner.slots), log);
    const n = await startNext(deps, snap, inFlight, log, control);
    if (n === null) report.waiting = "waiting for the baseline measurement";
    else {
      report.proposed.push(n);
      // A slot is still free: fill it now (another pass at once) rather than on the next trigger.
      if (inFlight.length + 1 < Math.min(config.slots, runner.slots)) report.again = true;
      else prepareProposals(deps, snap, control, Math.min(config.slots, runner.slots), log);
    }
  } catch (err) {
    const msg = `proposal failed: ${(err as Error).message}`;
    report.errors.push(msg);
    report.waiting = msg;
    log.error(`${name}: ${msg} (retried on the next pass)`);
    await gh
      .upsertCheckRun({ ...configCheck(headSha, "The next experiment could not be proposed", [msg]), externalId: "proposer" })
      .catch(() => undefined);
  }
  return report;
}

function joinPath(workdir: string, path: string): string {
  const w = workdir.replace(/^\.\/?/, "").replace(/\/$/, "");
  return w ? `${w}/${path}` : path;
}

function isOpenPull(snap: Snapshot, n: number): boolean {
  return snap.pulls.some((p) => p.record?.n === n && p.state === "open");
}

/** The largest improvement (baseline − mean, in bpb) of any experiment kept so far; null: none. */
function largestKept(records: ExperimentRecord[]): number | null {
  const kept = records.filter((x) => x.kind === "experiment" && x.state === "kept" && x.decision?.delta != null);
  return kept.length ? Math.max(...kept.map((x) => -(x.decision!.delta as number))) : null;
}

/** A queued experiment that cannot be submitted until the tree it is built on has a baseline. */
function waitsForBaseline(snap: Snapshot, r: ExperimentRecord): boolean {
  return r.kind === "experiment" && r.baselineBpb === null && !currentBaseline(snap.records, r.baseTreeHash);
}

/**
 * The record, its labels and (with `close`) the closing of its PR in one write: GitHub counts
 * every write against the installation's budget (src/github/budget.ts).
 */
async function writeRecord(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord, now: Date, close = false): Promise<void> {
  r.updatedAt = now.toISOString();
  const body = renderBody(r);
  const labels = labelsFor(r);
  const closing = close && pull.state === "open";
  await gh.updatePull(pull.number, { body, labels, ...(closing ? { state: "closed" as const } : {}) });
  pull.body = body;
  pull.record = r;
  pull.labels = labels;
  if (closing) pull.state = "closed";
}

/** A decided record whose PR closes with the write that records it (a baseline has nothing to merge). */
function closesWithRecord(r: ExperimentRecord): boolean {
  return r.state === "discarded" || r.state === "crashed" || r.state === "superseded" || (r.kind === "baseline" && r.state === "kept");
}

function runSpec(snap: Snapshot, gh: GitHubPort, r: ExperimentRecord, pull: number, source: RunSpec["source"]): RunSpec {
  const c = snap.config;
  return {
    runId: runIdFor(gh, r),
    repo: gh.repo,
    pull,
    sha: r.headSha,
    source,
    workdir: c.workdir,
    trainCmd: c.trainCommand,
    prepareCmd: c.prepareCommand,
    prepareFiles: c.prepareFiles,
    budgetSeconds: c.budgetSeconds,
    evalAllowanceSeconds: c.evalAllowanceSeconds,
    // Every run of a tree gets its own seed: their spread is the noise.
    seed: r.attempt,
    timeoutSeconds: c.timeoutSeconds,
    ...(c.evaluation ? { evaluation: evaluationFor(c.evaluation, r, source) } : {}),
  };
}

/**
 * Outside evaluation: scored by the default branch's code, at the commit the experiment was built
 * on (a baseline is a default-branch commit itself), downloaded like the experiment's own tree.
 */
function evaluationFor(e: NonNullable<Config["evaluation"]>, r: ExperimentRecord, source: RunSpec["source"]): NonNullable<RunSpec["evaluation"]> {
  const sha = r.kind === "baseline" ? r.headSha : r.baseSha;
  const at = source.url.lastIndexOf(r.headSha);
  if (at < 0 || at + r.headSha.length !== source.url.length) {
    throw new Error(`cannot derive the trusted tree's download address from ${source.url}`);
  }
  return { scoreCmd: e.scoreCommand, serveCmd: e.serveCommand, sha, url: source.url.slice(0, at) + sha };
}

async function advance(
  deps: ReconcileDeps,
  snap: Snapshot,
  pull: ExperimentPull,
  r: ExperimentRecord,
  report: ReconcileReport,
  log: Logger,
): Promise<boolean> {
  const { gh, runner } = deps;
  const now = deps.now ?? (() => new Date());
  const name = `${gh.repo.owner}/${gh.repo.repo}#${pull.number}`;

  if (r.state === "queued") {
    if (r.kind === "experiment" && r.baselineBpb === null) {
      // Measured against the tree it was built on: wait until that tree has a baseline.
      const base = currentBaseline(snap.records, r.baseTreeHash ?? "");
      if (!base) {
        // Its base has no baseline yet. If the default branch moved on again meanwhile, that
        // baseline will never be measured: move the change to the current head instead.
        if (r.baseSha !== snap.headSha && r.baseTreeHash !== snap.headTreeHash && !snap.moved) {
          await reapply(deps, snap, pull, r, "before this experiment could be measured", "It was waiting for a baseline, but");
        }
        return false;
      }
      r.baselineBpb = base.bpb;
      r.baselineN = base.n;
    }
    // The record is not rewritten when its run starts (GitHub counts every write); the runner
    // knows whether this attempt was submitted in an earlier pass.
    const obs = await runner.observe(runIdFor(gh, r));
    if (obs.phase === "missing") {
      if (snap.pausedBy) return false; // submitted again on /autoresearch resume
      const source = await gh.archiveSource(r.headSha);
      await runner.submit(runSpec(snap, gh, r, pull.number, source));
      r.state = "running";
      report.submitted.push(r.n);
      log.info(`${name}: training ${r.headSha.slice(0, 7)} as ${runIdFor(gh, r)}`);
      return false;
    }
    r.state = "running";
  }

  if (r.state === "running") {
    const runId = runIdFor(gh, r);
    const obs = await runner.observe(runId);
    if (obs.phase === "missing") {
      // The runner lost it (restart with a wiped run directory, node drained…): run it again.
      log.warn(`${name}: run ${runId} is unknown to the runner; submitting it again`);
      const source = await gh.archiveSource(r.headSha);
      await runner.submit(runSpec(snap, gh, r, pull.number, source));
      return false;
    }
    if (obs.phase !== "finished" && snap.pausedBy) {
      // Paused: give the GPU back now. The experiment goes back to the queue and is measured
      // from the start, under a new run id, once the loop is resumed.
      await runner.cancel(runId);
      await gh.upsertCheckRun({
        name: VAL_BPB_CHECK,
        headSha: r.headSha,
        externalId: runId,
        status: "completed",
        conclusion: "cancelled",
        output: {
          title: "Cancelled: the loop was paused",
          summary:
            (runner.sandboxed === false ? `${UNSANDBOXED}\n\n` : "") +
            `@${snap.pausedBy} paused the loop. This experiment is measured again from the start after \`/autoresearch resume\`.`,
        },
      });
      r.attempt += 1;
      r.state = "queued";
      await writeRecord(gh, pull, r, now());
      await runner.cleanup?.(runId).catch(() => undefined);
      log.info(`${name}: paused; cancelled ${runId}, queued again`);
      return false;
    }
    if (obs.phase !== "finished") return false;
    const foreign = foreignResult(obs.result, runId, r.headSha);
    if (foreign) {
      // A result that is not this run's (a run id reused after a lost record, a stale run
      // folder): never recorded. The run is dropped and this experiment measured anew.
      log.warn(`${name}: the result of ${runId} ${foreign}; discarding it and measuring ${r.headSha.slice(0, 7)} again`);
      await runner.cleanup?.(runId);
      const source = await gh.archiveSource(r.headSha);
      await runner.submit(runSpec(snap, gh, r, pull.number, source));
      return false;
    }
    if (!r.measurements.some((m) => m.runId === runId)) {
      r.measurements.push({ runId, sha: r.headSha, result: obs.result, finishedAt: now().toISOString() });
    }
    // Compared with every run of the baseline's tree on this run's hardware, and with the noise
    // the ledger has measured there (this experiment's own repeated runs included).
    const hardware = obs.result.hardware ?? null;
    const baseline = r.kind === "experiment" ? currentBaseline(snap.records, r.baseTreeHash, hardware) : null;
    if (baseline) {
      r.baselineBpb = baseline.bpb;
      r.baselineN = baseline.n;
    }
    const d = decide({
      kind: r.kind,
      measurements: r.measurements,
      baselineBpb: r.baselineBpb,
      baselineRuns: baseline?.runs ?? 1,
      minDelta: snap.config.minDelta,
      noise: estimateNoise(snap.records, hardware),
      settings: snap.config.noise,
    });
    if (d.action === "more" || d.action === "rerun") {
      // A baseline measures the noise and a promising change is confirmed before any merge (the
      // next run starts now); a failure of the infrastructure is tried again on the next pass.
      // The check run is written once, with the decision; the record keeps every run meanwhile.
      r.attempt += 1;
      r.state = "queued";
      await writeRecord(gh, pull, r, now());
      await runner.cleanup?.(runId);
      log.info(`${name}: measuring again: ${d.reasons.join(" ")}`);
      return d.action === "more" ? advance(deps, snap, pull, r, report, log) : false;
    }
    if ((r.reruns ?? 0) > 0 && d.action !== "crash") {
      // Measured again on request (/autoresearch rerun): the decision waits for every run.
      r.reruns = (r.reruns ?? 1) - 1;
      r.attempt += 1;
      r.state = "queued";
      await writeRecord(gh, pull, r, now());
      await runner.cleanup?.(runId);
      log.info(`${name}: measuring again on request`);
      // Submit the next run now rather than on the next trigger.
      return advance(deps, snap, pull, r, report, log);
    }
    if (r.reruns) r.reruns = 0; // a crash decides at once; no further runs are owed
    let verdict: "keep" | "discard" | "crash" = d.action;
    const reasons = [...d.reasons];
    if (r.adoptedBy && verdict === "discard") {
      // Adopted with /autoresearch keep: merged as measured unless the run crashed.
      verdict = "keep";
      reasons.push(`Kept anyway: adopted by @${r.adoptedBy} with /autoresearch keep.`);
    }
    if (verdict === "keep" && r.kind === "experiment" && !r.adoptedBy && d.delta !== null) {
      const outlier = outlierFlag(-d.delta, estimateNoise(snap.records, hardware)?.sigma ?? null, largestKept(snap.records));
      if (outlier) r.flags = [...(r.flags ?? []).filter((f) => f.rule !== "outlier"), outlier];
    }
    const held = verdict === "keep" && r.kind === "experiment" && (r.flags?.length ?? 0) > 0 && !r.adoptedBy;
    if (held) {
      reasons.push(
        `Held for review, not merged: ${r.flags!.some((f) => f.lines.length) ? "the change touches " : "it is "}${describeFlags(r.flags!)}. ` +
          "Someone with write access merges it with /autoresearch keep, or closes the pull request.",
      );
    }
    r.decision = { verdict, delta: d.delta, reasons, ...(d.threshold ? { threshold: d.threshold } : {}) };
    r.state = held ? "review" : verdict === "keep" ? "kept" : verdict === "crash" ? "crashed" : "discarded";
    await gh.upsertCheckRun(checkRunFor(r, runId, snap.config, { unsandboxed: runner.sandboxed === false }));
    await writeRecord(gh, pull, r, now(), closesWithRecord(r));
    await runner.cleanup?.(runId);
    const last = r.measurements[r.measurements.length - 1];
    report.finished.push({ n: r.n, verdict: held ? "review" : verdict, valBpb: last?.result.val_bpb ?? null });
    log.info(`${name}: ${held ? "held for review" : verdict}: ${reasons.join(" ")}`);
  }

  // A decided experiment whose PR is still open: carry out the decision (again, if a
  // previous pass stopped half way).
  // The record says why; the PR closes with the write that records it. Its branch is deleted
  // later, when the write budget has room (pruneBranches).
  if (r.state === "kept") return settleKeep(deps, snap, pull, r, log);
  if (closesWithRecord(r) && pull.state === "open") {
    await gh.updatePull(pull.number, { state: "closed" });
    pull.state = "closed";
  }
  return false;
}

/**
 * Why a finished run's result does not belong to this experiment's run, or null when it does:
 * the harness reports the run id and the commit it measured (it checks the archive it unpacked
 * against that commit), and both must be the ones the record expects.
 */
export function foreignResult(result: TrainerResult, runId: string, sha: string): string | null {
  if (result.runId != null && result.runId !== runId) return `is run ${result.runId}'s`;
  if (result.commit && result.commit !== sha) {
    return `measured ${result.commit.slice(0, 12)}, not ${sha.slice(0, 12)}`;
  }
  return null;
}

async function settleKeep(
  deps: ReconcileDeps,
  snap: Snapshot,
  pull: ExperimentPull,
  r: ExperimentRecord,
  log: Logger,
): Promise<boolean> {
  const { gh } = deps;
  const name = `${gh.repo.owner}/${gh.repo.repo}#${pull.number}`;
  if (r.kind === "baseline") {
    // Nothing to merge: closed (normally with the write that recorded it).
    if (pull.state === "open") {
      await gh.updatePull(pull.number, { state: "closed" });
      pull.state = "closed";
    }
    return false;
  }
  // Another experiment was merged earlier in this pass: the head read at the start is stale,
  // and merging this one now would merge a combination nobody measured. The next pass reads
  // the new head and re-applies this change on it.
  if (snap.moved) return false;
  // The merged tree is the measured tree: merge only if the PR head is the measured commit
  // and it was built on the current head of the default branch.
  if (r.baseSha === snap.headSha && pull.headSha === r.headSha) {
    // Several slots: experiments from the same base may finish together. Merge the best keep
    // first; the others are then re-applied on the new head and measured again.
    const better = await betterKeepFromSameBase(deps, snap, r);
    if (better !== null) {
      // Its merge moves the head (and asks for another pass, which re-applies this one).
      log.info(`${name}: kept, but #${better} from the same base did better; it is merged first`);
      return false;
    }
    const m = await gh.mergePull(pull.number, r.headSha, defuse(oneLine(`${r.title} (#${pull.number})`, 200)), mergeMessage(r));
    if (m.merged) {
      snap.moved = true;
      log.info(`${name}: merged`);
      pull.state = "closed";
      pull.merged = true;
      return true;
    }
    // The PR is the measured commit on the current head, so measuring it again would not
    // help (a protected branch, a push racing this pass): report it and try the merge again
    // on the next pass, on a fresh read of the head.
    throw new Error(`merge refused (${m.reason ?? "no reason given"}); tried again on the next pass`);
  }
  // The default branch moved while it ran: re-apply the edits on the new head and measure
  // again, or close it as superseded when they no longer apply.
  await reapply(deps, snap, pull, r, "while this experiment ran", "It improved val_bpb, but");
  return false;
}

/** val_bpb − baseline of an experiment: its decision's delta, or its finished run's result. */
async function deltaOf(deps: ReconcileDeps, r: ExperimentRecord): Promise<number | null> {
  if (r.state === "kept") return r.decision?.delta ?? null;
  if ((r.state !== "running" && r.state !== "queued") || r.baselineBpb === null) return null;
  const obs = await deps.runner.observe(runIdFor(deps.gh, r));
  if (obs.phase !== "finished" || obs.result.status !== "ok" || obs.result.val_bpb === null) return null;
  return obs.result.val_bpb - r.baselineBpb;
}

/**
 * The PR number of another open experiment built on the same base that is kept, or finished
 * and about to be decided, with a lower val_bpb than `r`; null when `r` is the best.
 */
async function betterKeepFromSameBase(deps: ReconcileDeps, snap: Snapshot, r: ExperimentRecord): Promise<number | null> {
  const mine = r.decision?.delta;
  if (mine === null || mine === undefined) return null;
  for (const p of snap.pulls) {
    const o = p.record;
    if (!o || o.n === r.n || p.state !== "open" || o.kind !== "experiment" || o.baseSha !== r.baseSha) continue;
    if (o.state !== "kept" && o.state !== "running" && o.state !== "queued") continue;
    const theirs = await deltaOf(deps, o);
    if (theirs !== null && (theirs < mine || (theirs === mine && o.n < r.n))) return p.number;
  }
  return null;
}

/**
 * Put the experiment's edits on the current head of the default branch as a new commit to
 * be measured (state queued), or close it as superseded when they no longer apply.
 */
async function reapply(
  deps: ReconcileDeps,
  snap: Snapshot,
  pull: ExperimentPull,
  r: ExperimentRecord,
  when: string,
  lead: string,
): Promise<void> {
  const { gh } = deps;
  const applied = applyEdits(snap.files, r.edits, snap.config.editable);
  const now_ = (deps.now ?? (() => new Date()))();
  if (!applied.ok) {
    r.state = "superseded";
    r.decision = {
      verdict: "discard",
      delta: r.decision?.delta ?? null,
      reasons: [`${lead} ${snap.defaultBranch} moved and the change no longer applies: ${applied.error}`],
    };
    await writeRecord(gh, pull, r, now_, true);
    return;
  }
  const newHash = treeHash(applied.files);
  const sha = await gh.commitFiles(pull.headRef, snap.headSha, prefixed(snap.config.workdir, applied.files), commitMessage(r));
  r.baseSha = snap.headSha;
  r.baseTreeHash = snap.headTreeHash;
  r.headSha = sha;
  r.treeHash = newHash;
  const flags = scanChange(snap.files, applied.files);
  if (flags.length) r.flags = flags;
  else delete r.flags;
  const base = currentBaseline(snap.records, snap.headTreeHash);
  r.baselineBpb = base?.bpb ?? null;
  r.baselineN = base?.n ?? null;
  r.attempt += 1;
  r.state = "queued";
  r.decision = null;
  r.measurements = [];
  pull.headSha = sha;
  r.reapplied = `${snap.defaultBranch} moved to ${snap.headSha.slice(0, 7)} ${when}: the change was re-applied on it and is measured again before any merge.`;
  await writeRecord(gh, pull, r, now_);
}

function prefixed(workdir: string, files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([p, t]) => [joinPath(workdir, p), t]));
}

// Commit messages quote the proposal (an LLM's words): defused, so that no mention or marker
// travels into the repository's history in the bot's name.
function commitMessage(r: ExperimentRecord): string {
  return defuse(`${oneLine(r.title, 200)}\n\n${r.hypothesis}\n\nautoresearch experiment ${r.n} (proposed by ${r.proposer})`);
}

function mergeMessage(r: ExperimentRecord): string {
  return defuse(`${r.hypothesis}\n\n${r.decision?.reasons.join(" ") ?? ""}`.trim());
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

/** What a proposer is asked, from the snapshot: the head's files, guidance, history and notes. */
function proposalRequest(snap: Snapshot, guidance: string, notes: string[], seed: number): ProposalRequest {
  return {
    guidance,
    files: snap.files,
    editablePaths: snap.config.editable,
    history: buildHistory(snap.records, typeof snap.config.minDelta === "number" ? snap.config.minDelta : undefined),
    bestBpb: bestBpb(snap.records),
    triedTreeHashes: new Set([...snap.records.map((r) => r.treeHash), snap.headTreeHash]),
    seed,
    ...(notes.length ? { reviewerNotes: notes } : {}),
  };
}

/**
 * Ask for the next proposals while the runs train, one per slot, so that a slot that frees up
 * starts its next run without waiting for the LLM. Only when the next start would be a
 * proposal (not a baseline, not a queued idea, within the night) and from the current head: a
 * proposal made from another head or guidance is thrown away when it would be used.
 */
function prepareProposals(deps: ReconcileDeps, snap: Snapshot, control: Control, want: number, log: Logger): void {
  const house = houseOf(deps);
  const c = snap.config;
  const fresh = (p: Prepared) => p.headSha === snap.headSha && p.guidanceSha === snap.guidance.sha;
  house.prepared = house.prepared.filter(fresh);
  if (house.prepared.length >= want || snap.moved || snap.pausedBy || !c.enabled) return;
  const at = (deps.now ?? (() => new Date()))();
  if (c.night?.window && !inWindow(c, at)) return;
  if (c.night?.maxExperiments) {
    const key = nightKey(c, at);
    const tonight = snap.records.filter((r) => nightKey(c, new Date(r.createdAt)) === key).length;
    if (tonight + house.prepared.length >= c.night.maxExperiments) return;
  }
  if (!currentBaseline(snap.records, snap.headTreeHash) || rebaselineReason(snap.records, snap.headTreeHash, c.noise.rebaselineEvery)) return;
  let proposer: ProposerPort;
  try {
    proposer = deps.proposerFor(c);
  } catch {
    return; // said when a proposal is needed
  }
  if (!c.proposer.askAhead || !proposer.asksAhead || nextIdea(control.record, snap.records)) return;
  const notes = notesForPrompt(control.record);
  const nextN = Math.max(0, ...snap.records.map((r) => r.n)) + 1;
  const request = proposalRequest(snap, snap.guidance.text, notes, nextN);
  const before = house.prepared.length;
  while (house.prepared.length < want) {
    const proposal = proposer.propose({ ...request, seed: nextN + house.prepared.length });
    proposal.catch(() => undefined); // said when it is used
    house.prepared.push({ headSha: snap.headSha, guidanceSha: snap.guidance.sha, proposer: proposer.name, notes: notes.join("\n"), proposal });
  }
  if (house.prepared.length > before) {
    log.info(`${deps.gh.repo.owner}/${deps.gh.repo.repo}: asked for ${house.prepared.length - before} proposal(s) ahead (${house.prepared.length} prepared)`);
  }
}

/** The oldest prepared proposal that fits this head, guidance and notes and is a new tree, or null. */
async function takePrepared(deps: ReconcileDeps, snap: Snapshot, proposer: string, notes: string[], log: Logger): Promise<Proposal | null> {
  const house = houseOf(deps);
  while (house.prepared.length) {
    const p = house.prepared.shift()!;
    if (p.headSha !== snap.headSha || p.guidanceSha !== snap.guidance.sha || p.proposer !== proposer || p.notes !== notes.join("\n")) continue;
    try {
      const proposal = await p.proposal;
      const applied = applyEdits(snap.files, proposal.edits, snap.config.editable);
      if (applied.ok && !snap.records.some((r) => r.treeHash === treeHash(applied.files))) return proposal;
    } catch (err) {
      log.warn(`${deps.gh.repo.owner}/${deps.gh.repo.repo}: a proposal prepared ahead failed (${(err as Error).message}); asking again`);
    }
  }
  return null;
}

/** Open the next experiment PR: the baseline when the head's tree has none, else a proposal. */
async function startNext(
  deps: ReconcileDeps,
  snap: Snapshot,
  inFlight: ExperimentRecord[],
  log: Logger,
  control: Control | null = null,
): Promise<number | null> {
  const { gh } = deps;
  const now = (deps.now ?? (() => new Date()))();
  const name = `${gh.repo.owner}/${gh.repo.repo}`;
  const n = Math.max(0, ...snap.records.map((r) => r.n)) + 1;
  const baseline = currentBaseline(snap.records, snap.headTreeHash);
  const common = {
    v: 1 as const,
    n,
    baseSha: snap.headSha,
    baseTreeHash: snap.headTreeHash,
    guidanceSha: snap.guidance.sha,
    attempt: 1,
    state: "queued" as const,
    measurements: [],
    decision: null,
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };

  let record: ExperimentRecord;
  let files: Record<string, string> = {};
  let ideaId: number | null = null;
  const baselineInFlight = inFlight.some((r) => r.kind === "baseline" && r.baseTreeHash === snap.headTreeHash);
  const again = baseline && !baselineInFlight ? rebaselineReason(snap.records, snap.headTreeHash, snap.config.noise.rebaselineEvery) : null;
  if (!baseline || again) {
    if (baselineInFlight) return null;
    record = {
      ...common,
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
    };
  } else {
    const proposer = deps.proposerFor(snap.config);
    // A queued idea (/autoresearch try) is the first instruction; maintainers' notes follow program.md.
    // The built-in proposer reads no text: ideas wait for a proposer that does.
    const idea = control && proposer.name !== "mutate" ? nextIdea(control.record, snap.records) : null;
    ideaId = idea?.id ?? null;
    const notes = control ? notesForPrompt(control.record) : [];
    // One asked for while the runs trained, when it was made from this head, guidance and notes
    // and still applies as a new tree; else asked for now.
    const early = idea ? null : await takePrepared(deps, snap, proposer.name, notes, log);
    const proposal =
      early ??
      (await proposer.propose(proposalRequest(snap, idea ? guidanceWithIdea(snap.guidance.text, idea) : snap.guidance.text, notes, n)));
    // Only the editable files change: re-check the proposer's work rather than trust it.
    const applied = applyEdits(snap.files, proposal.edits, snap.config.editable);
    if (!applied.ok) throw new Error(`the proposal from ${proposal.proposer} does not apply: ${applied.error}`);
    const hash = treeHash(applied.files);
    if (snap.records.some((r) => r.treeHash === hash)) {
      throw new Error(`the proposal from ${proposal.proposer} repeats an earlier experiment`);
    }
    files = prefixed(snap.config.workdir, applied.files);
    // What a person must look at before this change may be merged (src/review.ts).
    const flags = scanChange(snap.files, applied.files);
    record = {
      ...common,
      kind: "experiment",
      title: proposal.title,
      hypothesis: proposal.hypothesis,
      proposer: proposal.proposer,
      headSha: "",
      edits: proposal.edits,
      treeHash: hash,
      baselineBpb: baseline.bpb,
      baselineN: baseline.n,
    };
    // Which guidance revision this proposal used, when it changed since the previous experiment.
    const previous = [...snap.records].filter((r) => r.kind === "experiment" && r.guidanceSha).sort((a, b) => b.n - a.n)[0];
    if (previous?.guidanceSha && previous.guidanceSha !== snap.guidance.sha) record.previousGuidanceSha = previous.guidanceSha;
    if (ideaId !== null) record.ideaId = ideaId;
    if (flags.length) record.flags = flags;
  }

  const branch = branchName(n, record.title);
  record.headSha = await gh.commitFiles(branch, snap.headSha, files, commitMessage(record));
  await gh.ensureLabels(LABELS);
  const number = await gh.createPull({
    // Plain text, but an LLM's: defused and bounded like everything quoted.
    title: defuse(oneLine(`[autoresearch ${n}] ${record.title}`, 200)),
    head: branch,
    base: snap.defaultBranch,
    body: renderBody(record),
    // Labelled with the decision, in the write that records it: one write fewer per experiment.
    labels: [],
  });
  log.info(`${name}#${number}: opened experiment ${n}: ${record.title}`);
  const pull: ExperimentPull = {
    number,
    state: "open",
    merged: false,
    author: gh.botLogin ?? "",
    headRepo: `${gh.repo.owner}/${gh.repo.repo}`,
    headRef: branch,
    headSha: record.headSha,
    baseRef: snap.defaultBranch,
    labels: [],
    title: record.title,
    body: renderBody(record),
    record,
  };
  snap.pulls.push(pull);
  snap.records.push(record);
  if (control && ideaId !== null && markUsedIdeas(control.record, snap.records)) {
    await writeControl(gh, control).catch((err: Error) => log.warn(`${name}: the control issue could not be updated: ${err.message}`));
  }
  // Submit right away rather than on the next pass.
  await advance(deps, snap, pull, record, { waiting: null, submitted: [], finished: [], proposed: [], errors: [], again: false }, log);
  return n;
}

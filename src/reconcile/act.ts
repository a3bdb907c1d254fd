// Act: carry out a plan's steps through the ports, in order, one experiment at a time. A step
// that fails stops that experiment's later steps (the error is reported and the next pass plans
// again); the other experiments go on.
import { LABELS, branchName, renderBody, writeRecord } from "../ledger/index.js";
import { defuse, oneLine } from "../markdown.js";
import { commitMessage, type Finished, type Step } from "./plan.js";
import type { Snapshot } from "./snapshot.js";
import type { Clock, Logger } from "../log.js";
import type { Config } from "../config.js";
import type { ExperimentPull, ExperimentRecord, GitHubPort, RunnerPort, RunSpec } from "../types.js";
import { runIdFor } from "./snapshot.js";

export interface ActDeps {
  gh: GitHubPort;
  runner: RunnerPort;
  clock: Clock;
  log: Logger;
}

/** What carrying out a pass's steps did. */
export interface Acted {
  /** A merge moved the default branch (or it moved under the pass): plan again on the new head. */
  moved: boolean;
  submitted: number[];
  finished: Finished[];
  errors: string[];
}

export function nothingActed(): Acted {
  return { moved: false, submitted: [], finished: [], errors: [] };
}

/** Carry out one experiment's steps; a failure is reported in `out` and stops its later steps. */
export async function actPull(d: ActDeps, snap: Snapshot, pull: ExperimentPull, steps: Step[], out: Acted): Promise<void> {
  try {
    for (const step of steps) {
      if (!(await actStep(d, snap, pull, step, out))) break;
    }
  } catch (err) {
    const msg = `#${pull.number}: ${(err as Error).message}`;
    out.errors.push(msg);
    d.log.error(`${snap.name} ${msg} (retried on the next pass)`);
  }
}

/** Carry out one step; false: the experiment's later steps are not for now. */
async function actStep(d: ActDeps, snap: Snapshot, pull: ExperimentPull, s: Step, out: Acted): Promise<boolean> {
  const { gh, runner } = d;
  switch (s.do) {
    case "log":
      d.log[s.level](`${snap.name}#${pull.number}: ${s.msg}`);
      return true;
    case "submit": {
      const source = await gh.archiveSource(s.record.headSha);
      await runner.submit(runSpec(snap.config, gh, s.record, pull.number, source));
      if (s.first) out.submitted.push(s.record.n);
      return true;
    }
    case "cancel":
      await runner.cancel(s.runId);
      return true;
    case "cleanup":
      if (s.quiet) await runner.cleanup?.(s.runId).catch(() => undefined);
      else await runner.cleanup?.(s.runId);
      return true;
    case "check":
      await gh.upsertCheckRun(s.check);
      return true;
    case "write":
      await writeRecord(gh, pull, s.record, d.clock(), s.close);
      if (s.finished) out.finished.push(s.finished);
      return true;
    case "close":
      if (pull.state === "open") {
        await gh.updatePull(pull.number, { state: "closed" });
        pull.state = "closed";
      }
      return true;
    case "reapply": {
      const sha = await gh.commitFiles(pull.headRef, snap.headSha, s.files, s.message);
      s.record.headSha = sha;
      pull.headSha = sha;
      await writeRecord(gh, pull, s.record, d.clock());
      return true;
    }
    case "merge": {
      // The merge API guards the PR's head, not the base: if the default branch moved since the
      // snapshot (a push, another bot), GitHub would merge the change onto a tree nobody
      // measured. Read the head again first; when it moved, the next pass re-applies the change.
      // (What is left is the moment between this read and the merge; a tree merged in it has no
      // baseline, so the next experiment measures it first.)
      const head = await gh.getBranchSha(snap.defaultBranch);
      if (head !== snap.headSha) {
        d.log.info(`${snap.name}#${pull.number}: ${snap.defaultBranch} moved to ${head.slice(0, 7)} during the pass; not merged, re-applied on it next`);
        out.moved = true;
        return false;
      }
      const m = await gh.mergePull(pull.number, s.sha, s.title, s.message);
      if (!m.merged) {
        // The PR is the measured commit on the current head, so measuring it again would not
        // help (a protected branch, a push racing this pass): report it and try the merge again
        // on the next pass, on a fresh read of the head.
        throw new Error(`merge refused (${m.reason ?? "no reason given"}); tried again on the next pass`);
      }
      out.moved = true;
      pull.state = "closed";
      pull.merged = true;
      d.log.info(`${snap.name}#${pull.number}: merged`);
      return true;
    }
  }
}

/** Open a new experiment's PR: its commit on its own branch, then the PR with its record. */
export async function openExperiment(d: ActDeps, snap: Snapshot, record: ExperimentRecord, files: Record<string, string>): Promise<ExperimentPull> {
  const { gh } = d;
  const branch = branchName(record.n, record.title);
  record.headSha = await gh.commitFiles(branch, snap.headSha, files, commitMessage(record));
  await gh.ensureLabels(LABELS);
  const body = renderBody(record);
  const number = await gh.createPull({
    // Plain text, but an LLM's: defused and bounded like everything quoted.
    title: defuse(oneLine(`[autoresearch ${record.n}] ${record.title}`, 200)),
    head: branch,
    base: snap.defaultBranch,
    body,
    // Labelled with the decision, in the write that records it: one write fewer per experiment.
    labels: [],
  });
  d.log.info(`${snap.name}#${number}: opened experiment ${record.n}: ${record.title}`);
  return {
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
    body,
    record,
  };
}

function runSpec(c: Config, gh: GitHubPort, r: ExperimentRecord, pull: number, source: RunSpec["source"]): RunSpec {
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
    // Ahead of experiments queued in the runner (queue_ahead): what others wait on to be decided.
    urgent: r.kind === "baseline" || r.attempt > 1,
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

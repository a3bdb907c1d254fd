// Snapshot: everything a pass decides from, read once at its start. Desired state from the
// default branch (config, program.md, the editable files), observed state from GitHub (the
// ledger, the control issue) and from the runner (every run a record waits for).
import { CONFIG_PATH, parseConfig, type Config } from "../config.js";
import { configCheck } from "../checks.js";
import { treeHash } from "../ledger/index.js";
import { inFlight } from "../record-state.js";
import { readControl, type Control } from "../steering/control.js";
import { readLedgerAll } from "../trust.js";
import type { Logger } from "../log.js";
import type { CheckRunSpec, ExperimentPull, ExperimentRecord, GitHubPort, RunnerPort, RunObservation } from "../types.js";

/** Runner kinds a repo's config can name; runners with other names (test doubles) accept any. */
const RUNNER_KINDS: string[] = ["local", "kubernetes"];

export interface Snapshot {
  /** owner/name, for the log. */
  name: string;
  /** The pass's time: every decision of the pass uses it. */
  at: Date;
  config: Config;
  defaultBranch: string;
  headSha: string;
  files: Record<string, string>;
  headTreeHash: string;
  guidance: { text: string; sha: string };
  pulls: ExperimentPull[];
  records: ExperimentRecord[];
  /** Experiment numbers taken by the bot's own PRs whose record cannot be read (never reused). */
  unreadable: number[];
  /** Branches of this repository that an experiment-like pull request, anyone's, is opened from. */
  prHeads: Set<string>;
  control: Control;
  /** Who paused the loop (/autoresearch pause): runs are cancelled and nothing is submitted. */
  pausedBy: string | null;
  /** What the runner says of the run each record waits for, by run id. */
  runs: Map<string, RunObservation>;
  /** What every run id of this repository starts with. */
  runIdPrefix: string;
  /** Slots the runner has (the config may ask for fewer). */
  runnerSlots: number;
  /** The runner holds runs submitted beyond its slots and starts each as a slot frees. */
  runnerQueues: boolean;
  /** The runner's name (local, kubernetes), for what the loop says of it. */
  runnerName: string;
  /** False when experiments run without a sandbox: every check run says so. */
  unsandboxed: boolean;
}

/** Why the loop cannot run on this head: said on a check run of the head commit. */
export interface Blocked {
  waiting: string;
  check: CheckRunSpec;
}

/** What every run id of a repository starts with. */
export function runIdPrefix(repo: GitHubPort["repo"]): string {
  return `${`${repo.owner}-${repo.repo}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-")}-`;
}

/** A run's id: the repository's prefix, the experiment number and the attempt. */
export function runIdWith(prefix: string, r: Pick<ExperimentRecord, "n" | "attempt">): string {
  return `${prefix}${r.n}-${r.attempt}`;
}

export function runIdFor(gh: Pick<GitHubPort, "repo">, r: Pick<ExperimentRecord, "n" | "attempt">): string {
  return runIdWith(runIdPrefix(gh.repo), r);
}

export function joinPath(workdir: string, path: string): string {
  const w = workdir.replace(/^\.\/?/, "").replace(/\/$/, "");
  return w ? `${w}/${path}` : path;
}

export interface SnapshotDeps {
  gh: GitHubPort;
  runner: RunnerPort;
  env: Record<string, string | undefined>;
  at: Date;
  log: Logger;
}

/** Read the pass's snapshot, or why the loop cannot run on the default branch's head. */
export async function readSnapshot(d: SnapshotDeps): Promise<Snapshot | Blocked> {
  const { gh, runner } = d;
  const defaultBranch = await gh.getDefaultBranch();
  const headSha = await gh.getBranchSha(defaultBranch);
  const configFile = await gh.readConfig(headSha);
  const parsed = parseConfig(configFile?.text ?? null, d.env);
  if (!parsed.ok) {
    const problems = parsed.errors.map((e) => `${e.path || "(file)"}: ${e.message}`);
    return { waiting: `invalid config: ${problems.join("; ")}`, check: configCheck(headSha, `${CONFIG_PATH} is invalid`, problems) };
  }
  const config = parsed.config;
  // The runner is chosen per process (AUTORESEARCH_RUNNER); the repo's `runner:` must agree,
  // and the runner must be able to run this repo (e.g. a usable Kubernetes Job template).
  // Unset, `runner:` means whichever runner the bot has; only an explicit one must match.
  const runnerProblems: string[] = [];
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
    return { waiting: `runner: ${runnerProblems.join("; ")}`, check: configCheck(headSha, "autoresearch cannot run experiments", runnerProblems) };
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
    return { waiting: problems.join("; "), check: configCheck(headSha, "autoresearch cannot start", problems) };
  }

  const control = await readControl(gh, d.log);
  const { pulls, unreadable, heads } = await readLedgerAll(gh, d.log);
  const records = pulls.flatMap((p) => (p.record ? [p.record] : []));
  // Every run a record waits for, observed once: the plan reads these, never the runner.
  const runs = new Map<string, RunObservation>();
  for (const r of records) {
    if (!inFlight(r)) continue;
    const runId = runIdFor(gh, r);
    runs.set(runId, await runner.observe(runId));
  }
  return {
    name: `${gh.repo.owner}/${gh.repo.repo}`,
    at: d.at,
    config,
    defaultBranch,
    headSha,
    files,
    headTreeHash: treeHash(files),
    guidance,
    pulls,
    records,
    unreadable,
    prHeads: new Set(heads),
    control,
    pausedBy: control.record.paused?.by ?? null,
    runs,
    runIdPrefix: runIdPrefix(gh.repo),
    runnerSlots: runner.slots,
    runnerQueues: runner.queues === true,
    runnerName: runner.name,
    unsandboxed: runner.sandboxed === false,
  };
}

// Shared vocabulary of the bot: the experiment record kept in PR bodies, the trainer's
// result, and the three ports (GitHub, runner, proposer) the reconcile loop talks through.
// Pure modules and adapters import from here so that each side can be tested alone.
import type { WriteBudgetView } from "./github/budget.js";

/** One SEARCH/REPLACE edit of one editable file. `search` must occur exactly once. */
export interface Edit {
  path: string;
  search: string;
  replace: string;
}

/** Harness result statuses (see trainer/harness.py). */
export type RunStatus = "ok" | "crash" | "oom" | "timeout" | "nan" | "over_budget";

/** The JSON the harness emits for one run (validated with zod in src/runner/result.ts). */
export interface TrainerResult {
  status: RunStatus;
  val_bpb: number | null;
  exit_code: number | null;
  reason: string;
  log_tail: string;
  /** Every `key: value` of the summary block, numbers parsed (training_seconds, peak_vram_mb, ...). */
  summary: Record<string, number | string>;
  /** Where the run stopped: fetch/prepare failures are infrastructure, not the experiment. */
  stage?: "fetch" | "prepare" | "train" | "eval";
  /** The commit the harness measured (a local git export resolves it; an archive's folder is checked against it). */
  commit?: string | null;
  /** The run id the harness was started with. */
  runId?: string | null;
  /** How the commands were isolated: bwrap, container (a Kubernetes pod) or none. */
  sandbox?: string;
  /** What the harness did that a reader should know (data prepared again, no sandbox). */
  notes?: string[];
  /** What the run trained on, seen from outside (GPU names, else CPU model and count): noise is per hardware. */
  hardware?: string;
  /**
   * How val_bpb was measured: `outside` (the default branch's scorer on weights the run saved, with
   * a causality probe) or `self_reported` (what train.py printed). Absent: self-reported.
   * `pending` (trained, to be scored by a later step) and `probe` (a causality probe's own result)
   * are the steps of a Kubernetes run; the runner combines them and never reports them.
   */
  evaluation?: "outside" | "self_reported" | "pending" | "probe";
  /**
   * The run failed for a reason of the machine, not of the change (the disk filled up): like a
   * failed fetch, it is started again a bounded number of times and never counts against it.
   */
  infrastructure?: boolean;
}

export type Verdict = "keep" | "discard" | "crash";

/** One measurement of one experiment commit. */
export interface Measurement {
  runId: string;
  sha: string;
  result: TrainerResult;
  finishedAt: string;
}

/**
 * Lifecycle of an experiment PR:
 *   queued   → PR open, run not yet submitted (or lost and to be resubmitted)
 *   running  → run submitted to the runner
 *   review   → measured as an improvement, but its change touches what decides its own score
 *              (src/review.ts): the PR stays open until a person keeps it (or closes it)
 *   kept     → merged (or, for a baseline, measured and closed)
 *   discarded / crashed / superseded → closed
 */
export type ExperimentState = "queued" | "running" | "review" | "kept" | "discarded" | "crashed" | "superseded";

/** The bar an experiment was held to when it was decided (src/policy.ts), kept in its record. */
export interface DecisionThreshold {
  /** Improvement needed to keep it, and to earn another run. */
  keep: number;
  promising: number;
  source: "min_delta" | "noise" | "floor";
  /** σ of one run and its degrees of freedom (null / 0 while not known). */
  sigma: number | null;
  df: number;
  hardware: string | null;
  /** Successful runs of the experiment and of its baseline. */
  runs: number;
  baselineRuns: number;
}

/** A rule of src/review.ts that a change matched, with the changed lines that matched it. */
export interface ReviewFlag {
  rule: string;
  what: string;
  lines: { path: string; line: number; change: "+" | "-"; text: string }[];
}

/** The hidden machine-readable record in every experiment PR body. */
export interface ExperimentRecord {
  v: 1;
  /** Experiment number n (branch autoresearch/<n>-<slug>). */
  n: number;
  kind: "baseline" | "experiment";
  title: string;
  hypothesis: string;
  /** e.g. "mutate" or "openai:gpt-4o-mini". */
  proposer: string;
  /** Default-branch head the experiment commit was built on. */
  baseSha: string;
  /** The experiment commit (what is measured and what may be merged). */
  headSha: string;
  /** Edits relative to the base, kept so the change can be re-applied on a moved default branch. */
  edits: Edit[];
  /** sha256 over the editable files after the edits (dedupe and baseline matching). */
  treeHash: string;
  /** sha256 over the editable files at baseSha (which baseline measurement applies). */
  baseTreeHash: string;
  /** Git blob sha of program.md used for the proposal (the guidance revision). */
  guidanceSha: string | null;
  /** val_bpb this experiment is compared against (null for a baseline). */
  baselineBpb: number | null;
  /** Experiment number whose measurement gave `baselineBpb` (shown in the PR body), when known. */
  baselineN?: number | null;
  /** How many times the run was started (the run id carries it). */
  attempt: number;
  state: ExperimentState;
  measurements: Measurement[];
  decision: { verdict: Verdict; delta: number | null; reasons: string[]; threshold?: DecisionThreshold } | null;
  createdAt: string;
  updatedAt: string;
  /** program.md blob sha of the previous experiment's proposal, when it differs from `guidanceSha`. */
  previousGuidanceSha?: string | null;
  /** Further measurements asked for (`/autoresearch rerun`) and not yet started. */
  reruns?: number;
  /** Who adopted this experiment with `/autoresearch keep`: merged unless its run crashes. */
  adoptedBy?: string | null;
  /** The queued idea (`/autoresearch try`, by its comment id) this proposal was asked to follow. */
  ideaId?: number | null;
  /** Why the change was put on a newer commit of the default branch (it moved while it ran). */
  reapplied?: string;
  /** Delivery ids of the check-run button clicks already carried out (newest last, bounded). */
  clicks?: string[];
  /** What a person must look at before this change may be merged (empty or absent: nothing). */
  flags?: ReviewFlag[];
}

/** An experiment PR as read back from GitHub. */
export interface ExperimentPull {
  number: number;
  state: "open" | "closed";
  merged: boolean;
  /** Login of who opened it (the ledger trusts only the app's bot user). */
  author: string;
  /** owner/name of the repository its head branch is in; null when not known (a closed PR). */
  headRepo: string | null;
  headRef: string;
  headSha: string;
  baseRef: string;
  labels: string[];
  title: string;
  body: string;
  record: ExperimentRecord | null;
}

export interface RepoRef {
  owner: string;
  repo: string;
}

// ---------------------------------------------------------------- GitHub port

export interface CheckRunOutput {
  title: string;
  summary: string;
  text?: string;
}

export interface CheckRunSpec {
  name: string;
  headSha: string;
  externalId: string;
  status: "queued" | "in_progress" | "completed";
  conclusion?: "success" | "failure" | "neutral" | "timed_out" | "cancelled" | "action_required";
  output: CheckRunOutput;
  detailsUrl?: string;
  /** Buttons shown on the check run (requested_action webhooks). */
  actions?: { label: string; description: string; identifier: string }[];
}

/** The repository's configuration as read from GitHub (GitHubPort.readConfig). */
export interface ConfigFileText {
  text: string;
  files: string[];
}

/** Everything reconcile does on GitHub, for one repository. */
export interface GitHubPort {
  readonly repo: RepoRef;
  /** The app's own bot user (`<slug>[bot]`): only what it wrote is the ledger. Null when unknown. */
  readonly botLogin: string | null;
  /** The installation's write budget (src/github/budget.ts); absent: no limit is known. */
  readonly budget?: WriteBudgetView | undefined;
  getDefaultBranch(): Promise<string>;
  getBranchSha(branch: string): Promise<string>;
  /** File text at ref, or null when the file does not exist. */
  readFile(path: string, ref: string): Promise<{ text: string; sha: string } | null>;
  /**
   * `.github/autoresearch.yml` as Probot reads an app's configuration: the repository's file at
   * `sha`, else the one in the owner's `.github` repository, merged over the files its
   * `_extends` names. The text is YAML (src/config.ts parses it); `files` says where it came
   * from (`owner/repo:path`, the repository's own file last). null: no file anywhere.
   */
  readConfig(sha: string): Promise<ConfigFileText | null>;
  /**
   * Every experiment PR, open and closed: those on `autoresearch/…` branches or carrying a
   * record or the `autoresearch` label (src/trust.ts decides which count).
   */
  listExperimentPulls(): Promise<ExperimentPull[]>;
  /**
   * Create (or force-move) `branch` to one new commit on `parentSha` that sets `files`
   * (path → full text). Returns the new commit sha. With `files` empty the commit is empty.
   */
  commitFiles(branch: string, parentSha: string, files: Record<string, string>, message: string): Promise<string>;
  createPull(p: { title: string; head: string; base: string; body: string; labels: string[] }): Promise<number>;
  /** Title, body, state and labels in one write (each optional; labels replace the set). */
  updatePull(number: number, p: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void>;
  setLabels(number: number, labels: string[]): Promise<void>;
  ensureLabels(labels: { name: string; color: string; description: string }[]): Promise<void>;
  comment(number: number, body: string): Promise<void>;
  /** Squash-merge only if the PR head is still `sha`. */
  mergePull(number: number, sha: string, title: string, message: string): Promise<{ merged: boolean; reason?: string }>;
  /**
   * Delete experiment branches, each only while it still points at the commit given (one that
   * moved is left alone); a branch already gone counts as deleted.
   */
  deleteBranches(branches: { name: string; sha: string }[]): Promise<void>;
  /** Branches and their commits are written by git push, which costs no API write (commitFiles, deleteBranches). */
  readonly refsByGit?: boolean;
  /** The experiment branches (`autoresearch/<n>-…`) that exist, with the commit each points at. */
  listExperimentBranches(): Promise<{ name: string; sha: string }[]>;
  /** The message of the commit `sha` (a read). */
  commitMessage(sha: string): Promise<string>;
  /** Create or update the check run identified by (name, headSha, externalId). */
  upsertCheckRun(spec: CheckRunSpec): Promise<void>;
  /** Where a runner can download the repository at `sha` (tarball) and a short-lived read token. */
  archiveSource(sha: string): Promise<{ url: string; token: string | null }>;

  // Steering: comments, permissions, reactions and the bot's own issues.
  /** Issue and PR comments of the repository created or edited at or after `since` (ISO time), oldest first. */
  listCommentsSince(since: string): Promise<IssueComment[]>;
  /** Review comments on the diffs of the repository's PRs created or edited at or after `since`, oldest first. */
  listReviewCommentsSince(since: string): Promise<IssueComment[]>;
  /** The user's permission on the repository: admin | maintain | write | triage | read | none. */
  getPermission(login: string): Promise<string>;
  listReactions(commentId: number): Promise<{ user: string; userType: string; content: string }[]>;
  react(commentId: number, content: "+1" | "-1" | "eyes" | "confused"): Promise<void>;
  /** Issues (not pull requests) carrying `label`, open and closed, whoever opened them. */
  listIssues(label: string): Promise<IssueInfo[]>;
  createIssue(p: { title: string; body: string; labels: string[] }): Promise<number>;
  updateIssue(number: number, p: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void>;
  /** Create `branch` at `sha` again (after it was deleted); nothing happens when it exists. */
  restoreBranch(branch: string, sha: string): Promise<void>;
}

export interface IssueComment {
  id: number;
  /** The issue or pull request it is on. */
  issueNumber: number;
  user: string;
  /** "User" or "Bot". */
  userType: string;
  body: string;
  createdAt: string;
  updatedAt: string;
  /** How many reactions it has (0: certainly not acknowledged yet). */
  reactions: number;
  /** Set for a review comment on a PR's diff: where it points. */
  review?: { path: string; line: number | null };
}

export interface IssueInfo {
  number: number;
  /** Login of who opened it. */
  author: string;
  title: string;
  body: string;
  state: "open" | "closed";
  labels: string[];
}

// ---------------------------------------------------------------- runner port

export interface RunSpec {
  /** Deterministic id: one per (repo, experiment, attempt); a second submit is a no-op. */
  runId: string;
  repo: RepoRef;
  pull: number;
  sha: string;
  source: { url: string; token: string | null };
  workdir: string;
  trainCmd: string;
  prepareCmd: string | null;
  /** Files (relative to workdir) whose content keys the prepared-data cache. */
  prepareFiles: string[];
  budgetSeconds: number;
  /** Wall-clock seconds the training may take beyond the budget before its result is not a measurement. */
  evalAllowanceSeconds: number;
  /** AUTORESEARCH_SEED for the training: repeated runs of one tree get different seeds. */
  seed?: number;
  /**
   * Outside evaluation (config `evaluation`): val_bpb is scored by `scoreCmd` from the trusted tree
   * at `sha` (the experiment's base on the default branch, downloaded from `url` with the same
   * token), against the model that `serveCmd` serves from the experiment's tree. Absent: the run's
   * own val_bpb is taken, and says it was self-reported.
   */
  evaluation?: { scoreCmd: string; serveCmd: string; sha: string; url: string };
  /** Hard kill after this many seconds (null: the harness default, 2 × budget + 120). */
  timeoutSeconds: number | null;
  /**
   * A runner that queues starts this run before those queued without it: a baseline's (the
   * experiments on its head are decided by it), or a further run of an experiment measured
   * already (a confirmation, the noise): each holds experiments waiting on it.
   */
  urgent?: boolean;
}

export type RunObservation =
  | { phase: "pending" | "running"; runId: string }
  | { phase: "finished"; runId: string; result: TrainerResult }
  | { phase: "missing"; runId: string };

export interface RunnerPort {
  readonly name: string;
  /** Idempotent: submitting a run id that exists does nothing. */
  submit(spec: RunSpec): Promise<void>;
  observe(runId: string): Promise<RunObservation>;
  cancel(runId: string): Promise<void>;
  /** Run ids known for a repo (in flight or finished and not yet cleaned). */
  list(repo: RepoRef): Promise<string[]>;
  /** Slots available in total. */
  readonly slots: number;
  /**
   * True when runs submitted beyond the slots wait in the runner and each starts the moment a
   * slot frees (the local runner); then a repository's `queue_ahead` keeps that many submitted.
   */
  readonly queues?: boolean;
  /** False when experiments run without a sandbox (AUTORESEARCH_SANDBOX=off): every check run says so. */
  readonly sandboxed?: boolean;
  /** Called with the run id whenever a run finishes (triggers a reconcile). */
  onFinished(listener: (runId: string, repo: RepoRef) => void): void;
  /** Forget a finished run once its result is recorded on GitHub (optional). */
  cleanup?(runId: string): Promise<void>;
  /** Problems that keep runs for this repo from starting (e.g. an unusable Job template); empty when none. */
  validate?(repo: RepoRef): Promise<string[]>;
  /** Called with a repository that validate() turned away once runs can start again (a full disk was freed). */
  onReady?(listener: (repo: RepoRef) => void): void;
}

// ---------------------------------------------------------------- proposer port

export interface HistoryEntry {
  n: number;
  title: string;
  hypothesis: string;
  verdict: Verdict | "running" | "superseded" | "baseline" | "review";
  valBpb: number | null;
  delta: number | null;
  /** "better" | "within noise" | "worse" | "crash" — what the proposer is told. */
  outcome: "better" | "within noise" | "worse" | "crash" | "pending" | "baseline";
  reason: string | null;
  treeHash: string;
}

export interface ProposalRequest {
  guidance: string;
  /** Editable files at the default-branch head (path → text). */
  files: Record<string, string>;
  editablePaths: string[];
  history: HistoryEntry[];
  bestBpb: number | null;
  /** Tree hashes already tried; a proposal producing one of these is rejected. */
  triedTreeHashes: Set<string>;
  /** Deterministic seed for the built-in proposer (the experiment number). */
  seed: number;
  /** Notes from maintainers (PR discussion by users with write access), oldest first. */
  reviewerNotes?: string[];
}

export interface Proposal {
  title: string;
  hypothesis: string;
  edits: Edit[];
  /** The editable files after the edits (already applied and checked by the proposer). */
  files: Record<string, string>;
  proposer: string;
}

export interface ProposerPort {
  readonly name: string;
  /**
   * Its answers take long (a model): the next proposal is asked for while runs train, so that no
   * slot waits for it. The built-in proposer answers at once and is asked when a slot is free.
   */
  readonly asksAhead?: boolean;
  propose(req: ProposalRequest): Promise<Proposal>;
}

// In-memory fakes of the ports reconcile() talks through, for specification tests of the loop:
//
// - FakeGitHub: one repository (branches → commits → file maps), pull requests with bodies,
//   labels, state and merges (squash, with the head-sha guard GitHub applies), check runs keyed
//   by (name, head sha, external id), comments, and helpers for what people do (push to the
//   default branch, close a PR) and for what GitHub does when it fails (an injected error).
// - FakeRunner: records the runs it is given; tests finish them by hand with a TrainerResult.
// - ScriptedProposer: returns the proposals a test queues (or throws the errors it queues), and
//   the built-in mutation proposer once the script runs out.
//
// Every GitHub call is logged with whether it reads or writes, so tests can assert that a pass
// with nothing to do writes nothing.
import { createHash } from "node:crypto";
import { CONFIG_PATH } from "../../src/config.js";
import { applyEdits } from "../../src/edits.js";
import type { WriteBudget } from "../../src/github/budget.js";
import { GitHubError } from "../../src/github/octokit.js";
import { decodeRecord, LABEL, parseBranchName } from "../../src/ledger/index.js";
import { proposeMutation } from "../../src/proposers/mutate.js";
import type {
  CheckRunSpec,
  Edit,
  ExperimentPull,
  ExperimentRecord,
  GitHubPort,
  IssueComment,
  IssueInfo,
  Proposal,
  ProposalRequest,
  ProposerPort,
  ConfigFileText,
  RepoRef,
  RunnerPort,
  RunObservation,
  RunSpec,
  TrainerResult,
} from "../../src/types.js";

export { GitHubError };

// ================================================================== GitHub

export interface FakeCommit {
  sha: string;
  parents: string[];
  message: string;
  files: Record<string, string>;
}

export interface FakePull {
  number: number;
  title: string;
  body: string;
  head: string;
  /** The head commit: follows the head branch while the PR is open (as on GitHub). */
  headSha: string;
  base: string;
  labels: string[];
  state: "open" | "closed";
  merged: boolean;
  mergeCommitSha: string | null;
  closedBy: "bot" | "person" | null;
  /** Who opened it (the bot, unless a test says otherwise). */
  author: string;
  /** The repository its head branch is in (owner/name): the base repository unless a fork. */
  headRepo: string;
}

export interface FakeCheckRun {
  id: number;
  name: string;
  headSha: string;
  externalId: string;
  status: CheckRunSpec["status"];
  conclusion: CheckRunSpec["conclusion"] | null;
  output: CheckRunSpec["output"];
  /** Every state the check run went through, oldest first. */
  history: { status: CheckRunSpec["status"]; conclusion: CheckRunSpec["conclusion"] | null; title: string }[];
}

export interface FakeComment {
  number: number;
  body: string;
  /** Set for every comment (the bot's are by BOT_LOGIN). */
  id?: number;
  user?: string;
  userType?: string;
  at?: string;
  reactions?: { user: string; userType: string; content: string }[];
}

function asIssueComment(c: FakeComment): IssueComment {
  return {
    id: c.id!,
    issueNumber: c.number,
    user: c.user ?? BOT_LOGIN,
    userType: c.userType ?? "Bot",
    body: c.body,
    createdAt: c.at ?? "",
    updatedAt: c.at ?? "",
    reactions: c.reactions?.length ?? 0,
  };
}

export interface FakeIssue {
  number: number;
  /** Who opened it (the bot, unless a test says otherwise). */
  author?: string;
  title: string;
  body: string;
  state: "open" | "closed";
  labels: string[];
}

/**
 * The config of the single-run loop most specification tests describe: one baseline run, one run
 * per experiment, and min_delta 0.001, unless the text sets them (the noise and confirmation
 * rules are specified in test/noise.test.ts).
 */
export function singleRun(config: string): string {
  let out = config && !config.endsWith("\n") ? `${config}\n` : config;
  if (!/^min_delta\s*:/m.test(out)) out += "min_delta: 0.001\n";
  if (!/^noise\s*:/m.test(out)) out += "noise:\n  baseline_runs: 1\n  max_runs: 1\n";
  // Scripted model replies are used in order: a proposal asked ahead and thrown away would use
  // one up (test/e2e/ask-ahead.test.ts covers asking ahead).
  if (!/^proposer\s*:/m.test(out)) out += "proposer:\n  ask_ahead: false\n";
  return out;
}

/** The login the fake gives the bot's own comments and reactions. */
export const BOT_LOGIN = "autoresearch-bot[bot]";

export interface Call {
  op: keyof GitHubPort | string;
  write: boolean;
  args: unknown[];
}

type PortMethod = Exclude<keyof GitHubPort, "repo">;

interface Injected {
  op: PortMethod;
  error: Error;
  /** The call takes effect first and then fails (the response was lost). */
  afterEffect: boolean;
}

const WRITES = new Set<string>([
  "commitFiles",
  "createPull",
  "updatePull",
  "setLabels",
  "ensureLabels",
  "comment",
  "mergePull",
  "deleteBranches",
  "upsertCheckRun",
  "react",
  "createIssue",
  "updateIssue",
  "restoreBranch",
]);

const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");

/** The blob sha git gives a file's content. */
export function blobSha(text: string): string {
  return sha1(`blob ${Buffer.byteLength(text, "utf8")}\0${text}`);
}

/** What GitHub's adapter refuses: the bot writes refs only on experiment branches. */
function ownBranch(branch: string): void {
  if (!parseBranchName(branch)) throw new GitHubError(`refusing to write the ref ${JSON.stringify(branch)}: the bot writes only autoresearch/<n>-… branches`, null);
}

export class FakeGitHub implements GitHubPort {
  readonly repo: RepoRef;
  botLogin: string | null = BOT_LOGIN;
  /** The installation's write budget, when a test gives one (src/github/budget.ts). */
  budget: WriteBudget | undefined = undefined;
  /** As the Octokit port with git push on: branches cost no API write. */
  refsByGit = false;
  readonly defaultBranch: string;
  readonly commits = new Map<string, FakeCommit>();
  readonly branches = new Map<string, string>();
  readonly pulls: FakePull[] = [];
  readonly checkRuns: FakeCheckRun[] = [];
  readonly comments: FakeComment[] = [];
  /** Review comments on PR diffs (their own id sequence, like on GitHub). */
  readonly reviewComments: (FakeComment & { path: string; line: number })[] = [];
  readonly labels = new Map<string, { name: string; color: string; description: string }>();
  readonly issues: FakeIssue[] = [];
  /** Collaborator permissions by login (admin | maintain | write | triage | read); others: none. */
  readonly permissions = new Map<string, string>();
  readonly calls: Call[] = [];
  /** Bumped on every change of state (a write that changes nothing does not bump it). */
  revision = 0;
  /** Each call waits this long before it is carried out (a network's round trip). */
  latencyMs = 0;
  /** Calls under way now, and the most there were at once. */
  inFlight = 0;
  peakInFlight = 0;
  private injected: Injected[] = [];
  private refusals: string[] = [];
  private nextNumber = 1;
  private nextCheckId = 1;
  private nextCommentId = 1000;
  private clock = Date.parse("2026-01-01T00:00:00Z");
  private commitCounter = 0;

  constructor(o: { owner?: string; repo?: string; defaultBranch?: string; files: Record<string, string> }) {
    this.repo = { owner: o.owner ?? "acme", repo: o.repo ?? "research" };
    this.defaultBranch = o.defaultBranch ?? "main";
    const root = this.newCommit([], { ...o.files }, "Initial commit");
    this.branches.set(this.defaultBranch, root);
  }

  // ---------------------------------------------------------------- call log and failures

  get reads(): number {
    return this.calls.filter((c) => !c.write).length;
  }

  get writes(): number {
    return this.calls.filter((c) => c.write).length;
  }

  callsTo(op: PortMethod): Call[] {
    return this.calls.filter((c) => c.op === op);
  }

  /** Make the next call of `op` throw a GitHubError (HTTP 500 unless told otherwise). */
  failNext(op: PortMethod, o: { status?: number; message?: string; afterEffect?: boolean } = {}): void {
    const status = o.status ?? 500;
    const error = new GitHubError(o.message ?? `GitHub ${op} failed (HTTP ${status}): Server Error`, status);
    this.injected.push({ op, error, afterEffect: o.afterEffect ?? false });
  }

  /** Make the next merge be refused as GitHub refuses it (e.g. a protected branch: 405). */
  refuseNextMerge(reason = "HTTP 405: At least 1 approving review is required by reviewers with write access."): void {
    this.refusals.push(reason);
  }

  private async call<T>(op: PortMethod, args: unknown[], fn: () => T): Promise<T> {
    this.calls.push({ op, write: WRITES.has(op), args });
    // As the Octokit client's requests do: a write takes its place in the budget first.
    if (WRITES.has(op)) await this.budget?.acquire();
    if (this.latencyMs) {
      this.peakInFlight = Math.max(this.peakInFlight, ++this.inFlight);
      await new Promise((r) => setTimeout(r, this.latencyMs));
      this.inFlight -= 1;
    }
    const i = this.injected.findIndex((x) => x.op === op);
    const inj = i >= 0 ? this.injected.splice(i, 1)[0]! : null;
    if (inj && !inj.afterEffect) throw inj.error;
    const out = fn();
    if (inj) throw inj.error;
    return out;
  }

  private changed(): void {
    this.revision++;
  }

  // ---------------------------------------------------------------- git objects

  private newCommit(parents: string[], files: Record<string, string>, message: string): string {
    const sha = sha1(`commit ${++this.commitCounter}\n${parents.join(" ")}\n${message}\n${JSON.stringify(files)}`);
    this.commits.set(sha, { sha, parents, message, files });
    this.changed();
    return sha;
  }

  private resolve(ref: string): FakeCommit | null {
    const sha = this.branches.get(ref) ?? ref;
    return this.commits.get(sha) ?? null;
  }

  commit(sha: string): FakeCommit {
    const c = this.commits.get(sha);
    if (!c) throw new Error(`no commit ${sha}`);
    return c;
  }

  /** Head commit of a branch (the default branch when none is named). */
  head(branch = this.defaultBranch): string {
    const sha = this.branches.get(branch);
    if (!sha) throw new Error(`no branch ${branch}`);
    return sha;
  }

  /** A file's text at a ref (branch or sha), or undefined. */
  file(path: string, ref = this.defaultBranch): string | undefined {
    return this.resolve(ref)?.files[path];
  }

  /** The paths a commit changes relative to its first parent. */
  changedPaths(sha: string): string[] {
    const c = this.commit(sha);
    const parent = c.parents[0] ? this.commit(c.parents[0]).files : {};
    const paths = new Set([...Object.keys(parent), ...Object.keys(c.files)]);
    return [...paths].filter((p) => parent[p] !== c.files[p]).sort();
  }

  private ancestors(sha: string): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    const queue = [sha];
    while (queue.length) {
      const s = queue.shift()!;
      if (seen.has(s)) continue;
      seen.add(s);
      out.push(s);
      queue.push(...this.commit(s).parents);
    }
    return out;
  }

  private mergeBase(a: string, b: string): string | null {
    const ofB = new Set(this.ancestors(b));
    return this.ancestors(a).find((s) => ofB.has(s)) ?? null;
  }

  // ---------------------------------------------------------------- what people do

  /** A person pushes a commit to the default branch (null deletes a file). */
  pushToDefault(files: Record<string, string | null>, message = "A change by a person"): string {
    const parent = this.commit(this.head());
    const next = { ...parent.files };
    for (const [p, t] of Object.entries(files)) {
      if (t === null) delete next[p];
      else next[p] = t;
    }
    const sha = this.newCommit([parent.sha], next, message);
    this.branches.set(this.defaultBranch, sha);
    return sha;
  }

  /** A person comments on a PR or issue; returns the comment id. */
  commentByPerson(number: number, user: string, body: string): number {
    const id = this.nextCommentId++;
    this.comments.push({ number, body, id, user, userType: "User", at: this.tick(), reactions: [] });
    this.changed();
    return id;
  }

  /** A person comments on a line of an experiment PR's diff. */
  reviewCommentByPerson(number: number, user: string, body: string, path: string, line: number): number {
    const id = this.reviewComments.length + 1;
    this.reviewComments.push({ number, body, id, user, userType: "User", at: this.tick(), reactions: [], path, line });
    this.changed();
    return id;
  }

  /** Reactions on a comment. */
  reactionsOn(commentId: number): { user: string; userType: string; content: string }[] {
    return this.comments.find((c) => c.id === commentId)?.reactions ?? [];
  }

  issue(number: number): FakeIssue {
    const i = this.issues.find((x) => x.number === number);
    if (!i) throw new Error(`no issue #${number}`);
    return i;
  }

  /** Comment timestamps: strictly increasing, after the fake's epoch. */
  private tick(): string {
    this.clock += 1000;
    return new Date(this.clock).toISOString();
  }

  /** A person closes a PR without merging it. */
  closeByPerson(number: number): void {
    const p = this.pull(number);
    p.state = "closed";
    p.closedBy = "person";
    this.changed();
  }

  // ---------------------------------------------------------------- what tests look at

  /** Someone other than the bot opens a pull request (from `headRepo`, a fork unless told). */
  openPullByPerson(o: { author: string; head: string; headRepo?: string; title: string; body: string; labels: string[]; files?: Record<string, string> }): number {
    const sha = this.newCommit([this.head()], { ...this.commit(this.head()).files, ...(o.files ?? {}) }, o.title);
    if (!o.headRepo || o.headRepo === `${this.repo.owner}/${this.repo.repo}`) this.branches.set(o.head, sha);
    const number = this.nextNumber++;
    this.pulls.push({
      number, title: o.title, body: o.body, head: o.head, headSha: sha, base: this.defaultBranch, labels: [...o.labels],
      state: "open", merged: false, mergeCommitSha: null, closedBy: null, author: o.author,
      headRepo: o.headRepo ?? `${this.repo.owner}/${this.repo.repo}`,
    });
    this.changed();
    return number;
  }

  pull(number: number): FakePull {
    const p = this.pulls.find((x) => x.number === number);
    if (!p) throw new Error(`no PR #${number}`);
    return p;
  }

  /** The PR of experiment n (from its hidden record). */
  pullOf(n: number): FakePull {
    const p = this.pulls.find((x) => x.author === BOT_LOGIN && decodeRecord(x.body)?.n === n);
    if (!p) throw new Error(`no PR for experiment ${n}`);
    return p;
  }

  record(number: number): ExperimentRecord {
    const r = decodeRecord(this.pull(number).body);
    if (!r) throw new Error(`PR #${number} has no record`);
    return r;
  }

  openPulls(): FakePull[] {
    return this.pulls.filter((p) => p.state === "open");
  }

  commentsOn(number: number): string[] {
    return this.comments.filter((c) => c.number === number).map((c) => c.body);
  }

  /** Check runs on a commit, optionally of one name. */
  checkRunsOn(sha: string, name?: string): FakeCheckRun[] {
    return this.checkRuns.filter((c) => c.headSha === sha && (name === undefined || c.name === name));
  }

  /** The one check run named `name` on `sha` (the latest one when there are several). */
  checkRun(sha: string, name: string): FakeCheckRun {
    const runs = this.checkRunsOn(sha, name);
    const c = runs[runs.length - 1];
    if (!c) throw new Error(`no ${name} check run on ${sha.slice(0, 7)}`);
    return c;
  }

  // ---------------------------------------------------------------- GitHubPort

  getDefaultBranch(): Promise<string> {
    return this.call("getDefaultBranch", [], () => this.defaultBranch);
  }

  getBranchSha(branch: string): Promise<string> {
    return this.call("getBranchSha", [branch], () => {
      const sha = this.branches.get(branch);
      if (!sha) throw new GitHubError(`GitHub read branch ${branch} failed (HTTP 404): Not Found`, 404);
      return sha;
    });
  }

  readFile(path: string, ref: string): Promise<{ text: string; sha: string } | null> {
    return this.call("readFile", [path, ref], () => {
      const c = this.resolve(ref);
      if (!c) throw new GitHubError(`GitHub read ${path}@${ref.slice(0, 7)} failed (HTTP 404): No commit found`, 404);
      const text = c.files[path];
      return text === undefined ? null : { text, sha: blobSha(text) };
    });
  }

  /**
   * The owner's `.github` repository's `.github/autoresearch.yml` (null: none), used when the
   * repository has none, as Probot's config plugin does. `_extends` is not followed here: the
   * Octokit port's tests cover it through the real plugin against the GitHub twin.
   */
  ownerConfig: string | null = null;

  readConfig(sha: string): Promise<ConfigFileText | null> {
    return this.call("readConfig", [sha], () => {
      const c = this.resolve(sha);
      if (!c) throw new GitHubError(`GitHub read ${CONFIG_PATH}@${sha.slice(0, 7)} failed (HTTP 404): No commit found`, 404);
      const own = c.files[CONFIG_PATH];
      if (own !== undefined) return { text: own, files: [`${this.repo.owner}/${this.repo.repo}:${CONFIG_PATH}`] };
      return this.ownerConfig === null ? null : { text: this.ownerConfig, files: [`${this.repo.owner}/.github:${CONFIG_PATH}`] };
    });
  }

  listExperimentPulls(): Promise<ExperimentPull[]> {
    return this.call("listExperimentPulls", [], () =>
      this.pulls
        // As the Octokit port finds them: by branch, record or label.
        .filter((p) => p.labels.includes(LABEL) || parseBranchName(p.head) !== null || decodeRecord(p.body) !== null)
        .map((p) => ({
          number: p.number,
          state: p.state,
          merged: p.merged,
          author: p.author,
          headRepo: p.headRepo,
          headRef: p.head,
          headSha: p.headSha,
          baseRef: p.base,
          labels: [...p.labels],
          title: p.title,
          body: p.body,
          record: decodeRecord(p.body),
        })),
    );
  }

  commitFiles(branch: string, parentSha: string, files: Record<string, string>, message: string): Promise<string> {
    return this.call("commitFiles", [branch, parentSha, files, message], () => {
      ownBranch(branch);
      if (branch === this.defaultBranch) throw new Error(`the bot must never commit to ${branch} directly`);
      const parent = this.commits.get(parentSha);
      if (!parent) throw new GitHubError(`GitHub read base commit failed (HTTP 404): Not Found`, 404);
      const sha = this.newCommit([parentSha], { ...parent.files, ...files }, message);
      this.branches.set(branch, sha);
      for (const p of this.pulls) if (p.state === "open" && p.head === branch) p.headSha = sha;
      return sha;
    });
  }

  async createPull(p: { title: string; head: string; base: string; body: string; labels: string[] }): Promise<number> {
    // As the real adapter: the pull request first, then its labels in a write of their own,
    // which can fail after the pull request exists.
    const number = await this.openPull(p);
    if (p.labels.length) await this.setLabels(number, p.labels);
    return number;
  }

  private openPull(p: { title: string; head: string; base: string; body: string; labels: string[] }): Promise<number> {
    return this.call("createPull", [p], () => {
      const headSha = this.branches.get(p.head);
      if (!headSha || !this.branches.has(p.base)) {
        throw new GitHubError(`GitHub open pull request failed (HTTP 422): Validation Failed`, 422);
      }
      if (this.pulls.some((x) => x.state === "open" && x.head === p.head)) {
        throw new GitHubError(`GitHub open pull request failed (HTTP 422): A pull request already exists for ${p.head}`, 422);
      }
      const number = this.nextNumber++;
      this.pulls.push({
        number,
        title: p.title,
        body: p.body,
        head: p.head,
        headSha,
        base: p.base,
        labels: [],
        state: "open",
        merged: false,
        mergeCommitSha: null,
        closedBy: null,
        author: BOT_LOGIN,
        headRepo: `${this.repo.owner}/${this.repo.repo}`,
      });
      this.changed();
      return number;
    });
  }

  updatePull(number: number, u: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void> {
    return this.call("updatePull", [number, u], () => {
      const p = this.pull(number);
      if (u.labels !== undefined && u.labels.join() !== p.labels.join()) {
        p.labels = [...u.labels];
        this.changed();
      }
      if (u.title !== undefined && u.title !== p.title) {
        p.title = u.title;
        this.changed();
      }
      if (u.body !== undefined && u.body !== p.body) {
        p.body = u.body;
        this.changed();
      }
      if (u.state !== undefined && u.state !== p.state) {
        if (p.merged) throw new GitHubError(`GitHub update PR #${number} failed (HTTP 422): merged`, 422);
        p.state = u.state;
        p.closedBy = u.state === "closed" ? "bot" : null;
        if (u.state === "open") p.headSha = this.branches.get(p.head) ?? p.headSha;
        this.changed();
      }
    });
  }

  setLabels(number: number, labels: string[]): Promise<void> {
    return this.call("setLabels", [number, labels], () => {
      const p = this.pull(number);
      if (p.labels.join() !== labels.join()) {
        p.labels = [...labels];
        this.changed();
      }
    });
  }

  ensureLabels(labels: { name: string; color: string; description: string }[]): Promise<void> {
    return this.call("ensureLabels", [labels], () => {
      for (const l of labels) {
        if (this.labels.has(l.name)) continue;
        this.labels.set(l.name, { ...l });
        this.changed();
      }
    });
  }

  comment(number: number, body: string): Promise<void> {
    return this.call("comment", [number, body], () => {
      if (!this.issues.some((i) => i.number === number)) this.pull(number);
      this.comments.push({ number, body, id: this.nextCommentId++, user: BOT_LOGIN, userType: "Bot", at: this.tick(), reactions: [] });
      this.changed();
    });
  }

  mergePull(number: number, sha: string, title: string, message: string): Promise<{ merged: boolean; reason?: string }> {
    return this.call("mergePull", [number, sha, title, message], () => {
      const p = this.pull(number);
      const refusal = this.refusals.shift();
      if (refusal) return { merged: false, reason: refusal };
      if (p.state !== "open") return { merged: false, reason: "HTTP 405: Pull Request is not open" };
      const head = this.branches.get(p.head) ?? p.headSha;
      // The guard GitHub applies: the head must still be the commit the caller names.
      if (head !== sha) return { merged: false, reason: "HTTP 409: Head branch was modified. Review and try the merge again." };
      const baseHead = this.head(p.base);
      const base = this.mergeBase(head, baseHead);
      const files = merge3(base ? this.commit(base).files : {}, this.commit(head).files, this.commit(baseHead).files);
      if (!files) return { merged: false, reason: "HTTP 405: Pull Request is not mergeable" };
      const squash = this.newCommit([baseHead], files, `${title}\n\n${message}`);
      this.branches.set(p.base, squash);
      p.state = "closed";
      p.merged = true;
      p.mergeCommitSha = squash;
      p.closedBy = "bot";
      return { merged: true };
    });
  }

  deleteBranches(branches: { name: string; sha: string }[]): Promise<void> {
    return this.call("deleteBranches", [branches], () => {
      for (const b of branches) ownBranch(b.name);
      for (const b of branches) {
        if (b.name === this.defaultBranch) throw new GitHubError(`GitHub delete ${b.name} failed (HTTP 422): default branch`, 422);
        if (this.branches.get(b.name) === b.sha && this.branches.delete(b.name)) this.changed();
      }
    });
  }

  commitMessage(sha: string): Promise<string> {
    return this.call("commitMessage", [sha], () => {
      const c = this.commits.get(sha);
      if (!c) throw new GitHubError(`GitHub read commit ${sha.slice(0, 7)} failed (HTTP 404): Not Found`, 404);
      return c.message;
    });
  }

  listExperimentBranches(): Promise<{ name: string; sha: string }[]> {
    return this.call("listExperimentBranches", [], () =>
      [...this.branches].filter(([b]) => parseBranchName(b) !== null).map(([name, sha]) => ({ name, sha })),
    );
  }

  upsertCheckRun(spec: CheckRunSpec): Promise<void> {
    return this.call("upsertCheckRun", [spec], () => {
      const existing = this.checkRuns.find(
        (c) => c.name === spec.name && c.headSha === spec.headSha && c.externalId === spec.externalId,
      );
      if (existing) {
        // As the Octokit port does: a completed check run is not sent back to in progress.
        if (existing.status === "completed" && spec.status !== "completed") return;
        const same =
          existing.status === spec.status &&
          existing.conclusion === (spec.conclusion ?? null) &&
          JSON.stringify(existing.output) === JSON.stringify(spec.output);
        if (same) return;
        existing.status = spec.status;
        existing.conclusion = spec.conclusion ?? null;
        existing.output = { ...spec.output };
        existing.history.push({ status: spec.status, conclusion: spec.conclusion ?? null, title: spec.output.title });
        this.changed();
        return;
      }
      if (!this.commits.has(spec.headSha)) {
        throw new GitHubError(`GitHub create check run failed (HTTP 422): No commit found for SHA: ${spec.headSha}`, 422);
      }
      this.checkRuns.push({
        id: this.nextCheckId++,
        name: spec.name,
        headSha: spec.headSha,
        externalId: spec.externalId,
        status: spec.status,
        conclusion: spec.conclusion ?? null,
        output: { ...spec.output },
        history: [{ status: spec.status, conclusion: spec.conclusion ?? null, title: spec.output.title }],
      });
      this.changed();
    });
  }

  archiveSource(sha: string): Promise<{ url: string; token: string | null }> {
    return this.call("archiveSource", [sha], () => ({
      url: `https://api.github.test/repos/${this.repo.owner}/${this.repo.repo}/tarball/${sha}`,
      token: "read-only-token",
    }));
  }

  listCommentsSince(since: string): Promise<IssueComment[]> {
    return this.call("listCommentsSince", [since], () =>
      this.comments.filter((c) => c.id !== undefined && (c.at ?? "") >= since).map(asIssueComment),
    );
  }

  listReviewCommentsSince(since: string): Promise<IssueComment[]> {
    return this.call("listReviewCommentsSince", [since], () =>
      this.reviewComments
        .filter((c) => (c.at ?? "") >= since)
        .map((c) => ({ ...asIssueComment(c), review: { path: c.path, line: c.line } })),
    );
  }

  getPermission(login: string): Promise<string> {
    return this.call("getPermission", [login], () => this.permissions.get(login) ?? "none");
  }

  listReactions(commentId: number): Promise<{ user: string; userType: string; content: string }[]> {
    return this.call("listReactions", [commentId], () => [...this.reactionsOn(commentId)]);
  }

  react(commentId: number, content: "+1" | "-1" | "eyes" | "confused"): Promise<void> {
    return this.call("react", [commentId, content], () => {
      const c = this.comments.find((x) => x.id === commentId);
      if (!c) throw new GitHubError(`GitHub react to a comment failed (HTTP 404): Not Found`, 404);
      if ((c.reactions ??= []).some((r) => r.user === BOT_LOGIN && r.content === content)) return;
      c.reactions.push({ user: BOT_LOGIN, userType: "Bot", content });
      this.changed();
    });
  }

  listIssues(label: string): Promise<IssueInfo[]> {
    return this.call("listIssues", [label], () =>
      this.issues.filter((i) => i.labels.includes(label)).map((i) => ({ ...i, author: i.author ?? BOT_LOGIN, labels: [...i.labels] })),
    );
  }

  createIssue(p: { title: string; body: string; labels: string[] }): Promise<number> {
    return this.call("createIssue", [p], () => {
      const number = this.nextNumber++;
      this.issues.push({ number, title: p.title, body: p.body, state: "open", labels: [...p.labels] });
      this.changed();
      return number;
    });
  }

  updateIssue(number: number, p: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void> {
    return this.call("updateIssue", [number, p], () => {
      const i = this.issue(number);
      Object.assign(i, Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)));
      this.changed();
    });
  }

  restoreBranch(branch: string, sha: string): Promise<void> {
    return this.call("restoreBranch", [branch, sha], () => {
      ownBranch(branch);
      if (this.branches.has(branch)) return;
      this.branches.set(branch, sha);
      this.changed();
    });
  }
}

/**
 * A three-way merge of file maps as a squash merge does it: a side that left a file alone
 * takes the other side's version; when both changed it, lines are merged when the line counts
 * agree and no line was changed by both. null means a conflict.
 */
export function merge3(
  base: Record<string, string>,
  ours: Record<string, string>,
  theirs: Record<string, string>,
): Record<string, string> | null {
  const out: Record<string, string> = {};
  const paths = new Set([...Object.keys(base), ...Object.keys(ours), ...Object.keys(theirs)]);
  for (const p of paths) {
    const o = base[p];
    const a = ours[p];
    const b = theirs[p];
    let m: string | undefined;
    if (a === o) m = b;
    else if (b === o || a === b) m = a;
    else if (o !== undefined && a !== undefined && b !== undefined) {
      const lo = o.split("\n");
      const la = a.split("\n");
      const lb = b.split("\n");
      if (la.length !== lo.length || lb.length !== lo.length) return null;
      const lines: string[] = [];
      for (let i = 0; i < lo.length; i++) {
        if (la[i] === lo[i]) lines.push(lb[i]!);
        else if (lb[i] === lo[i] || la[i] === lb[i]) lines.push(la[i]!);
        else return null;
      }
      m = lines.join("\n");
    } else return null;
    if (m !== undefined) out[p] = m;
  }
  return out;
}

// ================================================================== runner

interface FakeRun {
  spec: RunSpec;
  phase: "pending" | "running" | "finished";
  result: TrainerResult | null;
}

export class FakeRunner implements RunnerPort {
  readonly name = "fake";
  /** False to play a runner with AUTORESEARCH_SANDBOX=off. */
  sandboxed = true;
  readonly runs = new Map<string, FakeRun>();
  /** Every spec that started a run, in order (a repeated submit is not listed). */
  readonly submitted: RunSpec[] = [];
  /** Every submit call, repeated ones included. */
  submitCalls = 0;
  readonly cancelled: string[] = [];
  readonly cleaned: string[] = [];
  /** The most runs that were ever in flight at once. */
  peakInFlight = 0;
  revision = 0;
  private listeners: ((runId: string, repo: RepoRef) => void)[] = [];

  /**
   * `queues`: at most `slots` runs train at once, the others are pending, and the oldest starts
   * as one ends (the local runner); else every run submitted trains at once.
   */
  constructor(
    readonly slots = 1,
    readonly queues = false,
  ) {}

  async submit(spec: RunSpec): Promise<void> {
    this.submitCalls++;
    if (this.runs.has(spec.runId)) return;
    const training = [...this.runs.values()].filter((r) => r.phase === "running").length;
    this.runs.set(spec.runId, { spec, phase: this.queues && training >= this.slots ? "pending" : "running", result: null });
    this.submitted.push(spec);
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight().length);
    this.revision++;
  }

  async observe(runId: string): Promise<RunObservation> {
    const r = this.runs.get(runId);
    if (!r) return { phase: "missing", runId };
    if (r.phase === "finished") return { phase: "finished", runId, result: r.result! };
    return { phase: r.phase, runId };
  }

  async cancel(runId: string): Promise<void> {
    const r = this.runs.get(runId);
    if (!r || r.phase === "finished") return;
    this.cancelled.push(runId);
    this.end(r, crashed("the run was cancelled"));
  }

  async list(repo: RepoRef): Promise<string[]> {
    return [...this.runs.values()]
      .filter((r) => r.spec.repo.owner === repo.owner && r.spec.repo.repo === repo.repo)
      .map((r) => r.spec.runId)
      .sort();
  }

  onFinished(listener: (runId: string, repo: RepoRef) => void): void {
    this.listeners.push(listener);
  }

  async cleanup(runId: string): Promise<void> {
    const r = this.runs.get(runId);
    if (!r) return;
    if (r.phase !== "finished") throw new Error(`run ${runId} is ${r.phase}; cancel it before cleaning it up`);
    this.runs.delete(runId);
    this.cleaned.push(runId);
    this.revision++;
  }

  // ---------------------------------------------------------------- test controls

  /** Run ids in flight (pending or running), in submit order. */
  inFlight(): string[] {
    return [...this.runs.values()].filter((r) => r.phase !== "finished").map((r) => r.spec.runId);
  }

  /** The run in flight for a PR. */
  runOf(pull: number): string {
    const r = [...this.runs.values()].find((x) => x.spec.pull === pull && x.phase !== "finished");
    if (!r) throw new Error(`no run in flight for #${pull} (in flight: ${this.inFlight().join(", ") || "none"})`);
    return r.spec.runId;
  }

  spec(runId: string): RunSpec {
    const r = this.runs.get(runId) ?? { spec: this.submitted.find((s) => s.runId === runId) };
    if (!r.spec) throw new Error(`no run ${runId}`);
    return r.spec;
  }

  /** The training ends with `result`; listeners hear of it as from a real runner. */
  finish(runId: string, result: TrainerResult): void {
    const r = this.runs.get(runId);
    if (!r) throw new Error(`no run ${runId}`);
    if (r.phase === "finished") throw new Error(`run ${runId} already finished`);
    this.end(r, result);
  }

  /** The runner forgets a run (restart with a wiped run directory, a drained node). */
  lose(runId: string): void {
    this.runs.delete(runId);
    this.revision++;
  }

  private end(r: FakeRun, result: TrainerResult): void {
    r.phase = "finished";
    r.result = result;
    // The first pending run (urgent ones first, then the oldest) takes the slot at once, before
    // anyone hears of the end.
    const pending = [...this.runs.values()].filter((x) => x.phase === "pending");
    const next = pending.find((x) => x.spec.urgent) ?? pending[0];
    if (next) next.phase = "running";
    this.revision++;
    for (const l of this.listeners) l(r.spec.runId, r.spec.repo);
  }
}

// ---------------------------------------------------------------- trainer results

const SUMMARY_TAIL = (bpb: number) =>
  `step 00953 (100.0%) | loss: 2.9 | dt: 314ms\r---\nval_bpb:          ${bpb.toFixed(6)}\ntraining_seconds: 300.1\npeak_vram_mb:     45060.2\n`;

/** A run that trained and printed val_bpb. */
export function measured(valBpb: number): TrainerResult {
  return {
    status: "ok",
    val_bpb: valBpb,
    exit_code: 0,
    reason: "",
    log_tail: SUMMARY_TAIL(valBpb),
    summary: { val_bpb: valBpb, training_seconds: 300.1, peak_vram_mb: 45060.2 },
    stage: "train",
  };
}

/** train.py failed: no val_bpb. */
export function crashed(reason: string, logTail = `Traceback (most recent call last):\n  ...\n${reason}\n`): TrainerResult {
  return { status: "crash", val_bpb: null, exit_code: 1, reason, log_tail: logTail, summary: {}, stage: "train" };
}

/** The run went past its hard deadline. */
export function timedOut(seconds = 720): TrainerResult {
  return {
    status: "timeout",
    val_bpb: null,
    exit_code: null,
    reason: `killed after ${seconds} s`,
    log_tail: "step 00400 (41.9%) | loss: 3.3\r",
    summary: {},
    stage: "train",
  };
}

/** The run stopped before training: the infrastructure failed, not the experiment. */
export function infraFailure(stage: "fetch" | "prepare", reason = `${stage} failed: connection reset`): TrainerResult {
  return { status: "crash", val_bpb: null, exit_code: 3, reason, log_tail: reason, summary: {}, stage };
}

// ================================================================== proposer

/** What a test queues: a proposal (files are computed from the edits), an error, or a function. */
export type ScriptStep =
  | { title: string; hypothesis?: string; edits: Edit[]; files?: Record<string, string>; proposer?: string }
  | Error
  | ((req: ProposalRequest) => Proposal | Promise<Proposal>);

export class ScriptedProposer implements ProposerPort {
  readonly name = "scripted";
  /** Set: asked ahead like a model (proposer.ask_ahead); the built-in proposer is not. */
  asksAhead = false;
  readonly requests: ProposalRequest[] = [];
  private script: ScriptStep[] = [];

  /** Queue what the next propose() calls return or throw, in order. */
  queue(...steps: ScriptStep[]): this {
    this.script.push(...steps);
    return this;
  }

  get pending(): number {
    return this.script.length;
  }

  async propose(req: ProposalRequest): Promise<Proposal> {
    this.requests.push(req);
    const step = this.script.shift();
    // Past the script: the built-in local search (deterministic for the experiment number).
    if (step === undefined) return proposeMutation(req);
    if (step instanceof Error) throw step;
    if (typeof step === "function") return step(req);
    const applied = applyEdits(req.files, step.edits, req.editablePaths);
    return {
      title: step.title,
      hypothesis: step.hypothesis ?? `${step.title} should lower val_bpb.`,
      edits: step.edits,
      files: step.files ?? (applied.ok ? applied.files : req.files),
      proposer: step.proposer ?? "scripted",
    };
  }
}

/** A one-edit proposal of train.py: replace `from` with `to`. */
export function change(from: string, to: string, title = `${from} → ${to}`, path = "train.py"): ScriptStep {
  return { title, edits: [{ path, search: from, replace: to }] };
}

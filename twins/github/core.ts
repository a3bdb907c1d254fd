// The twin's domain: users, apps, installations, repositories (git + issues/pulls/labels/comments/
// check runs) and the webhooks every change causes. HTTP handlers (routes.ts) and the public
// GitHubTwin methods both go through these operations, always one at a time (see GitHubTwin).

import { join } from "node:path";
import { GitRepo, ZERO_SHA, type GitIdentity } from "./git.js";
import { HttpError, validationFailed } from "./http.js";
import {
  appShape,
  checkRunShape,
  checkSuiteShape,
  commentShape,
  reviewCommentShape,
  installationShape,
  iso,
  issueShape,
  labelShape,
  nodeId,
  pullShape,
  repoShape,
  repoWebUrl,
  userShape,
  type Json,
  type PullStats,
  type Urls,
} from "./shapes.js";
import type {
  AppRecord,
  CheckRunAction,
  CheckRunRecord,
  CheckSuiteRecord,
  CommentRecord,
  PullData,
  ReviewCommentRecord,
  InstallationRecord,
  IssueRecord,
  LabelRecord,
  Permissions,
  ReactionContent,
  ReactionRecord,
  RepoRecord,
  Role,
  TokenRecord,
  User,
  UserType,
} from "./state.js";
import type { QueuedEvent, WebhookDeliverer } from "./webhooks.js";

/** Who performs an operation: a user, or an app's bot user acting through an installation. */
export interface Actor {
  user: User;
  app: AppRecord | null;
}

export const DEFAULT_PERMISSIONS: Permissions = {
  checks: "write",
  contents: "write",
  issues: "write",
  metadata: "read",
  pull_requests: "write",
  statuses: "write",
};

export const DEFAULT_EVENTS = ["check_run", "check_suite", "issue_comment", "issues", "label", "pull_request", "pull_request_review_comment", "push"];

const DEFAULT_LABELS: Array<[string, string, string]> = [
  ["bug", "d73a4a", "Something isn't working"],
  ["documentation", "0075ca", "Improvements or additions to documentation"],
  ["duplicate", "cfd3d7", "This issue or pull request already exists"],
  ["enhancement", "a2eeef", "New feature or request"],
  ["good first issue", "7057ff", "Good for newcomers"],
  ["help wanted", "008672", "Extra attention is needed"],
  ["invalid", "e4e669", "This doesn't seem right"],
  ["question", "d876e3", "Further information is requested"],
  ["wontfix", "ffffff", "This will not be worked on"],
];

const ROLE_RANK: Role[] = ["none", "read", "triage", "write", "maintain", "admin"];

export function roleAtLeast(role: Role, min: Role): boolean {
  return ROLE_RANK.indexOf(role) >= ROLE_RANK.indexOf(min);
}

const GITHUB_COMMITTER = { name: "GitHub", email: "noreply@github.com" };

export type FileChanges = Record<string, string | Buffer | null>;

/** Fields of a check run create/update request (already validated). */
export interface CheckRunInput {
  name?: string;
  status?: CheckRunRecord["status"];
  conclusion?: string;
  externalId?: string;
  detailsUrl?: string;
  startedAt?: string;
  completedAt?: string;
  output?: { title?: string | null; summary?: string | null; text?: string | null; annotationsCount?: number };
  actions?: CheckRunAction[];
}

export interface CreateRepoOptions {
  private?: boolean;
  defaultBranch?: string;
  description?: string;
  /** Initial commit message (default "Initial commit"). */
  message?: string;
}

export class TwinCore {
  readonly users = new Map<string, User>();
  readonly apps = new Map<number, AppRecord>();
  readonly installations = new Map<number, InstallationRecord>();
  readonly tokens = new Map<string, TokenRecord>();
  readonly repos = new Map<string, RepoRecord>();
  /** Events raised by the operation in progress; flushed to the deliverer when it ends. */
  batch: QueuedEvent[] = [];
  private readonly counters = new Map<string, number>();
  private readonly mergeableCache = new Map<string, boolean>();

  constructor(
    readonly root: string,
    readonly urls: Urls,
    readonly deliverer: WebhookDeliverer,
    readonly clock: () => Date,
  ) {}

  now(): string {
    return iso(this.clock());
  }

  nextId(kind: string, start: number): number {
    const n = (this.counters.get(kind) ?? start) + 1;
    this.counters.set(kind, n);
    return n;
  }

  // ---- users -------------------------------------------------------------------------------

  user(login: string, type: UserType = "User"): User {
    const key = login.toLowerCase();
    let u = this.users.get(key);
    if (!u) {
      u = { id: this.nextId("user", 1000), login, type, name: null, email: null };
      this.users.set(key, u);
    }
    return u;
  }

  findUser(login: string): User | undefined {
    return this.users.get(login.toLowerCase());
  }

  noreplyEmail(u: User): string {
    return `${u.id}+${u.login}@users.noreply.github.com`;
  }

  identity(u: User): GitIdentity {
    return { name: u.name ?? u.login, email: u.email ?? this.noreplyEmail(u), date: this.now() };
  }

  /** The GitHub user a commit email belongs to (noreply addresses and configured emails). */
  userForEmail(email: string): User | undefined {
    const m = /^(\d+)\+(.+)@users\.noreply\.github\.com$/.exec(email);
    for (const u of this.users.values()) {
      if (m && u.id === Number(m[1])) return u;
      if (u.email && u.email.toLowerCase() === email.toLowerCase()) return u;
    }
    return undefined;
  }

  // ---- apps and installations ----------------------------------------------------------------

  appFor(inst: InstallationRecord): AppRecord {
    const app = this.apps.get(inst.appId);
    if (!app) throw new Error(`installation ${inst.id} has no app`);
    return app;
  }

  covers(inst: InstallationRecord, repo: RepoRecord): boolean {
    return inst.account.id === repo.owner.id && (inst.repositorySelection === "all" || inst.repoIds.has(repo.id));
  }

  installationsFor(repo: RepoRecord): InstallationRecord[] {
    return [...this.installations.values()].filter((i) => this.covers(i, repo));
  }

  reposOf(inst: InstallationRecord): RepoRecord[] {
    return [...this.repos.values()].filter((r) => this.covers(inst, r));
  }

  // ---- events ----------------------------------------------------------------------------------

  private queue(app: AppRecord, inst: InstallationRecord | null, event: string, payload: Json): void {
    // Every event names its installation; the `installation` event itself carries the full object.
    const body = inst && !payload.installation ? { ...payload, installation: { id: inst.id, node_id: nodeId("MDIz", inst.id) } } : payload;
    const action = typeof payload.action === "string" ? payload.action : null;
    this.batch.push({
      event,
      action,
      appId: app.id,
      installationId: inst?.id ?? null,
      url: app.webhookUrl,
      secret: app.webhookSecret,
      hookId: app.id + 100000,
      body: JSON.stringify(body),
    });
  }

  /** Raises a repository event for every app installed on the repository (or only `onlyApp`). */
  emit(repo: RepoRecord, event: string, payload: Json, onlyApp?: number): void {
    for (const inst of this.installationsFor(repo)) {
      const app = this.appFor(inst);
      if (onlyApp !== undefined && app.id !== onlyApp) continue;
      if (!app.events.includes(event)) continue;
      this.queue(app, inst, event, payload);
    }
  }

  emitInstallation(app: AppRecord, inst: InstallationRecord, action: string, sender: User): void {
    this.queue(app, inst, "installation", {
      action,
      installation: installationShape(inst, app, this.urls),
      repositories: this.reposOf(inst).map((r) => ({
        id: r.id,
        node_id: nodeId("R", r.id),
        name: r.name,
        full_name: `${r.owner.login}/${r.name}`,
        private: r.private,
      })),
      sender: userShape(sender, this.urls),
    });
  }

  /** Hands the events of the finished operation to the deliverer (sent once `ready` settles). */
  flush(ready?: Promise<void>): void {
    const batch = this.batch;
    this.batch = [];
    for (const q of batch) this.deliverer.enqueue(q, ready);
    if (batch.length) this.deliverer.kick();
  }

  // ---- repositories ------------------------------------------------------------------------

  repo(owner: string, name: string): RepoRecord | undefined {
    return this.repos.get(`${owner}/${name}`.toLowerCase());
  }

  roleOf(repo: RepoRecord, u: User): Role {
    if (u.id === repo.owner.id) return "admin";
    const role = repo.roles.get(u.login);
    if (role) return role;
    return repo.private ? "none" : "read";
  }

  async createRepo(ownerLogin: string, name: string, files: FileChanges, opts: CreateRepoOptions = {}): Promise<RepoRecord> {
    if (this.repo(ownerLogin, name)) throw new Error(`repository ${ownerLogin}/${name} already exists`);
    const owner = this.user(ownerLogin);
    const defaultBranch = opts.defaultBranch ?? "main";
    const git = await GitRepo.init(join(this.root, `${owner.login}__${name}.git`), defaultBranch);
    const now = this.now();
    const repo: RepoRecord = {
      id: this.nextId("repo", 100000),
      owner,
      name,
      private: opts.private ?? false,
      defaultBranch,
      description: opts.description ?? null,
      git,
      createdAt: now,
      updatedAt: now,
      pushedAt: now,
      labels: DEFAULT_LABELS.map(([n, color, description]) => ({
        id: this.nextId("label", 5000000),
        name: n,
        color,
        description,
        isDefault: true,
      })),
      issues: new Map(),
      comments: [],
      reviewComments: [],
      checkRuns: [],
      checkSuites: [],
      roles: new Map(),
    };
    const sha = await this.commitFiles(repo, null, files, opts.message ?? "Initial commit", this.identity(owner));
    await git.updateRef(`refs/heads/${defaultBranch}`, sha);
    this.repos.set(`${owner.login}/${name}`.toLowerCase(), repo);
    return repo;
  }

  /** Writes a commit on `parent` (null: root commit) with files changed (null deletes). */
  async commitFiles(repo: RepoRecord, parent: string | null, files: FileChanges, message: string, author: GitIdentity, committer?: GitIdentity): Promise<string> {
    const changes = new Map<string, { mode: string; sha: string } | null>();
    for (const [path, content] of Object.entries(files)) {
      const clean = path.replace(/^\/+/, "");
      changes.set(clean, content === null ? null : { mode: "100644", sha: await repo.git.writeBlob(content) });
    }
    const baseTree = parent ? (await repo.git.readCommit(parent)).tree : null;
    const tree = await repo.git.buildTree(baseTree, changes);
    return repo.git.commitTree(tree, parent ? [parent] : [], message, author, committer ?? author);
  }

  branchSha(repo: RepoRecord, branch: string): Promise<string | null> {
    return repo.git.refSha(`refs/heads/${branch}`);
  }

  /**
   * Moves (creates, deletes) a branch like a push does and raises what GitHub raises: `push`,
   * `pull_request.synchronize` for pull requests from the branch, pull requests closed when their
   * branch is deleted, and pull requests marked merged when their head lands in their base.
   * Returns false when `expectOld` does not match (nothing changes).
   */
  async moveBranch(repo: RepoRecord, branch: string, newSha: string | null, actor: Actor, expectOld?: string | null): Promise<boolean> {
    const ref = `refs/heads/${branch}`;
    const before = await repo.git.refSha(ref);
    if (expectOld !== undefined && (expectOld ?? null) !== before) return false;
    if (newSha === null) {
      if (!before || !(await repo.git.deleteRef(ref, before))) return false;
    } else if (!(await repo.git.updateRef(ref, newSha, before ?? ZERO_SHA))) {
      return false;
    }
    await this.branchMoved(repo, branch, before, newSha, actor);
    return true;
  }

  /**
   * What GitHub raises once a branch moved from `before` to `after` (null: absent), whoever moved
   * it: the twin's own operations through moveBranch, or `git push`, where receive-pack has
   * already moved the ref.
   */
  async branchMoved(repo: RepoRecord, branch: string, before: string | null, after: string | null, actor: Actor): Promise<void> {
    const ref = `refs/heads/${branch}`;
    const now = this.now();
    repo.pushedAt = now;
    repo.updatedAt = now;
    this.mergeableCache.clear();
    await this.emitPush(repo, ref, before, after, actor);
    for (const issue of repo.issues.values()) {
      const pull = issue.pull;
      if (!pull || issue.state !== "open") continue;
      if (pull.headRef === branch) {
        if (after === null) {
          pull.headDeleted = true;
          await this.closeIssue(repo, issue, actor);
        } else if (pull.headSha !== after) {
          const prev = pull.headSha;
          pull.headSha = after;
          pull.baseSha = (await this.branchSha(repo, pull.baseRef)) ?? pull.baseSha;
          issue.updatedAt = now;
          await this.emitPull(repo, issue, "synchronize", actor, { before: prev, after: after });
        }
      } else if (pull.baseRef === branch) {
        if (after === null) {
          await this.closeIssue(repo, issue, actor);
        } else if (await repo.git.isAncestor(pull.headSha, after)) {
          await this.markMerged(repo, issue, pull, actor, after, before ?? pull.baseSha);
        }
      }
    }
  }

  /**
   * Reads ahead what a push's event shows (the pushed commit's changed files, the branches it is
   * compared with) before the twin's lock is taken: objects never change and the answers are
   * kept, so the event is raised without running git while every other request waits.
   */
  async preparePush(repo: RepoRecord, commands: Array<{ ref: string; new: string | null }>): Promise<void> {
    // Only a head start: whatever fails here is read again, and reported, under the lock.
    try {
      for (const cmd of commands) {
        if (!cmd.new || !cmd.ref.startsWith("refs/heads/")) continue;
        const c = await repo.git.readCommit(cmd.new).catch(() => null); // a refused push's objects
        if (c) await repo.git.diff(c.parents[0] ?? null, c.sha);
      }
      await repo.git.listRefs("refs/heads/");
    } catch {
      // read again under the lock
    }
  }

  private async emitPush(repo: RepoRecord, ref: string, before: string | null, after: string | null, actor: Actor): Promise<void> {
    const git = repo.git;
    let shas: string[] = [];
    if (after && before) {
      shas = await git.revList(after, [before]);
    } else if (after) {
      const others = (await git.listRefs("refs/heads/")).filter((r) => r.ref !== ref).map((r) => r.sha);
      shas = await git.revList(after, others);
    }
    shas = shas.slice(-20);
    const commits: Json[] = [];
    for (const sha of shas) commits.push(await this.pushCommitShape(repo, sha));
    const headCommit = after ? (commits.find((c) => c.id === after) ?? (await this.pushCommitShape(repo, after))) : null;
    const forced = Boolean(before && after && !(await git.isAncestor(before, after)));
    const short = (s: string | null) => (s ?? ZERO_SHA).slice(0, 12);
    const web = repoWebUrl(repo, this.urls);
    const pusher = actor.app ? { name: actor.user.login, email: null } : { name: actor.user.login, email: this.identity(actor.user).email };
    this.emit(repo, "push", {
      ref,
      before: before ?? ZERO_SHA,
      after: after ?? ZERO_SHA,
      repository: repoShape(repo, this.urls, { numericDates: true, openIssues: this.openCount(repo) }),
      pusher,
      sender: userShape(actor.user, this.urls),
      created: before === null,
      deleted: after === null,
      forced,
      base_ref: null,
      compare: before && after ? `${web}/compare/${short(before)}...${short(after)}` : after ? `${web}/commit/${short(after)}` : `${web}/compare/${short(before)}...${short(after)}`,
      commits,
      head_commit: headCommit,
    });
  }

  private async pushCommitShape(repo: RepoRecord, sha: string): Promise<Json> {
    const c = await repo.git.readCommit(sha);
    const diff = await repo.git.diff(c.parents[0] ?? null, c.sha);
    const person = (id: GitIdentity) => {
      const u = this.userForEmail(id.email);
      const p: Json = { name: id.name, email: id.email };
      if (u) p.username = u.login;
      return p;
    };
    return {
      id: c.sha,
      tree_id: c.tree,
      distinct: true,
      message: c.message.replace(/\n$/, ""),
      timestamp: c.committer.date,
      url: `${repoWebUrl(repo, this.urls)}/commit/${c.sha}`,
      author: person(c.author),
      committer: person(c.committer),
      added: diff.filter((d) => d.status === "added").map((d) => d.path),
      removed: diff.filter((d) => d.status === "removed").map((d) => d.path),
      modified: diff.filter((d) => d.status === "modified").map((d) => d.path),
    };
  }

  openCount(repo: RepoRecord): number {
    return [...repo.issues.values()].filter((i) => i.state === "open").length;
  }

  // ---- issues and pull requests --------------------------------------------------------------

  issueShape(repo: RepoRecord, issue: IssueRecord, single = false): Json {
    return issueShape(repo, issue, this.urls, this.apps, single);
  }

  /** Commit count, line counts and mergeability of a pull request (computed with git). */
  async pullStats(repo: RepoRecord, issue: IssueRecord, withMergeable: boolean): Promise<PullStats> {
    const pull = issue.pull;
    if (!pull) throw new Error("not a pull request");
    const git = repo.git;
    const open = issue.state === "open";
    const baseHead = open ? ((await this.branchSha(repo, pull.baseRef)) ?? pull.baseSha) : pull.baseSha;
    const commits = await git.revList(pull.headSha, [baseHead]);
    const mergeBase = (await git.mergeBase(baseHead, pull.headSha)) ?? baseHead;
    const diff = await git.diff(mergeBase, pull.headSha);
    let mergeable: boolean | null = null;
    let mergeableState = "unknown";
    if (withMergeable && open) {
      const key = `${repo.id}:${baseHead}:${pull.headSha}`;
      let clean = this.mergeableCache.get(key);
      if (clean === undefined) {
        clean = (await git.mergeTrees(baseHead, pull.headSha)) !== null;
        this.mergeableCache.set(key, clean);
      }
      mergeable = clean;
      mergeableState = clean ? (pull.draft ? "draft" : "clean") : "dirty";
    }
    return {
      mergeable,
      rebaseable: mergeable,
      mergeableState,
      commits: commits.length,
      additions: diff.reduce((n, d) => n + d.additions, 0),
      deletions: diff.reduce((n, d) => n + d.deletions, 0),
      changedFiles: diff.length,
    };
  }

  async pullShape(repo: RepoRecord, issue: IssueRecord, withMergeable: boolean): Promise<Json> {
    return pullShape(repo, issue, this.urls, await this.pullStats(repo, issue, withMergeable));
  }

  private base(repo: RepoRecord, actor: Actor): Json {
    return { repository: repoShape(repo, this.urls, { openIssues: this.openCount(repo) }), sender: userShape(actor.user, this.urls) };
  }

  async emitPull(repo: RepoRecord, issue: IssueRecord, action: string, actor: Actor, extra: Json = {}): Promise<void> {
    const pr = await this.pullShape(repo, issue, false);
    this.emit(repo, "pull_request", { action, number: issue.number, ...extra, pull_request: pr, ...this.base(repo, actor) });
  }

  emitIssue(repo: RepoRecord, issue: IssueRecord, action: string, actor: Actor, extra: Json = {}): void {
    this.emit(repo, "issues", { action, issue: this.issueShape(repo, issue), ...extra, ...this.base(repo, actor) });
  }

  private async emitIssueOrPull(repo: RepoRecord, issue: IssueRecord, action: string, actor: Actor, extra: Json = {}): Promise<void> {
    if (issue.pull) await this.emitPull(repo, issue, action, actor, extra);
    else this.emitIssue(repo, issue, action, actor, extra);
  }

  private newIssue(repo: RepoRecord, actor: Actor, title: string, body: string | null): IssueRecord {
    const number = Math.max(0, ...repo.issues.keys()) + 1;
    const now = this.now();
    const issue: IssueRecord = {
      id: this.nextId("issue", 2000000),
      prId: 0,
      number,
      title,
      body,
      user: actor.user,
      state: "open",
      stateReason: null,
      locked: false,
      labels: [],
      assignees: [],
      createdAt: now,
      updatedAt: now,
      closedAt: null,
      closedBy: null,
      pull: null,
      viaApp: actor.app?.id ?? null,
    };
    repo.issues.set(number, issue);
    return issue;
  }

  async createIssue(repo: RepoRecord, actor: Actor, input: { title: string; body?: string | null; labels?: string[]; assignees?: string[] }): Promise<IssueRecord> {
    const issue = this.newIssue(repo, actor, input.title, input.body ?? null);
    issue.labels = (input.labels ?? []).map((n) => this.ensureLabel(repo, n).name);
    issue.assignees = (input.assignees ?? []).map((l) => this.user(l));
    this.emitIssue(repo, issue, "opened", actor);
    for (const name of issue.labels) this.emitLabeled(repo, issue, name, "labeled", actor);
    return issue;
  }

  async createPull(
    repo: RepoRecord,
    actor: Actor,
    input: { title: string; head: string; base: string; body?: string | null; draft?: boolean; maintainerCanModify?: boolean },
  ): Promise<IssueRecord> {
    const headRef = input.head.includes(":") ? input.head.slice(input.head.indexOf(":") + 1) : input.head;
    const headOwner = input.head.includes(":") ? input.head.slice(0, input.head.indexOf(":")) : repo.owner.login;
    const baseSha = await this.branchSha(repo, input.base);
    if (!baseSha) throw validationFailed([{ resource: "PullRequest", field: "base", code: "invalid" }]);
    const headSha = headOwner.toLowerCase() === repo.owner.login.toLowerCase() ? await this.branchSha(repo, headRef) : null;
    if (!headSha) throw validationFailed([{ resource: "PullRequest", field: "head", code: "invalid" }]);
    for (const other of repo.issues.values()) {
      if (other.pull && other.state === "open" && other.pull.headRef === headRef && other.pull.baseRef === input.base) {
        throw validationFailed([{ resource: "PullRequest", code: "custom", message: `A pull request already exists for ${repo.owner.login}:${headRef}.` }]);
      }
    }
    if (await repo.git.isAncestor(headSha, baseSha)) {
      throw validationFailed([{ resource: "PullRequest", code: "custom", message: `No commits between ${input.base} and ${headRef}` }]);
    }
    const issue = this.newIssue(repo, actor, input.title, input.body ?? null);
    issue.prId = this.nextId("pull", 3000000);
    issue.pull = {
      headRef,
      headSha,
      baseRef: input.base,
      baseSha,
      draft: input.draft ?? false,
      merged: false,
      mergedAt: null,
      mergedBy: null,
      mergeCommitSha: null,
      maintainerCanModify: input.maintainerCanModify ?? false,
      headDeleted: false,
    };
    await this.emitPull(repo, issue, "opened", actor);
    return issue;
  }

  private async closeIssue(repo: RepoRecord, issue: IssueRecord, actor: Actor, reason: IssueRecord["stateReason"] = "completed"): Promise<void> {
    const now = this.now();
    issue.state = "closed";
    issue.closedAt = now;
    issue.closedBy = actor.user;
    issue.updatedAt = now;
    if (!issue.pull) issue.stateReason = reason;
    await this.emitIssueOrPull(repo, issue, "closed", actor);
  }

  /** PATCH of an issue or pull request: title, body, state, base, labels. */
  async updateIssue(
    repo: RepoRecord,
    issue: IssueRecord,
    actor: Actor,
    input: { title?: string; body?: string | null; state?: string; stateReason?: string | null; base?: string; labels?: string[]; draft?: boolean },
  ): Promise<void> {
    const changes: Json = {};
    if (input.state !== undefined && input.state !== "open" && input.state !== "closed") {
      throw validationFailed([{ resource: issue.pull ? "PullRequest" : "Issue", field: "state", code: "invalid" }]);
    }
    if (input.base !== undefined && issue.pull && input.base !== issue.pull.baseRef) {
      const sha = await this.branchSha(repo, input.base);
      if (!sha) throw validationFailed([{ resource: "PullRequest", field: "base", code: "invalid", message: `Proposed base branch '${input.base}' was not found` }]);
      changes.base = { ref: { from: issue.pull.baseRef }, sha: { from: issue.pull.baseSha } };
      issue.pull.baseRef = input.base;
      issue.pull.baseSha = sha;
    }
    if (input.title !== undefined && input.title !== issue.title) {
      changes.title = { from: issue.title };
      issue.title = input.title;
    }
    if (input.body !== undefined && input.body !== issue.body) {
      changes.body = { from: issue.body ?? "" };
      issue.body = input.body;
    }
    if (Object.keys(changes).length) {
      issue.updatedAt = this.now();
      await this.emitIssueOrPull(repo, issue, "edited", actor, { changes });
    }
    if (input.labels !== undefined) await this.setLabels(repo, issue, input.labels, actor);
    if (input.state === "closed" && issue.state === "open") {
      await this.closeIssue(repo, issue, actor, input.stateReason === "not_planned" ? "not_planned" : "completed");
    } else if (input.state === "open" && issue.state === "closed") {
      const pull = issue.pull;
      if (pull?.merged) throw validationFailed([{ resource: "PullRequest", code: "custom", field: "state", message: "state cannot be changed. The pull request cannot be reopened." }]);
      if (pull) {
        const head = await this.branchSha(repo, pull.headRef);
        if (!head || pull.headDeleted) {
          throw validationFailed([{ resource: "PullRequest", code: "custom", field: "state", message: `state cannot be changed. The ${pull.headRef} branch has been deleted.` }]);
        }
        pull.headSha = head;
        pull.baseSha = (await this.branchSha(repo, pull.baseRef)) ?? pull.baseSha;
      }
      issue.state = "open";
      issue.closedAt = null;
      issue.closedBy = null;
      issue.stateReason = issue.pull ? null : "reopened";
      issue.updatedAt = this.now();
      await this.emitIssueOrPull(repo, issue, "reopened", actor);
    }
  }

  /**
   * Merges a pull request: `squash` writes one commit on the base whose tree is the three-way
   * merge of base and head; `merge` writes a two-parent merge commit; `rebase` replays each
   * commit. Errors follow GitHub (405 not mergeable, 409 head moved).
   */
  async mergePull(
    repo: RepoRecord,
    issue: IssueRecord,
    actor: Actor,
    input: { sha?: string; method?: string; commitTitle?: string; commitMessage?: string },
  ): Promise<string> {
    const pull = issue.pull;
    if (!pull) throw new HttpError(404, "Not Found");
    if (issue.state !== "open" || pull.merged) throw new HttpError(405, "Pull Request is not mergeable");
    const method = input.method ?? "merge";
    if (!["merge", "squash", "rebase"].includes(method)) {
      throw validationFailed([{ resource: "PullRequest", field: "merge_method", code: "invalid" }]);
    }
    if (input.sha !== undefined && input.sha !== pull.headSha) {
      throw new HttpError(409, "Head branch was modified. Review and try the merge again.");
    }
    const git = repo.git;
    const baseHead = await this.branchSha(repo, pull.baseRef);
    if (!baseHead) throw new HttpError(405, "Pull Request is not mergeable");
    const prCommits = await git.revList(pull.headSha, [baseHead]);
    const committer = { ...GITHUB_COMMITTER, date: this.now() };
    const author = this.identity(issue.user);
    let result: string;
    if (method === "rebase") {
      let tip = baseHead;
      for (const sha of prCommits) {
        const c = await git.readCommit(sha);
        const tree = await git.mergeWithBase(c.parents[0] ?? null, tip, sha);
        if (!tree) throw new HttpError(405, "Pull Request is not mergeable");
        tip = await git.commitTree(tree, [tip], c.message, c.author, committer);
      }
      result = tip;
    } else {
      const tree = await git.mergeTrees(baseHead, pull.headSha);
      if (!tree) throw new HttpError(405, "Pull Request is not mergeable");
      if (method === "squash") {
        const title = input.commitTitle ?? `${issue.title} (#${issue.number})`;
        let message = input.commitMessage;
        if (message === undefined) {
          const parts: string[] = [];
          for (const sha of prCommits) parts.push(`* ${(await git.readCommit(sha)).message.trim()}`);
          message = parts.join("\n\n");
        }
        result = await git.commitTree(tree, [baseHead], message ? `${title}\n\n${message}` : title, author, committer);
      } else {
        const title = input.commitTitle ?? `Merge pull request #${issue.number} from ${repo.owner.login}/${pull.headRef}`;
        const message = input.commitMessage ?? issue.title;
        result = await git.commitTree(tree, [baseHead, pull.headSha], message ? `${title}\n\n${message}` : title, this.identity(actor.user), committer);
      }
    }
    // The base branch moves first: a refused move leaves the pull request open and unmerged, and
    // nobody sees it merged before the branch holds the merge.
    if (!(await this.moveBranch(repo, pull.baseRef, result, actor, baseHead))) {
      throw new HttpError(409, "Base branch was modified. Review and try the merge again.");
    }
    await this.markMerged(repo, issue, pull, actor, result, baseHead);
    return result;
  }

  /** A pull request whose changes reached its base: merged and closed, and `closed` delivered. */
  private async markMerged(repo: RepoRecord, issue: IssueRecord, pull: PullData, actor: Actor, mergeSha: string, baseSha: string): Promise<void> {
    const now = this.now();
    pull.merged = true;
    pull.mergedAt = now;
    pull.mergedBy = actor.user;
    pull.mergeCommitSha = mergeSha;
    pull.baseSha = baseSha;
    issue.state = "closed";
    issue.closedAt = now;
    issue.closedBy = actor.user;
    issue.updatedAt = now;
    await this.emitPull(repo, issue, "closed", actor);
  }

  // ---- labels --------------------------------------------------------------------------------

  findLabel(repo: RepoRecord, name: string): LabelRecord | undefined {
    return repo.labels.find((l) => l.name.toLowerCase() === name.toLowerCase());
  }

  createLabel(repo: RepoRecord, name: string, color = "ededed", description: string | null = null): LabelRecord {
    if (this.findLabel(repo, name)) throw validationFailed([{ resource: "Label", code: "already_exists", field: "name" }]);
    const label = { id: this.nextId("label", 5000000), name, color: color.replace(/^#/, ""), description, isDefault: false };
    repo.labels.push(label);
    return label;
  }

  ensureLabel(repo: RepoRecord, name: string): LabelRecord {
    return this.findLabel(repo, name) ?? this.createLabel(repo, name);
  }

  private emitLabeled(repo: RepoRecord, issue: IssueRecord, name: string, action: "labeled" | "unlabeled", actor: Actor): Promise<void> | void {
    const label = this.findLabel(repo, name);
    const extra: Json = label ? { label: labelShape(repo, label, this.urls) } : {};
    if (issue.pull) return this.emitPull(repo, issue, action, actor, extra);
    this.emitIssue(repo, issue, action, actor, extra);
  }

  async addLabels(repo: RepoRecord, issue: IssueRecord, names: string[], actor: Actor): Promise<void> {
    for (const n of names) {
      const label = this.ensureLabel(repo, n);
      if (issue.labels.some((l) => l.toLowerCase() === label.name.toLowerCase())) continue;
      issue.labels.push(label.name);
      issue.updatedAt = this.now();
      await this.emitLabeled(repo, issue, label.name, "labeled", actor);
    }
  }

  async removeLabel(repo: RepoRecord, issue: IssueRecord, name: string, actor: Actor): Promise<boolean> {
    const i = issue.labels.findIndex((l) => l.toLowerCase() === name.toLowerCase());
    if (i === -1) return false;
    const [removed] = issue.labels.splice(i, 1);
    issue.updatedAt = this.now();
    await this.emitLabeled(repo, issue, removed ?? name, "unlabeled", actor);
    return true;
  }

  async setLabels(repo: RepoRecord, issue: IssueRecord, names: string[], actor: Actor): Promise<void> {
    const wanted = new Set(names.map((n) => n.toLowerCase()));
    for (const l of [...issue.labels]) if (!wanted.has(l.toLowerCase())) await this.removeLabel(repo, issue, l, actor);
    await this.addLabels(repo, issue, names, actor);
  }

  // ---- comments and reactions ------------------------------------------------------------------

  commentShape(repo: RepoRecord, c: CommentRecord): Json {
    return commentShape(repo, c, this.urls, this.apps);
  }

  private emitComment(repo: RepoRecord, c: CommentRecord, action: string, actor: Actor, extra: Json = {}): void {
    const issue = repo.issues.get(c.issueNumber);
    if (!issue) return;
    this.emit(repo, "issue_comment", {
      action,
      ...extra,
      issue: this.issueShape(repo, issue),
      comment: this.commentShape(repo, c),
      ...this.base(repo, actor),
    });
  }

  reviewCommentShape(repo: RepoRecord, c: ReviewCommentRecord): Json {
    return reviewCommentShape(repo, c, this.urls);
  }

  /** A review comment on a line of a pull request's diff (delivers pull_request_review_comment). */
  async addReviewComment(repo: RepoRecord, issue: IssueRecord, actor: Actor, body: string, path: string, line: number): Promise<ReviewCommentRecord> {
    const now = this.now();
    const c: ReviewCommentRecord = {
      id: this.nextId("review-comment", 9000000),
      pullNumber: issue.number,
      user: actor.user,
      body,
      path,
      line,
      commitId: issue.pull?.headSha ?? ZERO_SHA,
      createdAt: now,
      updatedAt: now,
    };
    repo.reviewComments.push(c);
    // The event carries the short pull request shape (no merge state or counts), like GitHub's.
    const pull = { ...(await this.pullShape(repo, issue, false)) } as Record<string, unknown>;
    for (const k of ["merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments", "review_comments", "maintainer_can_modify", "commits", "additions", "deletions", "changed_files"]) {
      delete pull[k];
    }
    this.emit(repo, "pull_request_review_comment", {
      action: "created",
      comment: this.reviewCommentShape(repo, c),
      pull_request: pull as Json,
      ...this.base(repo, actor),
    });
    return c;
  }

  addComment(repo: RepoRecord, issue: IssueRecord, actor: Actor, body: string): CommentRecord {
    const now = this.now();
    const c: CommentRecord = {
      id: this.nextId("comment", 4000000),
      issueNumber: issue.number,
      user: actor.user,
      body,
      createdAt: now,
      updatedAt: now,
      viaApp: actor.app?.id ?? null,
      reactions: [],
    };
    repo.comments.push(c);
    issue.updatedAt = now;
    this.emitComment(repo, c, "created", actor);
    return c;
  }

  editComment(repo: RepoRecord, c: CommentRecord, actor: Actor, body: string): void {
    if (body === c.body) return;
    const from = c.body;
    c.body = body;
    c.updatedAt = this.now();
    this.emitComment(repo, c, "edited", actor, { changes: { body: { from } } });
  }

  addReaction(c: CommentRecord, user: User, content: ReactionContent): { reaction: ReactionRecord; created: boolean } {
    const existing = c.reactions.find((r) => r.user.id === user.id && r.content === content);
    if (existing) return { reaction: existing, created: false };
    const reaction = { id: this.nextId("reaction", 8000000), user, content, createdAt: this.now() };
    c.reactions.push(reaction);
    return { reaction, created: true };
  }

  // ---- check runs ----------------------------------------------------------------------------

  private suiteFor(repo: RepoRecord, app: AppRecord, headSha: string, headBranch: string | null): CheckSuiteRecord {
    let suite = repo.checkSuites.find((s) => s.appId === app.id && s.headSha === headSha);
    if (!suite) {
      const now = this.now();
      suite = { id: this.nextId("suite", 7000000), appId: app.id, headSha, headBranch, createdAt: now, updatedAt: now };
      repo.checkSuites.push(suite);
    }
    return suite;
  }

  checkRunShape(repo: RepoRecord, run: CheckRunRecord, full: boolean): Json {
    const app = this.apps.get(run.appId);
    if (!app) throw new Error(`check run ${run.id} has no app`);
    const suite = repo.checkSuites.find((s) => s.id === run.suiteId);
    const suiteShape = full && suite ? checkSuiteShape(repo, suite, repo.checkRuns, app, this.urls) : undefined;
    return checkRunShape(repo, run, app, this.urls, suiteShape);
  }

  emitCheckRun(repo: RepoRecord, run: CheckRunRecord, action: string, actor: Actor, extra: Json = {}): void {
    this.emit(
      repo,
      "check_run",
      { action, check_run: this.checkRunShape(repo, run, true), ...extra, ...this.base(repo, actor) },
      run.appId,
    );
  }

  async createCheckRun(
    repo: RepoRecord,
    app: AppRecord,
    actor: Actor,
    input: CheckRunInput & { name: string; headSha: string },
  ): Promise<CheckRunRecord> {
    const branches = (await repo.git.listRefs("refs/heads/")).filter((r) => r.sha === input.headSha);
    const headBranch = branches.find((b) => b.ref === `refs/heads/${repo.defaultBranch}`)?.ref ?? branches[0]?.ref ?? null;
    const suite = this.suiteFor(repo, app, input.headSha, headBranch ? headBranch.replace(/^refs\/heads\//, "") : null);
    const now = this.now();
    const completed = input.conclusion !== undefined || input.status === "completed";
    const run: CheckRunRecord = {
      id: this.nextId("checkrun", 6000000),
      suiteId: suite.id,
      appId: app.id,
      name: input.name,
      headSha: input.headSha,
      status: completed ? "completed" : (input.status ?? "queued"),
      conclusion: input.conclusion ?? null,
      externalId: input.externalId ?? "",
      detailsUrl: input.detailsUrl ?? null,
      startedAt: input.startedAt ?? now,
      completedAt: completed ? (input.completedAt ?? now) : null,
      output: {
        title: input.output?.title ?? null,
        summary: input.output?.summary ?? null,
        text: input.output?.text ?? null,
        annotationsCount: input.output?.annotationsCount ?? 0,
      },
      actions: input.actions ?? [],
      createdAt: now,
    };
    repo.checkRuns.push(run);
    suite.updatedAt = now;
    this.emitCheckRun(repo, run, "created", actor);
    if (completed) this.emitCheckRun(repo, run, "completed", actor);
    return run;
  }

  updateCheckRun(
    repo: RepoRecord,
    run: CheckRunRecord,
    actor: Actor,
    input: CheckRunInput,
  ): void {
    const wasCompleted = run.status === "completed";
    if (input.name !== undefined) run.name = input.name;
    if (input.externalId !== undefined) run.externalId = input.externalId;
    if (input.detailsUrl !== undefined) run.detailsUrl = input.detailsUrl;
    if (input.startedAt !== undefined) run.startedAt = input.startedAt;
    if (input.actions !== undefined) run.actions = input.actions;
    if (input.output) {
      if (input.output.title !== undefined) run.output.title = input.output.title;
      if (input.output.summary !== undefined) run.output.summary = input.output.summary;
      if (input.output.text !== undefined) run.output.text = input.output.text;
      if (input.output.annotationsCount !== undefined) run.output.annotationsCount += input.output.annotationsCount;
    }
    if (input.conclusion !== undefined) {
      run.conclusion = input.conclusion;
      run.status = "completed";
    } else if (input.status !== undefined) {
      run.status = input.status;
      if (input.status !== "completed") {
        run.conclusion = null;
        run.completedAt = null;
      }
    }
    if (run.status === "completed") run.completedAt = input.completedAt ?? run.completedAt ?? this.now();
    const suite = repo.checkSuites.find((s) => s.id === run.suiteId);
    if (suite) suite.updatedAt = this.now();
    if (run.status === "completed" && !wasCompleted) this.emitCheckRun(repo, run, "completed", actor);
  }

  requestCheckRunAction(repo: RepoRecord, run: CheckRunRecord, identifier: string, actor: Actor): void {
    if (!run.actions.some((a) => a.identifier === identifier)) {
      throw new Error(`check run ${run.id} has no action ${identifier}`);
    }
    this.emitCheckRun(repo, run, "requested_action", actor, { requested_action: { identifier } });
  }

  /** GitHub's own "Re-run" on a check run: delivers `check_run.rerequested` to its app. */
  rerequestCheckRun(repo: RepoRecord, run: CheckRunRecord, actor: Actor): void {
    this.emitCheckRun(repo, run, "rerequested", actor);
  }

  appShape(app: AppRecord): Json {
    return appShape(app, this.urls);
  }
}

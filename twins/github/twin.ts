// GitHubTwin: an in-process GitHub (REST subset + signed webhooks + GitHub App auth) on
// 127.0.0.1, backed by real bare git repositories. See index.ts for the overview.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { decodeJwt, looksLikeJwt, newToken, publicKeyFromPrivate, verifyAppJwt } from "./auth.js";
import { DEFAULT_EVENTS, DEFAULT_PERMISSIONS, TwinCore, type Actor, type CreateRepoOptions, type FileChanges } from "./core.js";
import { HttpError, Router, type Reply } from "./http.js";
import { actorOf, registerRoutes, type AuthInfo, type RequestCtx } from "./routes.js";
import { iso, type Urls } from "./shapes.js";
import type {
  AppRecord,
  CheckRunRecord,
  CommentRecord,
  InstallationRecord,
  IssueRecord,
  Permissions,
  ReactionRecord,
  RepoRecord,
  Role,
  TokenRecord,
  User,
} from "./state.js";
import { WebhookDeliverer, type Delivery } from "./webhooks.js";
import {
  MAX_GIT_BODY,
  gitDenied,
  gitRoute,
  gitText,
  gitToken,
  gitUnauthorized,
  httpBackend,
  matchGitPath,
  pushCommands,
  readBounded,
  type GitAnswer,
  type GitPath,
} from "./smart-http.js";
import { GITHUB_LIMITS, RateLimiter, type LimitAnswer, type TwinLimits } from "./limits.js";

export interface GitHubTwinOptions {
  /** Deliver webhooks (default true). With false, events are still recorded, state "skipped". */
  deliveries?: boolean;
  /** How long a webhook receiver may take (default 10 s, like GitHub). */
  webhookTimeoutMs?: number;
  /** Personal access tokens accepted on repository endpoints: token → user login. */
  personalTokens?: Record<string, string>;
  /** Clock for timestamps and token expiry (default: the real clock). */
  now?: () => Date;
  /**
   * GitHub's rate limits (./limits.ts): on by default with GitHub.com's figures; a partial object
   * changes some of them; false turns them off (every answer still carries x-ratelimit-* headers).
   */
  limits?: Partial<TwinLimits> | false;
  /**
   * Called with every write an installation makes to a repository, before it is carried out (a
   * chaos test kills the client there): "drop" cuts the connection and does nothing; "cut-after"
   * carries it out and then cuts the connection without an answer; anything else answers normally.
   */
  writeHook?: (route: string, path: string) => "drop" | "cut-after" | void;
  /**
   * Called with every request an installation makes (reads and writes), after the rate limits
   * admitted it: a fault to answer it with instead (see `Fault`), or nothing to serve it normally.
   * Git requests (fetch and push over smart HTTP) come with `git: true` and `write: false`.
   */
  faults?: (request: { method: string; route: string; path: string; write: boolean; git?: boolean }) => Fault | void;
}

/**
 * What GitHub does now and then: a 5xx from its front end, without the request having been
 * carried out or (`carriedOut`) after it was; or no answer at all ("hang": held until the client
 * gives up, and not carried out).
 */
export type Fault = { status: 500 | 502 | 503 | 504; carriedOut?: boolean } | "hang";

export interface CreateAppOptions {
  appId: number;
  /** PEM (PKCS#1 or PKCS#8); the twin derives the public key to check app JWTs. */
  privateKey: string;
  webhookSecret: string;
  /** Where webhooks go, e.g. http://127.0.0.1:3000/api/github/webhooks (null: nowhere). */
  webhookUrl?: string | null;
  slug?: string;
  name?: string;
  /** Login of the account owning the app (default "twin-apps"). */
  owner?: string;
  permissions?: Permissions;
  events?: string[];
}

export interface InstallOptions {
  /** Which app (default: the only / most recently created app). */
  appId?: number;
  /** Permissions granted to the installation (default: the app's). */
  permissions?: Permissions;
  /** The user who installs it (default: the owner). */
  sender?: string;
}

export type AuthKind = "anonymous" | "app" | "installation" | "token" | "invalid" | "archive";

export interface RequestRecord {
  method: string;
  /** Path without the /api/v3 prefix and query. */
  path: string;
  /** Route template, e.g. "GET /repos/{owner}/{repo}/pulls", or "GET (unmatched)". */
  route: string;
  status: number;
  auth: AuthKind;
  installationId: number | null;
  write: boolean;
  durationMs: number;
  at: string;
  /** When it arrived, in ms since the epoch (the twin's clock). */
  atMs: number;
  /** Set when the rate limits answered instead of the route (./limits.ts). */
  limited?: LimitAnswer["kind"];
  /**
   * A git fetch or push over smart HTTP (route "GIT receive-pack {owner}/{repo}" and the like):
   * not an API request, so neither a read nor a write, and not rate-limited.
   */
  git?: true;
}

export interface RequestStats {
  /** reads + writes + git. */
  total: number;
  /** API requests (GET, HEAD). */
  reads: number;
  /** API requests that may write (everything else). */
  writes: number;
  /** Git requests over smart HTTP (refs advertisements, fetches, pushes). */
  git: number;
  /** Requests per route template ("METHOD /template"). */
  byRoute: Record<string, number>;
  /** Requests answered with 4xx/5xx. */
  errors: number;
}

export interface RepoInfo {
  id: number;
  owner: string;
  name: string;
  fullName: string;
  private: boolean;
  defaultBranch: string;
  headSha: string;
}

export interface PullSnapshot {
  number: number;
  title: string;
  body: string | null;
  state: "open" | "closed";
  merged: boolean;
  mergedAt: string | null;
  mergeCommitSha: string | null;
  mergedBy: string | null;
  user: string;
  headRef: string;
  headSha: string;
  baseRef: string;
  baseSha: string;
  draft: boolean;
  labels: string[];
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
}

export interface IssueSnapshot {
  number: number;
  title: string;
  body: string | null;
  state: "open" | "closed";
  user: string;
  labels: string[];
  isPull: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface CommentSnapshot {
  id: number;
  issueNumber: number;
  user: string;
  body: string;
  createdAt: string;
  updatedAt: string;
  viaApp: number | null;
  reactions: Array<{ user: string; content: string }>;
}

export interface LogEntry {
  sha: string;
  parents: string[];
  message: string;
  author: { name: string; email: string; date: string };
  committer: { name: string; email: string; date: string };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

export class GitHubTwin {
  private server: Server | null = null;
  private core: TwinCore | null = null;
  private root: string | null = null;
  private readonly router = new Router<RequestCtx>();
  private readonly deliverer: WebhookDeliverer;
  private readonly archiveTokens = new Map<string, { repoId: number; expiresAt: number }>();
  private readonly personalTokens: Map<string, string>;
  private readonly clock: () => Date;
  private lock: Promise<unknown> = Promise.resolve();
  private inFlight = 0;
  private lastActivity = Date.now();
  private readonly requestLog: RequestRecord[] = [];
  /** The raw body of every request that writes (what a client put on GitHub), in order. */
  private readonly writeBodies: { route: string; body: string }[] = [];
  /** The rate limits, or null when they are off. */
  readonly limiter: RateLimiter | null;
  private readonly writeHook: GitHubTwinOptions["writeHook"];
  private readonly faults: GitHubTwinOptions["faults"];

  constructor(opts: GitHubTwinOptions = {}) {
    registerRoutes(this.router);
    this.deliverer = new WebhookDeliverer({ enabled: opts.deliveries ?? true, timeoutMs: opts.webhookTimeoutMs ?? 10_000 });
    this.personalTokens = new Map(Object.entries(opts.personalTokens ?? {}));
    this.clock = opts.now ?? (() => new Date());
    this.limiter = opts.limits === false ? null : new RateLimiter({ ...GITHUB_LIMITS, ...opts.limits }, () => this.clock().getTime());
    this.writeHook = opts.writeHook;
    this.faults = opts.faults;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Starts the server on 127.0.0.1 (random port). `url` is the REST base URL for Octokit/Probot. */
  async start(): Promise<{ url: string; origin: string; host: string }> {
    if (this.server) throw new Error("already started");
    this.root = await mkdtemp(join(tmpdir(), "github-twin-"));
    const server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.server = server;
    const { port } = server.address() as AddressInfo;
    const origin = `http://127.0.0.1:${port}`;
    const urls: Urls = { api: `${origin}/api/v3`, web: origin };
    this.core = new TwinCore(this.root, urls, this.deliverer, this.clock);
    return { url: urls.api, origin, host: `127.0.0.1:${port}` };
  }

  /** Stops the server (after pending deliveries) and removes the repositories. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) {
      await this.deliverer.idle();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    }
    for (const repo of this.core?.repos.values() ?? []) repo.git.close();
    if (this.root) await rm(this.root, { recursive: true, force: true });
    this.root = null;
  }

  /** REST base URL (what Octokit/Probot get as `baseUrl`): http://127.0.0.1:PORT/api/v3. */
  get url(): string {
    return this.c.urls.api;
  }

  /** For Probot's environment: GHE_HOST=<host>, GHE_PROTOCOL=http gives the same base URL. */
  get host(): string {
    return new URL(this.c.urls.web).host;
  }

  private get c(): TwinCore {
    if (!this.core) throw new Error("GitHubTwin not started");
    return this.core;
  }

  /** Runs fn alone (requests and test-side operations never interleave), then flushes its events. */
  private async exclusive<T>(fn: (core: TwinCore) => Promise<T> | T, ready?: Promise<void>): Promise<T> {
    const run = this.lock.then(async () => {
      const core = this.c;
      core.batch = [];
      try {
        return await fn(core);
      } finally {
        core.flush(ready);
      }
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  // ---- setup -----------------------------------------------------------------------------------

  /** Creates (or updates) a user; `email` links commit emails to the user in API responses. */
  user(login: string, opts: { name?: string; email?: string; type?: "User" | "Organization" } = {}): User {
    const u = this.c.user(login, opts.type);
    if (opts.name !== undefined) u.name = opts.name;
    if (opts.email !== undefined) u.email = opts.email;
    return { ...u };
  }

  /** Registers a GitHub App (id, private key, webhook secret and URL). */
  createApp(opts: CreateAppOptions): { id: number; slug: string; botLogin: string; botId: number } {
    const core = this.c;
    if (core.apps.has(opts.appId)) throw new Error(`app ${opts.appId} exists`);
    const slug = opts.slug ?? `twin-app-${opts.appId}`;
    const bot = core.user(`${slug}[bot]`, "Bot");
    const app: AppRecord = {
      id: opts.appId,
      slug,
      name: opts.name ?? slug,
      clientId: `Iv1.${opts.appId.toString(16).padStart(16, "0")}`,
      publicKey: publicKeyFromPrivate(opts.privateKey),
      webhookSecret: opts.webhookSecret,
      webhookUrl: opts.webhookUrl ?? null,
      owner: core.user(opts.owner ?? "twin-apps"),
      bot,
      permissions: { ...(opts.permissions ?? DEFAULT_PERMISSIONS) },
      events: [...(opts.events ?? DEFAULT_EVENTS)],
      createdAt: core.now(),
    };
    core.apps.set(app.id, app);
    return { id: app.id, slug, botLogin: bot.login, botId: bot.id };
  }

  /** Points an app's webhooks somewhere else (e.g. once the bot's server is listening). */
  setWebhookUrl(appId: number, url: string | null): void {
    const app = this.c.apps.get(appId);
    if (!app) throw new Error(`no app ${appId}`);
    app.webhookUrl = url;
  }

  /**
   * Installs an app on an account for some of its repositories ("all" for every one) and delivers
   * `installation.created`. Returns the installation id.
   */
  async installApp(owner: string, repos: string[] | "all", opts: InstallOptions = {}): Promise<number> {
    return this.exclusive((core) => {
      const app = this.pickApp(opts.appId);
      const account = core.user(owner);
      const repoIds = new Set<number>();
      if (repos !== "all") {
        for (const name of repos) {
          const repo = core.repo(owner, name);
          if (!repo) throw new Error(`no repository ${owner}/${name}`);
          repoIds.add(repo.id);
        }
      }
      const inst: InstallationRecord = {
        id: core.nextId("installation", 100),
        appId: app.id,
        account,
        repositorySelection: repos === "all" ? "all" : "selected",
        repoIds,
        permissions: { ...(opts.permissions ?? app.permissions) },
        events: [...app.events],
        createdAt: core.now(),
      };
      core.installations.set(inst.id, inst);
      core.emitInstallation(app, inst, "created", core.user(opts.sender ?? owner));
      return inst.id;
    });
  }

  private pickApp(appId?: number): AppRecord {
    const apps = [...this.c.apps.values()];
    const app = appId === undefined ? apps[apps.length - 1] : this.c.apps.get(appId);
    if (!app) throw new Error(appId === undefined ? "no app created" : `no app ${appId}`);
    return app;
  }

  /** Issues an installation token without the JWT dance (for tests that call the API directly). */
  /** Every write's request body so far (JSON text, as sent). */
  writes(): { route: string; body: string }[] {
    return [...this.writeBodies];
  }

  /** Every installation token the twin has issued (to check that none was published). */
  issuedTokens(): string[] {
    return [...this.c.tokens.keys()];
  }

  async installationToken(installationId: number, opts: { repositories?: string[]; permissions?: Permissions } = {}): Promise<string> {
    return this.exclusive((core) => {
      const inst = core.installations.get(installationId);
      if (!inst) throw new Error(`no installation ${installationId}`);
      const repoIds = opts.repositories
        ? new Set(opts.repositories.map((n) => core.repo(inst.account.login, n)?.id ?? -1))
        : null;
      const token: TokenRecord = {
        token: newToken("ghs_"),
        installationId,
        expiresAt: this.clock().getTime() + 3600_000,
        repoIds,
        permissions: { ...(opts.permissions ?? inst.permissions) },
      };
      core.tokens.set(token.token, token);
      return token.token;
    });
  }

  /** Creates a repository whose default branch has one commit with `files`. */
  async createRepo(owner: string, name: string, files: Record<string, string>, opts: CreateRepoOptions = {}): Promise<RepoInfo> {
    return this.exclusive(async (core) => this.repoInfo(await core.createRepo(owner, name, files, opts)));
  }

  private async repoInfo(repo: RepoRecord): Promise<RepoInfo> {
    return {
      id: repo.id,
      owner: repo.owner.login,
      name: repo.name,
      fullName: `${repo.owner.login}/${repo.name}`,
      private: repo.private,
      defaultBranch: repo.defaultBranch,
      headSha: (await this.c.branchSha(repo, repo.defaultBranch)) ?? "",
    };
  }

  private repoOrThrow(owner: string, name: string): RepoRecord {
    const repo = this.c.repo(owner, name);
    if (!repo) throw new Error(`no repository ${owner}/${name}`);
    return repo;
  }

  private human(login?: string, repo?: RepoRecord): Actor {
    return { user: login ? this.c.user(login) : (repo?.owner ?? this.c.user("octocat")), app: null };
  }

  /** Sets a collaborator's role (what `collaborators/{user}/permission` answers). */
  setPermission(owner: string, repo: string, login: string, role: Role): void {
    const r = this.repoOrThrow(owner, repo);
    this.c.user(login);
    r.roles.set(login, role);
  }

  // ---- human actions (each raises the webhooks GitHub would) -------------------------------------

  /**
   * Pushes one commit on `branch` (created from `opts.from` or the default branch if missing) that
   * writes `files` (null deletes) and delivers `push` (and `pull_request.synchronize` for pull
   * requests from that branch). Returns the new commit SHA.
   */
  async pushCommit(
    owner: string,
    repo: string,
    branch: string,
    files: FileChanges,
    message: string,
    opts: { user?: string; from?: string; author?: { name: string; email: string }; date?: string } = {},
  ): Promise<string> {
    return this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      const actor = this.human(opts.user, r);
      const head = (await core.branchSha(r, branch)) ?? (await r.git.resolveCommit(opts.from ?? r.defaultBranch));
      const date = opts.date ?? core.now();
      const author = opts.author ? { ...opts.author, date } : { ...core.identity(actor.user), date };
      const sha = await core.commitFiles(r, head, files, message, author);
      const before = await core.branchSha(r, branch);
      if (!(await core.moveBranch(r, branch, sha, actor, before))) throw new Error(`push to ${branch} failed`);
      return sha;
    });
  }

  /** Force-moves (or with null deletes) a branch as a push would, delivering the same webhooks. */
  async setBranch(owner: string, repo: string, branch: string, sha: string | null, opts: { user?: string } = {}): Promise<void> {
    await this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      if (!(await core.moveBranch(r, branch, sha, this.human(opts.user, r)))) throw new Error(`cannot move ${branch}`);
    });
  }

  /** A human opens a pull request (delivers `pull_request.opened`). Returns its number. */
  async openPull(owner: string, repo: string, input: { head: string; base?: string; title: string; body?: string; user?: string; draft?: boolean }): Promise<number> {
    return this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      const issue = await core.createPull(r, this.human(input.user, r), { ...input, base: input.base ?? r.defaultBranch });
      return issue.number;
    });
  }

  /** A human merges a pull request (same rules and webhooks as the REST endpoint). Returns the merge commit. */
  async mergePull(owner: string, repo: string, number: number, opts: { user?: string; method?: "merge" | "squash" | "rebase"; sha?: string } = {}): Promise<string> {
    return this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      const issue = r.issues.get(number);
      if (!issue?.pull) throw new Error(`#${number} is not a pull request`);
      return core.mergePull(r, issue, this.human(opts.user, r), { method: opts.method ?? "squash", sha: opts.sha });
    });
  }

  /** A human closes (or reopens) an issue or pull request. */
  async setIssueState(owner: string, repo: string, number: number, state: "open" | "closed", opts: { user?: string } = {}): Promise<void> {
    await this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      const issue = r.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      await core.updateIssue(r, issue, this.human(opts.user, r), { state });
    });
  }

  /** A human opens an issue (delivers `issues.opened`). Returns its number. */
  async createIssue(owner: string, repo: string, user: string, title: string, body = "", labels: string[] = []): Promise<number> {
    return this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      return (await core.createIssue(r, this.human(user, r), { title, body, labels })).number;
    });
  }

  /** A human comments on an issue or pull request (delivers `issue_comment.created`). Returns the comment id. */
  async postComment(owner: string, repo: string, number: number, user: string, body: string): Promise<number> {
    return this.exclusive((core) => {
      const r = this.repoOrThrow(owner, repo);
      const issue = r.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      return core.addComment(r, issue, this.human(user, r), body).id;
    });
  }

  /** A human comments on a line of a pull request's diff (delivers `pull_request_review_comment.created`). */
  async postReviewComment(owner: string, repo: string, number: number, user: string, body: string, path: string, line: number): Promise<number> {
    return this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      const issue = r.issues.get(number);
      if (!issue?.pull) throw new Error(`no pull request #${number}`);
      return (await core.addReviewComment(r, issue, this.human(user, r), body, path, line)).id;
    });
  }

  /** A human edits a comment (delivers `issue_comment.edited`). */
  async editComment(owner: string, repo: string, commentId: number, user: string, body: string): Promise<void> {
    await this.exclusive((core) => {
      const r = this.repoOrThrow(owner, repo);
      const c = r.comments.find((x) => x.id === commentId);
      if (!c) throw new Error(`no comment ${commentId}`);
      core.editComment(r, c, this.human(user, r), body);
    });
  }

  /** A human adds labels to an issue or pull request (delivers `labeled`). */
  async addLabels(owner: string, repo: string, number: number, labels: string[], opts: { user?: string } = {}): Promise<void> {
    await this.exclusive(async (core) => {
      const r = this.repoOrThrow(owner, repo);
      const issue = r.issues.get(number);
      if (!issue) throw new Error(`no issue #${number}`);
      await core.addLabels(r, issue, labels, this.human(opts.user, r));
    });
  }

  /** A human clicks GitHub's "Re-run" on a check run (delivers `check_run.rerequested` to its app). */
  async rerequestCheckRun(checkRunId: number, opts: { user?: string } = {}): Promise<void> {
    await this.exclusive((core) => {
      for (const r of core.repos.values()) {
        const run = r.checkRuns.find((x) => x.id === checkRunId);
        if (run) return core.rerequestCheckRun(r, run, this.human(opts.user, r));
      }
      throw new Error(`no check run ${checkRunId}`);
    });
  }

  /** A human clicks a check run's action button (delivers `check_run.requested_action` to its app). */
  async clickCheckRunAction(checkRunId: number, identifier: string, opts: { user?: string } = {}): Promise<void> {
    await this.exclusive((core) => {
      for (const r of core.repos.values()) {
        const run = r.checkRuns.find((x) => x.id === checkRunId);
        if (run) return core.requestCheckRunAction(r, run, identifier, this.human(opts.user, r));
      }
      throw new Error(`no check run ${checkRunId}`);
    });
  }

  // ---- state for assertions ----------------------------------------------------------------------

  async branchSha(owner: string, repo: string, branch: string): Promise<string | null> {
    return this.c.branchSha(this.repoOrThrow(owner, repo), branch);
  }

  async branches(owner: string, repo: string): Promise<Record<string, string>> {
    const refs = await this.repoOrThrow(owner, repo).git.listRefs("refs/heads/");
    return Object.fromEntries(refs.map((x) => [x.ref.replace(/^refs\/heads\//, ""), x.sha]));
  }

  /** A file's content at a ref (branch, SHA), or null when absent. */
  async readFile(owner: string, repo: string, ref: string, path: string): Promise<string | null> {
    const r = this.repoOrThrow(owner, repo);
    const sha = await r.git.resolveCommit(ref);
    if (!sha) return null;
    const entry = await r.git.entryAt(sha, path);
    if (!entry || entry.type !== "blob") return null;
    return (await r.git.readBlob(entry.sha)).toString("utf8");
  }

  /** Every file path at a ref. */
  async listFiles(owner: string, repo: string, ref: string): Promise<string[]> {
    const r = this.repoOrThrow(owner, repo);
    const sha = await r.git.resolveCommit(ref);
    if (!sha) throw new Error(`no ref ${ref}`);
    return (await r.git.listTree(sha, true)).filter((e) => e.type !== "tree").map((e) => e.path);
  }

  /** Commits reachable from `ref`, newest first. */
  async log(owner: string, repo: string, ref: string, limit = 100): Promise<LogEntry[]> {
    const r = this.repoOrThrow(owner, repo);
    const sha = await r.git.resolveCommit(ref);
    if (!sha) throw new Error(`no ref ${ref}`);
    const out: LogEntry[] = [];
    for (const s of await r.git.history(sha, { limit })) {
      const c = await r.git.readCommit(s);
      out.push({ sha: c.sha, parents: c.parents, message: c.message.replace(/\n$/, ""), author: c.author, committer: c.committer });
    }
    return out;
  }

  /** The bare repository's directory (for `git` commands in assertions). */
  gitDir(owner: string, repo: string): string {
    return this.repoOrThrow(owner, repo).git.dir;
  }

  private pullSnapshot(i: IssueRecord): PullSnapshot {
    const p = i.pull;
    if (!p) throw new Error("not a pull request");
    return {
      number: i.number,
      title: i.title,
      body: i.body,
      state: i.state,
      merged: p.merged,
      mergedAt: p.mergedAt,
      mergeCommitSha: p.mergeCommitSha,
      mergedBy: p.mergedBy?.login ?? null,
      user: i.user.login,
      headRef: p.headRef,
      headSha: p.headSha,
      baseRef: p.baseRef,
      baseSha: p.baseSha,
      draft: p.draft,
      labels: [...i.labels],
      createdAt: i.createdAt,
      updatedAt: i.updatedAt,
      closedAt: i.closedAt,
    };
  }

  /** Pull requests, oldest first. */
  pulls(owner: string, repo: string): PullSnapshot[] {
    return [...this.repoOrThrow(owner, repo).issues.values()].filter((i) => i.pull).map((i) => this.pullSnapshot(i));
  }

  pull(owner: string, repo: string, number: number): PullSnapshot {
    const i = this.repoOrThrow(owner, repo).issues.get(number);
    if (!i?.pull) throw new Error(`#${number} is not a pull request`);
    return this.pullSnapshot(i);
  }

  /** Issues and pull requests, oldest first. */
  issues(owner: string, repo: string): IssueSnapshot[] {
    return [...this.repoOrThrow(owner, repo).issues.values()].map((i) => ({
      number: i.number,
      title: i.title,
      body: i.body,
      state: i.state,
      user: i.user.login,
      labels: [...i.labels],
      isPull: i.pull !== null,
      createdAt: i.createdAt,
      updatedAt: i.updatedAt,
    }));
  }

  /** Label names of an issue or pull request. */
  labels(owner: string, repo: string, number: number): string[] {
    const i = this.repoOrThrow(owner, repo).issues.get(number);
    if (!i) throw new Error(`no issue #${number}`);
    return [...i.labels];
  }

  /** The repository's labels. */
  repoLabels(owner: string, repo: string): Array<{ name: string; color: string; description: string | null }> {
    return this.repoOrThrow(owner, repo).labels.map((l) => ({ name: l.name, color: l.color, description: l.description }));
  }

  private commentSnapshot(c: CommentRecord): CommentSnapshot {
    return {
      id: c.id,
      issueNumber: c.issueNumber,
      user: c.user.login,
      body: c.body,
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
      viaApp: c.viaApp,
      reactions: c.reactions.map((x: ReactionRecord) => ({ user: x.user.login, content: x.content })),
    };
  }

  /** Comments of one issue/pull request (or of the whole repository), oldest first. */
  comments(owner: string, repo: string, number?: number): CommentSnapshot[] {
    return this.repoOrThrow(owner, repo)
      .comments.filter((c) => number === undefined || c.issueNumber === number)
      .map((c) => this.commentSnapshot(c));
  }

  /** Reactions on a comment. */
  reactions(owner: string, repo: string, commentId: number): Array<{ user: string; content: string }> {
    const c = this.repoOrThrow(owner, repo).comments.find((x) => x.id === commentId);
    if (!c) throw new Error(`no comment ${commentId}`);
    return this.commentSnapshot(c).reactions;
  }

  /** Check runs, oldest first, optionally for one commit and/or name. */
  checkRuns(owner: string, repo: string, filter: { headSha?: string; name?: string } = {}): CheckRunRecord[] {
    return this.repoOrThrow(owner, repo)
      .checkRuns.filter((x) => (!filter.headSha || x.headSha === filter.headSha) && (!filter.name || x.name === filter.name))
      .map((x) => ({ ...x, output: { ...x.output }, actions: x.actions.map((a) => ({ ...a })) }));
  }

  // ---- webhooks and the request log -------------------------------------------------------------

  /** Every webhook raised so far (delivered, failed, pending or skipped), in order. */
  get deliveries(): Delivery[] {
    return [...this.deliverer.deliveries];
  }

  /** Deliveries of one event (and action). */
  deliveriesOf(event: string, action?: string): Delivery[] {
    return this.deliverer.deliveries.filter((d) => d.event === event && (action === undefined || d.action === action));
  }

  clearDeliveries(): void {
    this.deliverer.deliveries.length = 0;
  }

  /** Resolves once every queued webhook has been delivered (including those queued meanwhile). */
  async waitForDeliveries(): Promise<void> {
    await this.lock;
    await this.deliverer.idle();
  }

  /**
   * Resolves once nothing happened for `quietMs` (counted from this call at the earliest): no
   * request in flight, no delivery pending. Use it after anything that makes the bot work
   * asynchronously (a webhook, a finished run): the bot gets `quietMs` to make its first call.
   */
  async waitForIdle(quietMs = 200, timeoutMs = 30_000): Promise<void> {
    const start = Date.now();
    const deadline = start + timeoutMs;
    for (;;) {
      await this.waitForDeliveries();
      const quietFor = Date.now() - Math.max(this.lastActivity, start);
      if (this.inFlight === 0 && this.deliverer.pending === 0 && quietFor >= quietMs) return;
      if (Date.now() > deadline) throw new Error("GitHub twin did not become idle");
      await new Promise((r) => setTimeout(r, Math.max(10, Math.min(quietMs - quietFor, 50))));
    }
  }

  /** Every API request so far. */
  get requests(): RequestRecord[] {
    return [...this.requestLog];
  }

  requestStats(filter: (r: RequestRecord) => boolean = () => true): RequestStats {
    const stats: RequestStats = { total: 0, reads: 0, writes: 0, git: 0, byRoute: {}, errors: 0 };
    for (const r of this.requestLog) {
      if (!filter(r)) continue;
      stats.total++;
      if (r.git) stats.git++;
      else if (r.write) stats.writes++;
      else stats.reads++;
      if (r.status >= 400) stats.errors++;
      stats.byRoute[r.route] = (stats.byRoute[r.route] ?? 0) + 1;
    }
    return stats;
  }

  resetRequests(): void {
    this.requestLog.length = 0;
  }

  // ---- HTTP --------------------------------------------------------------------------------------

  private authenticate(header: string | undefined): AuthInfo | HttpError {
    if (!header) return { kind: "anonymous" };
    const m = /^(bearer|token)\s+(\S+)\s*$/i.exec(header);
    if (!m) return new HttpError(401, "Bad credentials");
    const token = m[2] ?? "";
    const core = this.c;
    if (looksLikeJwt(token)) {
      try {
        const iss = String(decodeJwt(token).claims.iss ?? "");
        const app = [...core.apps.values()].find((a) => String(a.id) === iss || a.clientId === iss);
        if (!app) return new HttpError(401, "Integration not found");
        verifyAppJwt(token, app.publicKey, Math.floor(this.clock().getTime() / 1000));
        return { kind: "app", app };
      } catch (err) {
        return err instanceof HttpError ? err : new HttpError(401, "A JSON web token could not be decoded");
      }
    }
    const rec = core.tokens.get(token);
    if (rec) {
      const installation = core.installations.get(rec.installationId);
      if (!installation || rec.expiresAt <= this.clock().getTime()) return new HttpError(401, "Bad credentials");
      return { kind: "installation", app: core.appFor(installation), installation, token: rec };
    }
    const login = this.personalTokens.get(token);
    if (login) return { kind: "token", user: core.user(login) };
    return new HttpError(401, "Bad credentials");
  }

  private send(res: ServerResponse, reply: Reply, method: string, limitHeaders?: Record<string, string>): void {
    const headers: Record<string, string> = {
      "x-github-media-type": "github.v3; format=json",
      "x-github-api-version-selected": "2022-11-28",
      "x-github-request-id": randomUUID().toUpperCase(),
      ...(limitHeaders ?? {
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": "4999",
        "x-ratelimit-used": "1",
        "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600),
        "x-ratelimit-resource": "core",
      }),
      ...reply.headers,
    };
    let payload: Buffer | undefined;
    if (reply.raw) {
      payload = reply.raw;
    } else if (reply.body !== undefined && reply.status !== 204) {
      payload = Buffer.from(JSON.stringify(reply.body));
      headers["content-type"] = "application/json; charset=utf-8";
    }
    if (payload) headers["content-length"] = String(payload.length);
    res.writeHead(reply.status, headers);
    res.end(method === "HEAD" ? undefined : payload);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const gitPath = matchGitPath((req.method ?? "GET").toUpperCase(), req.url ?? "/");
    if (gitPath) return this.handleGit(req, res, gitPath);
    const { record, finished, started } = this.begin(req, res, {});
    const method = record.method;
    this.limiter?.enter();
    let limitHeaders: Record<string, string> | undefined;
    try {
      const core = this.c;
      const url = new URL(req.url ?? "/", core.urls.web);
      let path = url.pathname;
      if (path === "/api/v3" || path.startsWith("/api/v3/")) path = path.slice("/api/v3".length) || "/";
      path = this.byRepositoryId(path);
      record.path = path;
      const raw = await readBody(req);
      if (method !== "GET" && method !== "HEAD" && raw.length > 0) this.writeBodies.push({ route: `${method} ${path}`, body: raw.toString("utf8") });
      const auth = this.authenticate(req.headers.authorization);
      if (path.startsWith("/_codeload/") || path.startsWith("/_raw/")) {
        record.route = `${method} ${path.startsWith("/_raw/") ? "/_raw/{owner}/{repo}/{ref}/{path}" : "/_codeload/{owner}/{repo}/legacy.tar.gz/{ref}"}`;
        record.auth = "archive";
        record.write = false;
        const reply = await this.exclusive(() => this.serveArchive(path, url, auth), finished);
        record.status = reply.status;
        this.send(res, reply, method);
        return;
      }
      const match = this.router.match(method, path);
      if (match && "route" in match) record.route = `${match.route.method} ${match.route.template}`;
      // Credentials are checked before anything else, like GitHub (a bad token is 401 anywhere).
      if (auth instanceof HttpError) {
        record.auth = "invalid";
        throw auth;
      }
      record.auth = auth.kind;
      record.installationId = auth.kind === "installation" ? auth.installation.id : null;
      if (this.limiter) {
        const identity =
          auth.kind === "installation" ? `installation:${auth.installation.id}` : auth.kind === "app" ? `app:${auth.app.id}` : auth.kind === "token" ? `user:${auth.user.login}` : "anonymous";
        const admitted = this.limiter.admit(identity, method, path, record.write);
        if ("status" in admitted) {
          record.status = admitted.status;
          record.limited = admitted.kind;
          this.send(res, { status: admitted.status, body: { message: admitted.message, documentation_url: "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api" } }, method, admitted.headers);
          return;
        }
        limitHeaders = admitted.headers;
      }
      if (!match) throw new HttpError(404, "Not Found");
      if (!("route" in match)) throw new HttpError(405, "Method Not Allowed");
      let body: unknown = null;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw.toString("utf8"));
        } catch {
          throw new HttpError(400, "Problems parsing JSON");
        }
      }
      const ctx: RequestCtx = { core, url, query: url.searchParams, body, auth, headers: req.headers, archiveTokens: this.archiveTokens };
      const chaos = record.write && auth.kind === "installation" ? this.writeHook?.(record.route, path) : undefined;
      if (chaos === "drop") {
        record.status = 0;
        res.destroy();
        return;
      }
      const fault = auth.kind === "installation" ? this.faults?.({ method, route: record.route, path, write: record.write }) : undefined;
      const serverError = (status: number) => new HttpError(status, status === 503 ? "Service Unavailable" : "Server Error");
      if (fault === "hang") {
        record.status = 0;
        await finished;
        return;
      }
      if (fault && !fault.carriedOut) throw serverError(fault.status);
      const reply = await this.exclusive(() => match.route.handler(ctx, match.params), finished);
      if (fault) throw serverError(fault.status);
      record.status = reply.status;
      if (reply.headers?.link) reply.headers.link = this.linksById(path, reply.headers.link);
      if (chaos === "cut-after") {
        res.destroy();
        return;
      }
      this.send(res, reply, method, limitHeaders);
    } catch (err) {
      const httpErr = err instanceof HttpError ? err : new HttpError(500, err instanceof Error ? err.message : String(err));
      if (!(err instanceof HttpError)) console.error("github twin:", err);
      record.status = httpErr.status;
      if (!res.headersSent) this.send(res, { status: httpErr.status, body: httpErr.body() }, method, limitHeaders);
      else res.end();
    } finally {
      this.limiter?.done();
      this.end(record, started);
    }
  }

  /** What every request starts with: counted in flight, its end awaited, and its log record. */
  private begin(req: IncomingMessage, res: ServerResponse, fields: Partial<RequestRecord>): { record: RequestRecord; finished: Promise<void>; started: number } {
    this.inFlight++;
    this.lastActivity = Date.now();
    const method = (req.method ?? "GET").toUpperCase();
    const finished = new Promise<void>((resolve) => {
      res.on("finish", resolve);
      res.on("close", resolve);
    });
    const record: RequestRecord = {
      method,
      path: "",
      route: `${method} (unmatched)`,
      status: 500,
      auth: "anonymous",
      installationId: null,
      write: method !== "GET" && method !== "HEAD",
      durationMs: 0,
      at: iso(this.clock()),
      atMs: this.clock().getTime(),
      ...fields,
    };
    return { record, finished, started: Date.now() };
  }

  /** ...and ends with: logged, and no longer in flight. */
  private end(record: RequestRecord, started: number): void {
    record.durationMs = Date.now() - started;
    this.requestLog.push(record);
    this.inFlight--;
    this.lastActivity = Date.now();
  }

  /** A git request over smart HTTP (./smart-http.ts): logged as git, outside the rate limits. */
  private async handleGit(req: IncomingMessage, res: ServerResponse, at: GitPath): Promise<void> {
    const { record, finished, started } = this.begin(req, res, { path: (req.url ?? "/").split("?")[0] ?? "/", route: gitRoute(at), write: false, git: true });
    try {
      const answer = await this.serveGit(req, at, record, finished);
      record.status = answer?.status ?? 0;
      if (!answer) return;
      res.writeHead(answer.status, { ...answer.headers, "content-length": String(answer.body.length) });
      res.end(answer.body);
    } catch (err) {
      console.error("github twin:", err);
      record.status = 500;
      if (!res.headersSent) {
        const answer = gitText(500, `git ${at.service ?? ""} failed: ${err instanceof Error ? err.message : String(err)}`);
        res.writeHead(answer.status, answer.headers).end(answer.body);
      } else res.end();
    } finally {
      this.end(record, started);
    }
  }

  /** The answer to a git request, or null when a "hang" fault held it until the client gave up. */
  private async serveGit(req: IncomingMessage, at: GitPath, record: RequestRecord, finished: Promise<void>): Promise<GitAnswer | null> {
    const body = await readBounded(req, MAX_GIT_BODY);
    if (!body) return gitText(413, `The request is larger than ${MAX_GIT_BODY} bytes: push fewer or smaller objects at a time.`);
    const token = gitToken(req.headers.authorization);
    const auth = token === null ? ({ kind: "anonymous" } as const) : token === "bad" ? null : this.authenticate(`token ${token}`);
    // An app's JWT is no git credential: git takes installation and personal tokens only.
    if (!auth || auth instanceof HttpError || auth.kind === "app") {
      record.auth = "invalid";
      return gitUnauthorized("Invalid username or token. Send an installation token as the password (x-access-token:<token>).");
    }
    record.auth = auth.kind;
    record.installationId = auth.kind === "installation" ? auth.installation.id : null;
    const service = at.service;
    if (!service) return gitText(403, "Only git's smart HTTP protocol is served: ask for info/refs?service=git-upload-pack or git-receive-pack.");
    const core = this.c;
    const repo = core.repo(at.owner, at.repo);
    const denied = gitDenied(core, repo, `${at.owner}/${at.repo}`, auth, service);
    if (denied || !repo) return denied;
    const fault = auth.kind === "installation" ? this.faults?.({ method: record.method, route: record.route, path: record.path, write: false, git: true }) : undefined;
    if (fault === "hang") {
      await finished;
      return null;
    }
    const serverError = (status: number) => gitText(status, status === 503 ? "Service Unavailable" : "Server Error");
    if (fault && !fault.carriedOut) return serverError(fault.status);
    const actor = auth.kind === "anonymous" ? null : actorOf(auth);
    const backend = () =>
      httpBackend(repo.git, {
        method: record.method,
        path: at,
        contentType: req.headers["content-type"],
        contentEncoding: req.headers["content-encoding"],
        gitProtocol: typeof req.headers["git-protocol"] === "string" ? req.headers["git-protocol"] : undefined,
        remoteUser: actor?.user.login ?? null,
        body,
      });
    let answer: GitAnswer;
    if (service === "receive-pack" && at.step === "rpc" && actor) {
      // A push moves refs itself, beside the twin's other requests as on GitHub (git locks each
      // ref it moves, and refuses an update whose old value is not the ref's). Then, alone with
      // the twin's other writes, each branch the push moved raises what a push raises on GitHub,
      // the pusher as the actor (webhooks go out once the answer is sent). A branch that is not
      // where the push put it was refused, or moved by another write since, which raised its own.
      const commands = pushCommands(body, req.headers["content-encoding"]);
      const out = await backend();
      await this.c.preparePush(repo, commands);
      answer = await this.exclusive(async (c) => {
        for (const cmd of commands) {
          if (!cmd.ref.startsWith("refs/heads/") || cmd.old === cmd.new) continue;
          if ((await repo.git.refSha(cmd.ref)) !== cmd.new) continue;
          await c.branchMoved(repo, cmd.ref.slice("refs/heads/".length), cmd.old, cmd.new, actor);
        }
        return out;
      }, finished);
    } else {
      // Fetches read what git has: refs move atomically, so they need not wait for the lock.
      answer = await backend();
    }
    return fault ? serverError(fault.status) : answer;
  }

  /**
   * GitHub answers a repository's routes under /repositories/{id} too, and its pagination links
   * take that form: /repositories/{id}/rest is served as /repos/{owner}/{name}/rest.
   */
  private byRepositoryId(path: string): string {
    const m = /^\/repositories\/(\d+)(\/.*)?$/.exec(path);
    const repo = m && [...this.c.repos.values()].find((r) => r.id === Number(m[1]));
    return repo ? `/repos/${encodeURIComponent(repo.owner.login)}/${encodeURIComponent(repo.name)}${m[2] ?? ""}` : path;
  }

  /** The pagination links of a repository's listing, in GitHub's /repositories/{id} form. */
  private linksById(path: string, link: string): string {
    const m = /^\/repos\/([^/]+)\/([^/]+)\//.exec(path);
    const repo = m && this.c.repo(decodeURIComponent(m[1] ?? ""), decodeURIComponent(m[2] ?? ""));
    return repo && m ? link.split(`/repos/${m[1]}/${m[2]}/`).join(`/repositories/${repo.id}/`) : link;
  }

  /** codeload-like tarballs and raw file downloads (token in the query or Authorization header). */
  private async serveArchive(path: string, url: URL, auth: AuthInfo | HttpError): Promise<Reply> {
    const core = this.c;
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const [kind, owner = "", name = ""] = parts;
    const repo = core.repo(owner, name);
    if (!repo) throw new HttpError(404, "Not Found");
    const qToken = url.searchParams.get("token");
    const grant = qToken ? this.archiveTokens.get(qToken) : undefined;
    let allowed = !repo.private || (grant !== undefined && grant.repoId === repo.id && grant.expiresAt > Date.now());
    if (!allowed && !(auth instanceof HttpError)) {
      if (auth.kind === "installation") {
        const ids = auth.token.repoIds ?? new Set(core.reposOf(auth.installation).map((r) => r.id));
        allowed = ids.has(repo.id) && Boolean(auth.token.permissions.contents);
      } else if (auth.kind === "token") {
        allowed = core.roleOf(repo, auth.user) !== "none";
      }
    }
    if (!allowed) throw new HttpError(404, "Not Found");
    if (kind === "_codeload") {
      const ref = parts.slice(4).join("/");
      const sha = await repo.git.resolveCommit(ref);
      if (!sha) throw new HttpError(404, "Not Found");
      const prefix = `${repo.owner.login}-${repo.name}-${sha.slice(0, 7)}`;
      const data = await repo.git.archive(sha, `${prefix}/`);
      return {
        status: 200,
        raw: data,
        headers: { "content-type": "application/x-gzip", "content-disposition": `attachment; filename=${prefix}.tar.gz` },
      };
    }
    const ref = parts[3] ?? "";
    const filePath = parts.slice(4).join("/");
    const sha = await repo.git.resolveCommit(ref);
    const entry = sha ? await repo.git.entryAt(sha, filePath) : null;
    if (!entry || entry.type !== "blob") throw new HttpError(404, "Not Found");
    return { status: 200, raw: await repo.git.readBlob(entry.sha), headers: { "content-type": "text/plain; charset=utf-8" } };
  }
}

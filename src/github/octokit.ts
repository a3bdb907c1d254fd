// The GitHub port implemented with Octokit (the installation-authenticated client Probot
// hands out). Every method is one small, idempotent step of the loop; errors carry the
// HTTP status so reconcile can tell "try again next pass" from "this PR moved".
import type { Octokit } from "@octokit/rest";
import type { ProbotOctokit } from "probot";
import { decodeRecord, LABEL, parseBranchName } from "../ledger/index.js";
import type { WriteBudgetView } from "./budget.js";
import type { GitWire } from "./git-wire.js";
import { CONFIG_PATH, configText, mergeConfigLayers, parseConfig } from "../config.js";
import type { CheckRunSpec, ConfigFileText, ExperimentPull, GitHubPort, IssueComment, IssueInfo, RepoRef } from "../types.js";

export class GitHubError extends Error {
  constructor(
    message: string,
    readonly status: number | null,
  ) {
    super(message);
    this.name = "GitHubError";
  }
}

function statusOf(err: unknown): number | null {
  const s = (err as { status?: unknown })?.status;
  return typeof s === "number" ? s : null;
}

/** Wrap an Octokit failure into a one-line error naming the operation. */
async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const status = statusOf(err);
    const msg = err instanceof Error ? err.message : String(err);
    throw new GitHubError(`GitHub ${what} failed${status ? ` (HTTP ${status})` : ""}: ${msg.split("\n")[0]}`, status);
  }
}

/**
 * Send a write that is not idempotent at most once more after a failure that may have been
 * carried out (a 5xx, or no answer): `done()` says whether it was. Resolves to the answer, or to
 * null when the first attempt turned out to have been carried out.
 */
async function sendOnce<T>(send: () => Promise<T>, done: () => Promise<boolean>): Promise<T | null> {
  try {
    return await send();
  } catch (err) {
    const status = statusOf(err);
    // 429: refused for now, nothing carried out; the installation's gate holds the next attempt
    // until GitHub's window has passed.
    if (status === 429) return await send();
    if (status !== null && status < 500) throw err; // refused: nothing was carried out
    if (await done()) return null;
    return await send();
  }
}

const oldestFirstSince = (since: string) => ({ since, sort: "created" as const, direction: "asc" as const, per_page: 100 });

/** The fields an issue comment and a review comment share; the number is the last URL segment. */
function commentFields(
  c: {
    id: number;
    user: { login: string; type: string } | null;
    body?: string;
    created_at: string;
    updated_at: string;
    reactions?: { total_count: number };
  },
  parentUrl: string,
  unknownReactions: number,
): IssueComment {
  return {
    id: c.id,
    issueNumber: Number(/\/(\d+)$/.exec(parentUrl)?.[1] ?? 0),
    user: c.user?.login ?? "",
    userType: c.user?.type ?? "User",
    body: c.body ?? "",
    createdAt: c.created_at,
    updatedAt: c.updated_at,
    reactions: c.reactions?.total_count ?? unknownReactions,
  };
}

/**
 * The bot creates, moves and deletes refs only on experiment branches (`autoresearch/<n>-…`): a
 * head ref read from a pull request is never trusted to name one of the repository's own
 * branches.
 */
function ownBranch(branch: string): string {
  if (!parseBranchName(branch)) {
    throw new GitHubError(`refusing to write the ref ${JSON.stringify(branch)}: the bot writes only autoresearch/<n>-… branches`, null);
  }
  return branch;
}

/** Files read at a commit sha, shared by every pass of this process (oldest evicted first). */
const fileCache = new Map<string, { text: string; sha: string } | null>();
const FILE_CACHE_ENTRIES = 256;

/**
 * The configuration read for a commit. Only the repository's own file is read at that commit;
 * a result that also came from the owner's `.github` repository or an `_extends` (read at their
 * default branches, which can move) is read again after CONFIG_TTL_MS.
 */
const configCache = new Map<string, { value: ConfigFileText | null; at: number; pinned: boolean }>();
const CONFIG_TTL_MS = 10 * 60_000;

/**
 * What this process has read of a repository, so that a pass costs a few requests however long
 * the history grows (GitHub counts every request). A cache only: a restart reads it all again.
 */
interface RepoCache {
  /** Experiment pull requests by number, as last listed. */
  pulls: Map<number, ExperimentPull>;
  /** The newest `updated_at` seen: later listings stop once they reach it. */
  watermark: string | null;
  /** When the ledger was last listed in full (a safety net, like an informer's resync). */
  fullAt: number;
  /** Pull requests whose cached copy may be wrong (a write to them failed): read again. */
  stale: Set<number>;
  defaultBranch: { name: string; at: number } | null;
  /** Issues by label (the control issue, the reports): the bot's own writes keep them current. */
  issues: Map<string, { at: number; items: IssueInfo[] }>;
  labelsEnsured: Set<string>;
  /** The narrowed read token runs download with, reused until shortly before it expires. */
  readToken: { token: string; until: number } | null;
}
const repoCaches = new Map<string, RepoCache>();
/** How long a listing may be reused before it is read again in full. */
export const FULL_RELIST_MS = 30 * 60_000;
const DEFAULT_BRANCH_TTL_MS = 10 * 60_000;
const ISSUES_TTL_MS = 5 * 60_000;
/**
 * A read token is given to runs until this long before it expires: a run downloads at its start,
 * but a Job may wait for a node (AUTORESEARCH_PENDING_TIMEOUT_SECONDS) before its fetch runs.
 */
const TOKEN_MARGIN_MS = 30 * 60_000;
/** The page size of a listing after the first: what a pass or two changes. */
const INCREMENTAL_PAGE = 30;
/** A pull request updated within this much of the watermark is read again (equal timestamps). */
const WATERMARK_OVERLAP_MS = 60_000;

/** Forget what this process read of every repository (tests; a new GitHub twin). */
export function clearGitHubCaches(): void {
  repoCaches.clear();
  fileCache.clear();
  configCache.clear();
}

/** Label names, as GitHub lists them on issues and pull requests (objects, or plain names). */
function labelNames(labels: ({ name?: string } | string)[]): string[] {
  return labels.map((l) => (typeof l === "string" ? l : (l.name ?? "")));
}

/** The fields of a pull request (a listing's or a single read's) the ledger uses. */
interface PullFields {
  number: number;
  state: string;
  merged_at: string | null;
  user: { login: string } | null;
  head: { ref: string; sha: string; repo: { full_name: string } | null };
  base: { ref: string };
  labels: ({ name?: string } | string)[];
  title: string;
  body: string | null;
}

/**
 * An experiment pull request (on an `autoresearch/…` branch, or carrying a record or the label),
 * or null for any other pull request. Which of them count is decided by src/trust.ts.
 */
function experimentPull(p: PullFields): ExperimentPull | null {
  const labels = labelNames(p.labels);
  const record = decodeRecord(p.body ?? "");
  if (!record && !parseBranchName(p.head.ref) && !labels.includes(LABEL)) return null;
  return {
    number: p.number,
    state: p.state === "open" ? "open" : "closed",
    merged: Boolean(p.merged_at),
    author: p.user?.login ?? "",
    headRepo: p.head.repo?.full_name ?? "",
    headRef: p.head.ref,
    headSha: p.head.sha,
    baseRef: p.base.ref,
    labels,
    title: p.title,
    body: p.body ?? "",
    record,
  };
}

/**
 * The client the port works with: Probot's installation client in the bot, or a plain token
 * client (`@octokit/rest`, the results command) that has no config plugin.
 */
export type GitHubClient = Pick<Octokit, "rest" | "paginate" | "request" | "auth"> & Partial<Pick<ProbotOctokit, "config">>;

export class OctokitGitHub implements GitHubPort {
  readonly botLogin: string | null;
  readonly budget: WriteBudgetView | undefined;
  /** The installation's backoff gate (src/github/backoff.ts): closed while GitHub holds it back. */
  private readonly gate: { wait(): Promise<void> } | undefined;

  /** Commits and branch deletions by git push (src/github/git-wire.ts); null: through the REST API. */
  private readonly wire: GitWire | null;

  constructor(
    private readonly octokit: GitHubClient,
    readonly repo: RepoRef,
    opts: { botLogin?: string | null; budget?: WriteBudgetView; gate?: { wait(): Promise<void> }; wire?: GitWire | null } = {},
  ) {
    this.botLogin = opts.botLogin ?? null;
    this.budget = opts.budget;
    this.gate = opts.gate;
    this.wire = opts.wire ?? null;
  }

  get refsByGit(): boolean {
    return this.wire !== null;
  }

  private get r() {
    return { owner: this.repo.owner, repo: this.repo.repo };
  }

  private get cache(): RepoCache {
    const base = this.octokit.request.endpoint.DEFAULTS.baseUrl;
    const key = `${base}|${this.r.owner}/${this.r.repo}`.toLowerCase();
    let c = repoCaches.get(key);
    if (!c) {
      c = { pulls: new Map(), watermark: null, fullAt: 0, stale: new Set(), defaultBranch: null, issues: new Map(), labelsEnsured: new Set(), readToken: null };
      repoCaches.set(key, c);
    }
    return c;
  }

  async getDefaultBranch(): Promise<string> {
    // Renaming the default branch is rare: read again every few minutes, not every pass.
    const cached = this.cache.defaultBranch;
    if (cached && Date.now() - cached.at < DEFAULT_BRANCH_TTL_MS) return cached.name;
    const { data } = await step("read repository", () => this.octokit.rest.repos.get(this.r));
    this.cache.defaultBranch = { name: data.default_branch, at: Date.now() };
    return data.default_branch;
  }

  async getBranchSha(branch: string): Promise<string> {
    const { data } = await step(`read branch ${branch}`, () =>
      this.octokit.rest.git.getRef({ ...this.r, ref: `heads/${branch}` }),
    );
    return data.object.sha;
  }

  async readFile(path: string, ref: string): Promise<{ text: string; sha: string } | null> {
    // A file at a commit sha never changes: every pass on an unchanged head reads it once.
    const key = /^[0-9a-f]{40}$/.test(ref) ? `${this.r.owner}/${this.r.repo}@${ref}:${path}` : null;
    if (key && fileCache.has(key)) return fileCache.get(key) ?? null;
    let file: { text: string; sha: string } | null = null;
    try {
      const { data } = await this.octokit.rest.repos.getContent({ ...this.r, path, ref });
      if (!Array.isArray(data) && data.type === "file" && "content" in data) {
        file = { text: Buffer.from(data.content, "base64").toString("utf8"), sha: data.sha };
      }
    } catch (err) {
      if (statusOf(err) !== 404) return step(`read ${path}@${ref.slice(0, 7)}`, () => Promise.reject(err));
    }
    if (key) {
      fileCache.set(key, file);
      if (fileCache.size > FILE_CACHE_ENTRIES) fileCache.delete(fileCache.keys().next().value!);
    }
    return file;
  }

  async readConfig(sha: string): Promise<ConfigFileText | null> {
    const own = `${this.r.owner}/${this.r.repo}:${CONFIG_PATH}`;
    const key = `${this.octokit.request.endpoint.DEFAULTS.baseUrl}|${own}@${sha}`.toLowerCase();
    const hit = configCache.get(key);
    if (hit && (hit.pinned || Date.now() - hit.at < CONFIG_TTL_MS)) return hit.value;
    if (!this.octokit.config) throw new GitHubError("this GitHub client cannot read configuration (it has no config plugin)", null);
    let got: Awaited<ReturnType<NonNullable<GitHubClient["config"]>["get"]>>;
    try {
      // Probot's config plugin: the repository's file at `sha` (it passes `branch` on as the
      // ref), else `<owner>/.github`'s; then whatever `_extends` names. Those other files are
      // read at their default branch: the plugin takes no ref for them.
      got = await this.octokit.config.get({
        ...this.r,
        path: CONFIG_PATH,
        branch: sha,
        defaults: (layers) => mergeConfigLayers(layers) as Record<string, unknown>,
      });
    } catch (err) {
      // The plugin parses with its own YAML reader and says only "could not be parsed". When it
      // is the repository's own file, parseConfig gets it as it is and names line and column.
      if (statusOf(err) === null) {
        const file = await this.readFile(CONFIG_PATH, sha);
        if (file && !parseConfig(file.text).ok) return { text: file.text, files: [own] };
      }
      return step(`read ${CONFIG_PATH}@${sha.slice(0, 7)} (with the owner's .github defaults and _extends)`, () => Promise.reject(err));
    }
    const found = got.files.filter((f) => f.config !== null);
    const value = found.length ? { text: configText(got.config), files: found.map((f) => `${f.owner}/${f.repo}:${f.path}`).reverse() } : null;
    const pinned = got.files.length === 1 && found.length === 1;
    configCache.set(key, { value, at: Date.now(), pinned });
    if (configCache.size > FILE_CACHE_ENTRIES) configCache.delete(configCache.keys().next().value!);
    return value;
  }

  async listExperimentPulls(): Promise<ExperimentPull[]> {
    // Newest-updated first, read until the listing reaches what this process already holds:
    // one request per pass however long the history is. Every write to a pull request (body,
    // labels, state, a merge, a push) moves its updated_at, so nothing that changed is missed.
    // A full listing on start and every FULL_RELIST_MS is the safety net. Pull requests are
    // found by their branch or record, not by a label: an experiment that was opened but not
    // labelled yet is still seen, so its number is never given out twice.
    const c = this.cache;
    if (Date.now() - c.fullAt > FULL_RELIST_MS) {
      c.pulls.clear();
      c.watermark = null;
      c.stale.clear();
      c.fullAt = Date.now();
    }
    const stopAt = c.watermark ? new Date(Date.parse(c.watermark) - WATERMARK_OVERLAP_MS).toISOString() : null;
    // After the first listing a pass needs only what changed since: smaller pages (a page is
    // whole pull requests with their bodies, and parsing them was most of a pass's CPU), and
    // more of them when more changed.
    const perPage = stopAt ? INCREMENTAL_PAGE : 100;
    let newest = c.watermark;
    for (let page = 1; ; page++) {
      const { data } = await step("list pull requests", () =>
        this.octokit.rest.pulls.list({ ...this.r, state: "all", sort: "updated", direction: "desc", per_page: perPage, page }),
      );
      for (const p of data) {
        if (!newest || p.updated_at > newest) newest = p.updated_at;
        const pull = experimentPull(p);
        if (pull) c.pulls.set(pull.number, pull);
        else c.pulls.delete(p.number);
        c.stale.delete(p.number);
      }
      if (data.length < perPage) break;
      if (stopAt && data[data.length - 1]!.updated_at < stopAt) break;
    }
    for (const number of [...c.stale]) {
      const { data } = await step(`read PR #${number}`, () => this.octokit.rest.pulls.get({ ...this.r, pull_number: number }));
      const pull = experimentPull(data);
      if (pull) c.pulls.set(number, pull);
      else c.pulls.delete(number);
      c.stale.delete(number);
    }
    c.watermark = newest;
    // Copies: a pass changes what it read as it goes. An open experiment's record is decoded
    // afresh; a closed one's is shared (it changes only through updatePull, which marks it
    // stale when the write fails).
    return [...c.pulls.values()]
      .map((p) => ({ ...p, labels: [...p.labels], record: p.state === "open" ? decodeRecord(p.body) : p.record }))
      .sort((a, b) => a.number - b.number);
  }

  async commitFiles(branch: string, parentSha: string, files: Record<string, string>, message: string): Promise<string> {
    ownBranch(branch);
    // By git: the branch with its commit in one push, and no API write at all.
    if (this.wire) return this.wire.commit(branch, parentSha, files, message);
    // Only what differs from the parent is written (the pass read these files at the parent:
    // the reads are cached).
    const changed: { path: string; content: string; blob: string | null }[] = [];
    for (const [path, content] of Object.entries(files)) {
      const current = await this.readFile(path, parentSha);
      if (current?.text !== content) changed.push({ path, content, blob: current?.sha ?? null });
    }
    if (changed.length === 1) {
      // One file, the common case: the branch at the parent, then one contents write that
      // commits on it. Two writes instead of three (tree, commit, ref).
      const [f] = changed as [(typeof changed)[number]];
      await this.putBranch(branch, parentSha);
      const { data } = await step(`commit ${f.path}`, () =>
        this.octokit.rest.repos.createOrUpdateFileContents({
          ...this.r,
          path: f.path,
          branch,
          message,
          content: Buffer.from(f.content, "utf8").toString("base64"),
          ...(f.blob ? { sha: f.blob } : {}),
        }),
      );
      if (!data.commit.sha) throw new GitHubError(`GitHub commit ${f.path} failed: no commit in the answer`, null);
      return data.commit.sha;
    }
    const { data: parent } = await step("read base commit", () =>
      this.octokit.rest.git.getCommit({ ...this.r, commit_sha: parentSha }),
    );
    let treeSha = parent.tree.sha;
    if (changed.length > 0) {
      const { data: tree } = await step("create tree", () =>
        this.octokit.rest.git.createTree({
          ...this.r,
          base_tree: parent.tree.sha,
          tree: changed.map((f) => ({ path: f.path, mode: "100644" as const, type: "blob" as const, content: f.content })),
        }),
      );
      treeSha = tree.sha;
    }
    const { data: commit } = await step("create commit", () =>
      this.octokit.rest.git.createCommit({ ...this.r, message, tree: treeSha, parents: [parentSha] }),
    );
    await this.putBranch(branch, commit.sha);
    return commit.sha;
  }

  /** Create `branch` at `sha`, or move it there (the experiment branch belongs to the bot). */
  private async putBranch(branch: string, sha: string): Promise<void> {
    try {
      await this.octokit.rest.git.createRef({ ...this.r, ref: `refs/heads/${branch}`, sha });
    } catch (err) {
      // 422: the branch exists (an earlier pass crashed after creating it, or a re-apply).
      if (statusOf(err) !== 422) return step(`create branch ${branch}`, () => Promise.reject(err));
      await step(`move branch ${branch}`, () =>
        this.octokit.rest.git.updateRef({ ...this.r, ref: `heads/${branch}`, sha, force: true }),
      );
    }
  }

  async createPull(p: { title: string; head: string; base: string; body: string; labels: string[] }): Promise<number> {
    const { data } = await step("open pull request", () =>
      this.octokit.rest.pulls.create({ ...this.r, title: p.title, head: p.head, base: p.base, body: p.body }),
    );
    if (p.labels.length) await this.setLabels(data.number, p.labels);
    return data.number;
  }

  async updatePull(number: number, p: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void> {
    // The issues endpoint takes the body, the state and the labels of a pull request in one
    // write (the pulls endpoint takes no labels).
    try {
      await step(`update PR #${number}`, () => this.octokit.rest.issues.update({ ...this.r, issue_number: number, ...p }));
    } catch (err) {
      // The pass may have changed its copy already: read this one again next time.
      this.cache.stale.add(number);
      throw err;
    }
  }

  async setLabels(number: number, labels: string[]): Promise<void> {
    await step(`label PR #${number}`, () =>
      this.octokit.rest.issues.setLabels({ ...this.r, issue_number: number, labels }),
    );
  }

  async ensureLabels(labels: { name: string; color: string; description: string }[]): Promise<void> {
    const ensured = this.cache.labelsEnsured;
    if (labels.every((l) => ensured.has(l.name))) return;
    const existing = await step("list labels", () =>
      this.octokit.paginate(this.octokit.rest.issues.listLabelsForRepo, { ...this.r, per_page: 100 }),
    );
    const have = new Set(existing.map((l) => l.name));
    for (const l of labels) {
      if (have.has(l.name)) continue;
      try {
        await this.octokit.rest.issues.createLabel({ ...this.r, ...l });
      } catch (err) {
        if (statusOf(err) !== 422) await step(`create label ${l.name}`, () => Promise.reject(err));
      }
    }
    for (const l of labels) ensured.add(l.name);
  }

  // A comment or an issue is not idempotent: an attempt GitHub carried out but answered 5xx (or
  // that timed out on the way back) would appear twice if sent again blindly, as the retry
  // plugin would. So these are sent without its retries; on a failure that may have been carried
  // out, the bot looks for its own comment or issue first and sends again only when it is not there.

  async comment(number: number, body: string): Promise<void> {
    const since = new Date(Date.now() - 60_000).toISOString();
    const send = () => this.octokit.rest.issues.createComment({ ...this.r, issue_number: number, body, request: { retries: 0 } });
    await step(`comment on #${number}`, () =>
      sendOnce(send, async () => {
        const { data } = await this.octokit.rest.issues.listComments({ ...this.r, issue_number: number, since, per_page: 100 });
        return data.some((c) => c.body === body && (!this.botLogin || c.user?.login === this.botLogin));
      }),
    );
  }

  async mergePull(number: number, sha: string, title: string, message: string) {
    try {
      const { data } = await this.octokit.rest.pulls.merge({
        ...this.r,
        pull_number: number,
        sha,
        merge_method: "squash",
        commit_title: title,
        commit_message: message,
        // 405/409 answer "not now" for a reason (head moved, not mergeable): no blind retries.
        request: { retries: 0 },
      });
      return { merged: data.merged, reason: data.merged ? undefined : data.message };
    } catch (err) {
      const status = statusOf(err);
      // 405 not mergeable, 409 head moved: the caller re-measures instead of merging blind.
      if (status === 405 || status === 409 || status === 422) {
        return { merged: false, reason: `HTTP ${status}: ${(err as Error).message.split("\n")[0]}` };
      }
      return step(`merge PR #${number}`, () => Promise.reject(err));
    }
  }

  async deleteBranches(branches: { name: string; sha: string }[]): Promise<void> {
    for (const b of branches) ownBranch(b.name);
    // By git: one push for all of them, each deleted only while it is still at its commit.
    if (this.wire) {
      await this.wire.deleteBranches(branches);
      return;
    }
    // The REST API has no compare-and-delete: the caller checked the commit just before.
    for (const b of branches) {
      try {
        await this.octokit.rest.git.deleteRef({ ...this.r, ref: `heads/${b.name}` });
      } catch (err) {
        if (statusOf(err) !== 404 && statusOf(err) !== 422) await step(`delete ${b.name}`, () => Promise.reject(err));
      }
    }
  }

  async upsertCheckRun(spec: CheckRunSpec): Promise<void> {
    const { data } = await step("list check runs", () =>
      this.octokit.rest.checks.listForRef({ ...this.r, ref: spec.headSha, check_name: spec.name, per_page: 100 }),
    );
    const existing = data.check_runs.find((c) => c.external_id === spec.externalId);
    const now = new Date().toISOString();
    const body = {
      ...this.r,
      name: spec.name,
      external_id: spec.externalId,
      status: spec.status,
      output: { title: spec.output.title, summary: spec.output.summary, text: spec.output.text },
      ...(spec.conclusion ? { conclusion: spec.conclusion, completed_at: now } : {}),
      ...(spec.detailsUrl ? { details_url: spec.detailsUrl } : {}),
      ...(spec.actions ? { actions: spec.actions } : {}),
    };
    if (existing) {
      // A completed check run stays as it is: re-running a pass must not rewrite history.
      if (existing.status === "completed" && spec.status !== "completed") return;
      await step("update check run", () => this.octokit.rest.checks.update({ ...body, check_run_id: existing.id }));
    } else {
      await step("create check run", () =>
        this.octokit.rest.checks.create({ ...body, head_sha: spec.headSha, started_at: now }),
      );
    }
  }

  async archiveSource(sha: string): Promise<{ url: string; token: string | null }> {
    const base = this.octokit.request.endpoint.DEFAULTS.baseUrl.replace(/\/$/, "");
    // A token for this one repository with contents:read only (POST
    // /app/installations/{id}/access_tokens with repositories and permissions): it is handed
    // to the runner's fetch step, which must not be able to push or reach other repositories.
    const url = `${base}/repos/${this.r.owner}/${this.r.repo}/tarball/${sha}`;
    const auth = (await this.octokit.auth({ type: "installation" })) as { token?: string; installationId?: number } | undefined;
    if (!auth?.installationId) return { url, token: auth?.token ?? null }; // a plain token (CLI, PAT)
    // One token serves every run of the repository for most of its hour: minting one per run
    // would be a request to GitHub per run. A run needs it for its download only, at its start.
    const cached = this.cache.readToken;
    if (cached && Date.now() < cached.until) {
      // The run downloads with it at once, as this installation: not while GitHub holds the
      // installation back (minting a token goes through the gate; a cached one must wait too).
      await this.gate?.wait();
      return { url, token: cached.token };
    }
    const narrowed = await this.octokit.request("POST /app/installations/{installation_id}/access_tokens", {
      installation_id: auth.installationId,
      repositories: [this.r.repo],
      permissions: { contents: "read" },
    });
    const expires = Date.parse(narrowed.data.expires_at);
    this.cache.readToken = { token: narrowed.data.token, until: (Number.isFinite(expires) ? expires : Date.now() + 3_600_000) - TOKEN_MARGIN_MS };
    return { url, token: narrowed.data.token };
  }

  async listCommentsSince(since: string): Promise<IssueComment[]> {
    const data = await step("list comments", () =>
      this.octokit.paginate(this.octokit.rest.issues.listCommentsForRepo, { ...this.r, ...oldestFirstSince(since) }),
    );
    // Unknown reaction counts read as "maybe acknowledged", so the reactions are checked.
    return data.map((c) => commentFields(c, c.issue_url, 1));
  }

  async listReviewCommentsSince(since: string): Promise<IssueComment[]> {
    const data = await step("list review comments", () =>
      this.octokit.paginate(this.octokit.rest.pulls.listReviewCommentsForRepo, { ...this.r, ...oldestFirstSince(since) }),
    );
    return data.map((c) => ({
      ...commentFields(c, c.pull_request_url, 0),
      review: { path: c.path, line: c.line ?? c.original_line ?? null },
    }));
  }

  async getPermission(login: string): Promise<string> {
    try {
      const { data } = await this.octokit.rest.repos.getCollaboratorPermissionLevel({ ...this.r, username: login });
      const role = (data as { role_name?: string }).role_name;
      return role && role !== "" ? role : data.permission;
    } catch (err) {
      if (statusOf(err) === 404) return "none";
      return step(`read the permission of ${login}`, () => Promise.reject(err));
    }
  }

  async listReactions(commentId: number): Promise<{ user: string; userType: string; content: string }[]> {
    const data = await step("list reactions", () =>
      this.octokit.paginate(this.octokit.rest.reactions.listForIssueComment, { ...this.r, comment_id: commentId, per_page: 100 }),
    );
    return data.map((x) => ({ user: x.user?.login ?? "", userType: x.user?.type ?? "User", content: x.content }));
  }

  async react(commentId: number, content: "+1" | "-1" | "eyes" | "confused"): Promise<void> {
    await step("react to a comment", () =>
      this.octokit.rest.reactions.createForIssueComment({ ...this.r, comment_id: commentId, content }),
    );
  }

  async listIssues(label: string): Promise<IssueInfo[]> {
    // The control issue and the reports are written by the bot itself (createIssue and
    // updateIssue keep this copy current); a person's change shows within ISSUES_TTL_MS.
    const cached = this.cache.issues.get(label);
    if (cached && Date.now() - cached.at < ISSUES_TTL_MS) return cached.items.map((i) => ({ ...i, labels: [...i.labels] }));
    const data = await step(`list issues labelled ${label}`, () =>
      this.octokit.paginate(this.octokit.rest.issues.listForRepo, { ...this.r, labels: label, state: "all", per_page: 100 }),
    );
    const items = data
      .filter((i) => !i.pull_request)
      .map((i) => ({
        number: i.number,
        author: i.user?.login ?? "",
        title: i.title,
        body: i.body ?? "",
        state: i.state === "open" ? ("open" as const) : ("closed" as const),
        labels: labelNames(i.labels),
      }));
    this.cache.issues.set(label, { at: Date.now(), items });
    return items.map((i) => ({ ...i, labels: [...i.labels] }));
  }

  async createIssue(p: { title: string; body: string; labels: string[] }): Promise<number> {
    let found: number | null = null;
    const send = () => this.octokit.rest.issues.create({ ...this.r, ...p, request: { retries: 0 } });
    const created = await step("open an issue", () =>
      sendOnce(send, async () => {
        const { data } = await this.octokit.rest.issues.listForRepo({ ...this.r, state: "open", sort: "created", direction: "desc", per_page: 30 });
        found = data.find((i) => !i.pull_request && i.title === p.title && (!this.botLogin || i.user?.login === this.botLogin))?.number ?? null;
        return found !== null;
      }),
    );
    const data = { number: created?.data.number ?? found! };
    for (const label of p.labels) {
      this.cache.issues.get(label)?.items.push({ number: data.number, author: this.botLogin ?? "", title: p.title, body: p.body, state: "open", labels: [...p.labels] });
    }
    return data.number;
  }

  async updateIssue(number: number, p: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void> {
    try {
      await step(`update issue #${number}`, () => this.octokit.rest.issues.update({ ...this.r, issue_number: number, ...p }));
    } catch (err) {
      this.cache.issues.clear();
      throw err;
    }
    for (const [label, entry] of this.cache.issues) {
      const i = entry.items.find((x) => x.number === number);
      if (!i) continue;
      Object.assign(i, { ...(p.title !== undefined ? { title: p.title } : {}), ...(p.body !== undefined ? { body: p.body } : {}), ...(p.state ? { state: p.state } : {}) });
      if (p.labels) {
        i.labels = [...p.labels];
        if (!p.labels.includes(label)) entry.items = entry.items.filter((x) => x !== i);
      }
    }
  }

  /** Experiment branches that exist (`autoresearch/…`): closed experiments' are deleted when the write budget allows. */
  async listExperimentBranches(): Promise<{ name: string; sha: string }[]> {
    const refs = await step("list experiment branches", () =>
      this.octokit.paginate(this.octokit.rest.git.listMatchingRefs, { ...this.r, ref: "heads/autoresearch/", per_page: 100 }),
    );
    return refs
      .map((r) => ({ name: r.ref.replace(/^refs\/heads\//, ""), sha: r.object.sha }))
      .filter((b) => parseBranchName(b.name) !== null);
  }

  async commitMessage(sha: string): Promise<string> {
    const { data } = await step(`read commit ${sha.slice(0, 7)}`, () => this.octokit.rest.git.getCommit({ ...this.r, commit_sha: sha }));
    return data.message;
  }

  async restoreBranch(branch: string, sha: string): Promise<void> {
    ownBranch(branch);
    try {
      await this.octokit.rest.git.createRef({ ...this.r, ref: `refs/heads/${branch}`, sha });
    } catch (err) {
      if (statusOf(err) !== 422) await step(`restore branch ${branch}`, () => Promise.reject(err));
    }
  }
}

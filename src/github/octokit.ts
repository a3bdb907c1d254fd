// The GitHub port implemented with Octokit (the installation-authenticated client Probot
// hands out). Every method is one small, idempotent step of the loop; errors carry the
// HTTP status so reconcile can tell "try again next pass" from "this PR moved".
import type { ProbotOctokit } from "probot";
import { branchName, decodeRecord, LABEL, parseBranchName } from "../ledger.js";
import type { CheckRunSpec, ExperimentPull, GitHubPort, IssueComment, IssueInfo, RepoRef } from "../types.js";

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

export class OctokitGitHub implements GitHubPort {
  readonly botLogin: string | null;

  constructor(
    private readonly octokit: ProbotOctokit,
    readonly repo: RepoRef,
    opts: { botLogin?: string | null } = {},
  ) {
    this.botLogin = opts.botLogin ?? null;
  }

  private get r() {
    return { owner: this.repo.owner, repo: this.repo.repo };
  }

  async getDefaultBranch(): Promise<string> {
    const { data } = await step("read repository", () => this.octokit.rest.repos.get(this.r));
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

  async listExperimentPulls(): Promise<ExperimentPull[]> {
    // The issues listing filters by label server-side and carries body, labels, state and
    // merged_at; only open experiments need the pull itself (head branch and sha), and those
    // are few however long the history grows.
    const issues = await step("list experiment PRs", () =>
      this.octokit.paginate(this.octokit.rest.issues.listForRepo, {
        ...this.r,
        labels: LABEL,
        state: "all",
        per_page: 100,
      }),
    );
    const hasOpen = issues.some((i) => i.pull_request && i.state === "open");
    const open = hasOpen
      ? await step("list open pull requests", () =>
          this.octokit.paginate(this.octokit.rest.pulls.list, { ...this.r, state: "open", per_page: 100 }),
        )
      : [];
    const openByNumber = new Map(open.map((p) => [p.number, p]));
    const out: ExperimentPull[] = [];
    for (const issue of issues) {
      if (!issue.pull_request) continue;
      const record = decodeRecord(issue.body ?? "");
      const p = openByNumber.get(issue.number);
      if (issue.state === "open" && !p) continue; // closed between the two listings: next pass
      out.push({
        number: issue.number,
        state: p ? "open" : "closed",
        merged: Boolean(issue.pull_request.merged_at),
        author: (p?.user ?? issue.user)?.login ?? "",
        // A closed PR's head is not listed; its author is enough (the bot opens PRs only from
        // branches of the repository itself).
        headRepo: p ? (p.head.repo?.full_name ?? "") : null,
        headRef: p?.head.ref ?? (record ? branchName(record.n, record.title) : ""),
        headSha: p?.head.sha ?? record?.headSha ?? "",
        baseRef: p?.base.ref ?? "",
        labels: issue.labels.map((l) => (typeof l === "string" ? l : (l.name ?? ""))),
        title: issue.title,
        body: issue.body ?? "",
        record,
      });
    }
    return out.sort((a, b) => a.number - b.number);
  }

  async commitFiles(branch: string, parentSha: string, files: Record<string, string>, message: string): Promise<string> {
    ownBranch(branch);
    const { data: parent } = await step("read base commit", () =>
      this.octokit.rest.git.getCommit({ ...this.r, commit_sha: parentSha }),
    );
    let treeSha = parent.tree.sha;
    const entries = Object.entries(files);
    if (entries.length > 0) {
      const { data: tree } = await step("create tree", () =>
        this.octokit.rest.git.createTree({
          ...this.r,
          base_tree: parent.tree.sha,
          tree: entries.map(([path, content]) => ({ path, mode: "100644" as const, type: "blob" as const, content })),
        }),
      );
      treeSha = tree.sha;
    }
    const { data: commit } = await step("create commit", () =>
      this.octokit.rest.git.createCommit({ ...this.r, message, tree: treeSha, parents: [parentSha] }),
    );
    try {
      await this.octokit.rest.git.createRef({ ...this.r, ref: `refs/heads/${branch}`, sha: commit.sha });
    } catch (err) {
      // 422: the branch exists (an earlier pass crashed after creating it, or a re-apply):
      // move it; the experiment branch belongs to the bot.
      if (statusOf(err) !== 422) return step(`create branch ${branch}`, () => Promise.reject(err));
      await step(`move branch ${branch}`, () =>
        this.octokit.rest.git.updateRef({ ...this.r, ref: `heads/${branch}`, sha: commit.sha, force: true }),
      );
    }
    return commit.sha;
  }

  async createPull(p: { title: string; head: string; base: string; body: string; labels: string[] }): Promise<number> {
    const { data } = await step("open pull request", () =>
      this.octokit.rest.pulls.create({ ...this.r, title: p.title, head: p.head, base: p.base, body: p.body }),
    );
    if (p.labels.length) await this.setLabels(data.number, p.labels);
    return data.number;
  }

  async updatePull(number: number, p: { title?: string; body?: string; state?: "open" | "closed" }): Promise<void> {
    await step(`update PR #${number}`, () => this.octokit.rest.pulls.update({ ...this.r, pull_number: number, ...p }));
  }

  async setLabels(number: number, labels: string[]): Promise<void> {
    await step(`label PR #${number}`, () =>
      this.octokit.rest.issues.setLabels({ ...this.r, issue_number: number, labels }),
    );
  }

  async ensureLabels(labels: { name: string; color: string; description: string }[]): Promise<void> {
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
  }

  async comment(number: number, body: string): Promise<void> {
    await step(`comment on #${number}`, () =>
      this.octokit.rest.issues.createComment({ ...this.r, issue_number: number, body }),
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

  async deleteBranch(branch: string): Promise<void> {
    ownBranch(branch);
    try {
      await this.octokit.rest.git.deleteRef({ ...this.r, ref: `heads/${branch}` });
    } catch (err) {
      if (statusOf(err) !== 404 && statusOf(err) !== 422) await step(`delete ${branch}`, () => Promise.reject(err));
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
    const narrowed = await this.octokit.request("POST /app/installations/{installation_id}/access_tokens", {
      installation_id: auth.installationId,
      repositories: [this.r.repo],
      permissions: { contents: "read" },
    });
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
    const data = await step(`list issues labelled ${label}`, () =>
      this.octokit.paginate(this.octokit.rest.issues.listForRepo, { ...this.r, labels: label, state: "all", per_page: 100 }),
    );
    return data
      .filter((i) => !i.pull_request)
      .map((i) => ({
        number: i.number,
        author: i.user?.login ?? "",
        title: i.title,
        body: i.body ?? "",
        state: i.state === "open" ? ("open" as const) : ("closed" as const),
        labels: i.labels.map((l) => (typeof l === "string" ? l : (l.name ?? ""))),
      }));
  }

  async createIssue(p: { title: string; body: string; labels: string[] }): Promise<number> {
    const { data } = await step("open an issue", () => this.octokit.rest.issues.create({ ...this.r, ...p }));
    return data.number;
  }

  async updateIssue(number: number, p: { title?: string; body?: string; state?: "open" | "closed"; labels?: string[] }): Promise<void> {
    await step(`update issue #${number}`, () => this.octokit.rest.issues.update({ ...this.r, issue_number: number, ...p }));
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

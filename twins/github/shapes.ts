// Builders of GitHub's JSON representations (REST responses and webhook payload parts). The
// field sets follow GitHub's OpenAPI description and @octokit/webhooks-schemas; the twin's tests
// validate them against both.

import type { CommitInfo, DiffEntry, TreeEntry } from "./git.js";
import type {
  AppRecord,
  CheckRunRecord,
  CheckSuiteRecord,
  CommentRecord,
  InstallationRecord,
  IssueRecord,
  LabelRecord,
  ReactionRecord,
  RepoRecord,
  ReviewCommentRecord,
  Role,
  User,
} from "./state.js";

export type Json = Record<string, unknown>;

export interface Urls {
  /** REST API root, e.g. http://127.0.0.1:1234/api/v3 */
  api: string;
  /** "Web" root used for html_url fields, e.g. http://127.0.0.1:1234 */
  web: string;
}

/** GitHub's timestamp format: ISO 8601 without milliseconds. */
export function iso(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function nodeId(prefix: string, id: number | string): string {
  return `${prefix}_${Buffer.from(String(id)).toString("base64url")}`;
}

const enc = encodeURIComponent;

function encPath(path: string): string {
  return path.split("/").map(enc).join("/");
}

export function userShape(u: User, urls: Urls): Json {
  const api = `${urls.api}/users/${enc(u.login)}`;
  return {
    login: u.login,
    id: u.id,
    node_id: nodeId(u.type === "Bot" ? "BOT" : u.type === "Organization" ? "O" : "U", u.id),
    avatar_url: `${urls.web}/avatars/u/${u.id}?v=4`,
    gravatar_id: "",
    url: api,
    html_url: u.type === "Bot" ? `${urls.web}/apps/${enc(u.login.replace(/\[bot\]$/, ""))}` : `${urls.web}/${enc(u.login)}`,
    followers_url: `${api}/followers`,
    following_url: `${api}/following{/other_user}`,
    gists_url: `${api}/gists{/gist_id}`,
    starred_url: `${api}/starred{/owner}{/repo}`,
    subscriptions_url: `${api}/subscriptions`,
    organizations_url: `${api}/orgs`,
    repos_url: `${api}/repos`,
    events_url: `${api}/events{/privacy}`,
    received_events_url: `${api}/received_events`,
    type: u.type,
    site_admin: false,
  };
}

export function repoApiUrl(repo: RepoRecord, urls: Urls): string {
  return `${urls.api}/repos/${enc(repo.owner.login)}/${enc(repo.name)}`;
}

export function repoWebUrl(repo: RepoRecord, urls: Urls): string {
  return `${urls.web}/${enc(repo.owner.login)}/${enc(repo.name)}`;
}

export interface RepoShapeOptions {
  /** Push payloads carry created_at / pushed_at as Unix timestamps. */
  numericDates?: boolean;
  openIssues?: number;
}

/** `repository` (REST) and the webhook `repository` definition. */
export function repoShape(repo: RepoRecord, urls: Urls, opts: RepoShapeOptions = {}): Json {
  const a = repoApiUrl(repo, urls);
  const w = repoWebUrl(repo, urls);
  const host = new URL(urls.web).host;
  const full = `${repo.owner.login}/${repo.name}`;
  const unix = (s: string) => Math.floor(Date.parse(s) / 1000);
  const open = opts.openIssues ?? 0;
  return {
    id: repo.id,
    node_id: nodeId("R", repo.id),
    name: repo.name,
    full_name: full,
    private: repo.private,
    owner: userShape(repo.owner, urls),
    html_url: w,
    description: repo.description,
    fork: false,
    url: a,
    forks_url: `${a}/forks`,
    keys_url: `${a}/keys{/key_id}`,
    collaborators_url: `${a}/collaborators{/collaborator}`,
    teams_url: `${a}/teams`,
    hooks_url: `${a}/hooks`,
    issue_events_url: `${a}/issues/events{/number}`,
    events_url: `${a}/events`,
    assignees_url: `${a}/assignees{/user}`,
    branches_url: `${a}/branches{/branch}`,
    tags_url: `${a}/tags`,
    blobs_url: `${a}/git/blobs{/sha}`,
    git_tags_url: `${a}/git/tags{/sha}`,
    git_refs_url: `${a}/git/refs{/sha}`,
    trees_url: `${a}/git/trees{/sha}`,
    statuses_url: `${a}/statuses/{sha}`,
    languages_url: `${a}/languages`,
    stargazers_url: `${a}/stargazers`,
    contributors_url: `${a}/contributors`,
    subscribers_url: `${a}/subscribers`,
    subscription_url: `${a}/subscription`,
    commits_url: `${a}/commits{/sha}`,
    git_commits_url: `${a}/git/commits{/sha}`,
    comments_url: `${a}/comments{/number}`,
    issue_comment_url: `${a}/issues/comments{/number}`,
    contents_url: `${a}/contents/{+path}`,
    compare_url: `${a}/compare/{base}...{head}`,
    merges_url: `${a}/merges`,
    archive_url: `${a}/{archive_format}{/ref}`,
    downloads_url: `${a}/downloads`,
    issues_url: `${a}/issues{/number}`,
    pulls_url: `${a}/pulls{/number}`,
    milestones_url: `${a}/milestones{/number}`,
    notifications_url: `${a}/notifications{?since,all,participating}`,
    labels_url: `${a}/labels{/name}`,
    releases_url: `${a}/releases{/id}`,
    deployments_url: `${a}/deployments`,
    created_at: opts.numericDates ? unix(repo.createdAt) : repo.createdAt,
    updated_at: repo.updatedAt,
    pushed_at: opts.numericDates ? unix(repo.pushedAt) : repo.pushedAt,
    git_url: `git://${host}/${full}.git`,
    ssh_url: `git@${host}:${full}.git`,
    clone_url: `${w}.git`,
    svn_url: w,
    homepage: null,
    size: 0,
    stargazers_count: 0,
    watchers_count: 0,
    language: null,
    has_issues: true,
    has_projects: false,
    has_downloads: true,
    has_wiki: false,
    has_pages: false,
    has_discussions: false,
    forks_count: 0,
    mirror_url: null,
    archived: false,
    disabled: false,
    open_issues_count: open,
    license: null,
    allow_forking: true,
    is_template: false,
    web_commit_signoff_required: false,
    topics: [],
    visibility: repo.private ? "private" : "public",
    forks: 0,
    open_issues: open,
    watchers: 0,
    default_branch: repo.defaultBranch,
    custom_properties: {},
  };
}

export function rolePermissions(role: Role): Json {
  const rank = ["none", "read", "triage", "write", "maintain", "admin"].indexOf(role);
  return { admin: rank >= 5, maintain: rank >= 4, push: rank >= 3, triage: rank >= 2, pull: rank >= 1 };
}

/** `full-repository` (GET /repos/{owner}/{repo}). */
export function fullRepoShape(repo: RepoRecord, urls: Urls, role: Role, openIssues: number): Json {
  const canPush = ["write", "maintain", "admin"].includes(role);
  return {
    ...repoShape(repo, urls, { openIssues }),
    // An organization's repository names it (GitHub leaves the key out for a user's).
    ...(repo.owner.type === "Organization" ? { organization: userShape(repo.owner, urls) } : {}),
    permissions: rolePermissions(role),
    allow_squash_merge: true,
    allow_merge_commit: true,
    allow_rebase_merge: true,
    allow_auto_merge: false,
    delete_branch_on_merge: false,
    allow_update_branch: false,
    use_squash_pr_title_as_default: false,
    squash_merge_commit_title: "COMMIT_OR_PR_TITLE",
    squash_merge_commit_message: "COMMIT_MESSAGES",
    merge_commit_title: "MERGE_MESSAGE",
    merge_commit_message: "PR_TITLE",
    // A string for those who may push (empty: the token is only handed out for cloning).
    temp_clone_token: repo.private || canPush ? "" : null,
    network_count: 0,
    subscribers_count: 0,
  };
}

/** `integration` (REST) and the webhook `app` definition. */
export function appShape(app: AppRecord, urls: Urls): Json {
  return {
    id: app.id,
    slug: app.slug,
    node_id: nodeId("A", app.id),
    owner: userShape(app.owner, urls),
    name: app.name,
    description: `${app.name} (GitHub twin)`,
    external_url: `${urls.web}/apps/${enc(app.slug)}/home`,
    html_url: `${urls.web}/apps/${enc(app.slug)}`,
    created_at: app.createdAt,
    updated_at: app.createdAt,
    permissions: { ...app.permissions },
    events: [...app.events],
  };
}

export function installationShape(inst: InstallationRecord, app: AppRecord, urls: Urls): Json {
  return {
    id: inst.id,
    account: userShape(inst.account, urls),
    repository_selection: inst.repositorySelection,
    access_tokens_url: `${urls.api}/app/installations/${inst.id}/access_tokens`,
    repositories_url: `${urls.api}/installation/repositories`,
    html_url: `${urls.web}/settings/installations/${inst.id}`,
    app_id: app.id,
    app_slug: app.slug,
    target_id: inst.account.id,
    target_type: inst.account.type === "Organization" ? "Organization" : "User",
    permissions: { ...inst.permissions },
    events: [...inst.events],
    created_at: inst.createdAt,
    updated_at: inst.createdAt,
    single_file_name: null,
    has_multiple_single_files: false,
    single_file_paths: [],
    suspended_by: null,
    suspended_at: null,
  };
}

export function labelShape(repo: RepoRecord, label: LabelRecord, urls: Urls): Json {
  return {
    id: label.id,
    node_id: nodeId("LA", label.id),
    url: `${repoApiUrl(repo, urls)}/labels/${enc(label.name)}`,
    name: label.name,
    color: label.color,
    default: label.isDefault,
    description: label.description,
  };
}

export function authorAssociation(repo: RepoRecord, user: User): string {
  if (user.id === repo.owner.id) return "OWNER";
  const role = repo.roles.get(user.login);
  if (role && role !== "none" && role !== "read") return "COLLABORATOR";
  return "NONE";
}

export function reactionRollup(url: string, reactions: ReactionRecord[]): Json {
  const count = (c: string) => reactions.filter((r) => r.content === c).length;
  return {
    url,
    total_count: reactions.length,
    "+1": count("+1"),
    "-1": count("-1"),
    laugh: count("laugh"),
    hooray: count("hooray"),
    confused: count("confused"),
    heart: count("heart"),
    rocket: count("rocket"),
    eyes: count("eyes"),
  };
}

function issueLabels(repo: RepoRecord, issue: IssueRecord, urls: Urls): Json[] {
  const out: Json[] = [];
  for (const name of issue.labels) {
    const label = repo.labels.find((l) => l.name.toLowerCase() === name.toLowerCase());
    if (label) out.push(labelShape(repo, label, urls));
  }
  return out;
}

/**
 * `issue` (REST) and the webhook `issue` definition; pull requests carry a `pull_request` key.
 * `single`: the answer about one issue (read, opened, changed), which names who closed it; GitHub
 * leaves `closed_by` out of listings.
 */
export function issueShape(repo: RepoRecord, issue: IssueRecord, urls: Urls, apps: Map<number, AppRecord>, single = false): Json {
  const a = `${repoApiUrl(repo, urls)}/issues/${issue.number}`;
  const w = `${repoWebUrl(repo, urls)}/${issue.pull ? "pull" : "issues"}/${issue.number}`;
  const comments = repo.comments.filter((c) => c.issueNumber === issue.number).length;
  const app = issue.viaApp !== null ? apps.get(issue.viaApp) : undefined;
  const shape: Json = {
    url: a,
    repository_url: repoApiUrl(repo, urls),
    labels_url: `${a}/labels{/name}`,
    comments_url: `${a}/comments`,
    events_url: `${a}/events`,
    html_url: w,
    id: issue.id,
    node_id: nodeId(issue.pull ? "PR" : "I", issue.id),
    number: issue.number,
    title: issue.title,
    user: userShape(issue.user, urls),
    labels: issueLabels(repo, issue, urls),
    state: issue.state,
    locked: issue.locked,
    assignee: issue.assignees[0] ? userShape(issue.assignees[0], urls) : null,
    assignees: issue.assignees.map((u) => userShape(u, urls)),
    milestone: null,
    comments,
    created_at: issue.createdAt,
    updated_at: issue.updatedAt,
    closed_at: issue.closedAt,
    author_association: authorAssociation(repo, issue.user),
    active_lock_reason: null,
    body: issue.body,
    reactions: reactionRollup(`${a}/reactions`, []),
    timeline_url: `${a}/timeline`,
    performed_via_github_app: app ? appShape(app, urls) : null,
    state_reason: issue.stateReason,
  };
  if (single) shape.closed_by = issue.closedBy ? userShape(issue.closedBy, urls) : null;
  if (issue.pull) {
    shape.draft = issue.pull.draft;
    shape.pull_request = {
      url: `${repoApiUrl(repo, urls)}/pulls/${issue.number}`,
      html_url: w,
      diff_url: `${w}.diff`,
      patch_url: `${w}.patch`,
      merged_at: issue.pull.mergedAt,
    };
  }
  return shape;
}

export interface PullStats {
  mergeable: boolean | null;
  rebaseable: boolean | null;
  mergeableState: string;
  commits: number;
  additions: number;
  deletions: number;
  changedFiles: number;
}

function pullRefShape(repo: RepoRecord, ref: string, sha: string, urls: Urls): Json {
  return {
    label: `${repo.owner.login}:${ref}`,
    ref,
    sha,
    user: userShape(repo.owner, urls),
    repo: repoShape(repo, urls),
  };
}

/** `pull-request-simple` (list) — the fields every pull request representation carries. */
export function pullSimpleShape(repo: RepoRecord, issue: IssueRecord, urls: Urls): Json {
  const pull = issue.pull;
  if (!pull) throw new Error(`#${issue.number} is not a pull request`);
  const a = `${repoApiUrl(repo, urls)}/pulls/${issue.number}`;
  const ia = `${repoApiUrl(repo, urls)}/issues/${issue.number}`;
  const w = `${repoWebUrl(repo, urls)}/pull/${issue.number}`;
  const statuses = `${repoApiUrl(repo, urls)}/statuses/${pull.headSha}`;
  return {
    url: a,
    id: issue.prId,
    node_id: nodeId("PR", issue.prId),
    html_url: w,
    diff_url: `${w}.diff`,
    patch_url: `${w}.patch`,
    issue_url: ia,
    number: issue.number,
    state: issue.state,
    locked: issue.locked,
    title: issue.title,
    user: userShape(issue.user, urls),
    body: issue.body,
    created_at: issue.createdAt,
    updated_at: issue.updatedAt,
    closed_at: issue.closedAt,
    merged_at: pull.mergedAt,
    merge_commit_sha: pull.mergeCommitSha,
    assignee: issue.assignees[0] ? userShape(issue.assignees[0], urls) : null,
    assignees: issue.assignees.map((u) => userShape(u, urls)),
    requested_reviewers: [],
    requested_teams: [],
    labels: issueLabels(repo, issue, urls),
    milestone: null,
    draft: pull.draft,
    commits_url: `${a}/commits`,
    review_comments_url: `${a}/comments`,
    review_comment_url: `${repoApiUrl(repo, urls)}/pulls/comments{/number}`,
    comments_url: `${ia}/comments`,
    statuses_url: statuses,
    head: pullRefShape(repo, pull.headRef, pull.headSha, urls),
    base: pullRefShape(repo, pull.baseRef, pull.baseSha, urls),
    _links: {
      self: { href: a },
      html: { href: w },
      issue: { href: ia },
      comments: { href: `${ia}/comments` },
      review_comments: { href: `${a}/comments` },
      review_comment: { href: `${repoApiUrl(repo, urls)}/pulls/comments{/number}` },
      commits: { href: `${a}/commits` },
      statuses: { href: statuses },
    },
    author_association: authorAssociation(repo, issue.user),
    auto_merge: null,
    active_lock_reason: null,
  };
}

/** `pull-request` (GET/POST/PATCH responses) and the webhook `pull-request` definition. */
export function pullShape(repo: RepoRecord, issue: IssueRecord, urls: Urls, stats: PullStats): Json {
  const pull = issue.pull;
  if (!pull) throw new Error(`#${issue.number} is not a pull request`);
  return {
    ...pullSimpleShape(repo, issue, urls),
    merged: pull.merged,
    mergeable: stats.mergeable,
    rebaseable: stats.rebaseable,
    mergeable_state: stats.mergeableState,
    merged_by: pull.mergedBy ? userShape(pull.mergedBy, urls) : null,
    comments: repo.comments.filter((c) => c.issueNumber === issue.number).length,
    review_comments: 0,
    maintainer_can_modify: pull.maintainerCanModify,
    commits: stats.commits,
    additions: stats.additions,
    deletions: stats.deletions,
    changed_files: stats.changedFiles,
  };
}

export function commentShape(repo: RepoRecord, comment: CommentRecord, urls: Urls, apps: Map<number, AppRecord>): Json {
  const issue = repo.issues.get(comment.issueNumber);
  const a = `${repoApiUrl(repo, urls)}/issues/comments/${comment.id}`;
  const app = comment.viaApp !== null ? apps.get(comment.viaApp) : undefined;
  return {
    url: a,
    html_url: `${repoWebUrl(repo, urls)}/${issue?.pull ? "pull" : "issues"}/${comment.issueNumber}#issuecomment-${comment.id}`,
    issue_url: `${repoApiUrl(repo, urls)}/issues/${comment.issueNumber}`,
    id: comment.id,
    node_id: nodeId("IC", comment.id),
    user: userShape(comment.user, urls),
    created_at: comment.createdAt,
    updated_at: comment.updatedAt,
    author_association: authorAssociation(repo, comment.user),
    body: comment.body,
    reactions: reactionRollup(`${a}/reactions`, comment.reactions),
    performed_via_github_app: app ? appShape(app, urls) : null,
  };
}

export function reviewCommentShape(repo: RepoRecord, c: ReviewCommentRecord, urls: Urls): Json {
  const api = `${repoApiUrl(repo, urls)}/pulls/comments/${c.id}`;
  const html = `${repoWebUrl(repo, urls)}/pull/${c.pullNumber}#discussion_r${c.id}`;
  const pull = `${repoApiUrl(repo, urls)}/pulls/${c.pullNumber}`;
  return {
    url: api,
    pull_request_review_id: c.id,
    id: c.id,
    node_id: nodeId("PRRC", c.id),
    diff_hunk: `@@ -${c.line},1 +${c.line},1 @@`,
    path: c.path,
    position: c.line,
    original_position: c.line,
    commit_id: c.commitId,
    original_commit_id: c.commitId,
    user: userShape(c.user, urls),
    body: c.body,
    created_at: c.createdAt,
    updated_at: c.updatedAt,
    html_url: html,
    pull_request_url: pull,
    author_association: authorAssociation(repo, c.user),
    _links: { self: { href: api }, html: { href: html }, pull_request: { href: pull } },
    start_line: null,
    original_start_line: null,
    start_side: null,
    line: c.line,
    original_line: c.line,
    side: "RIGHT",
    subject_type: "line",
    reactions: reactionRollup(`${api}/reactions`, []),
  };
}

export function reactionShape(reaction: ReactionRecord, urls: Urls): Json {
  return {
    id: reaction.id,
    node_id: nodeId("REA", reaction.id),
    user: userShape(reaction.user, urls),
    content: reaction.content,
    created_at: reaction.createdAt,
  };
}

function pullMinimal(repo: RepoRecord, issue: IssueRecord, urls: Urls): Json {
  const pull = issue.pull;
  const mini = { id: repo.id, url: repoApiUrl(repo, urls), name: repo.name };
  return {
    url: `${repoApiUrl(repo, urls)}/pulls/${issue.number}`,
    id: issue.prId,
    number: issue.number,
    head: { ref: pull?.headRef ?? "", sha: pull?.headSha ?? "", repo: mini },
    base: { ref: pull?.baseRef ?? "", sha: pull?.baseSha ?? "", repo: mini },
  };
}

/** Open pull requests whose head is `sha` (what check runs and suites list). */
export function pullsForSha(repo: RepoRecord, sha: string, urls: Urls): Json[] {
  return [...repo.issues.values()]
    .filter((i) => i.pull && i.state === "open" && i.pull.headSha === sha)
    .map((i) => pullMinimal(repo, i, urls));
}

const CONCLUSION_ORDER = ["action_required", "cancelled", "timed_out", "failure", "neutral", "success", "skipped", "stale"];

export function checkSuiteShape(repo: RepoRecord, suite: CheckSuiteRecord, runs: CheckRunRecord[], app: AppRecord, urls: Urls): Json {
  const mine = runs.filter((r) => r.suiteId === suite.id);
  const done = mine.length > 0 && mine.every((r) => r.status === "completed");
  let conclusion: string | null = null;
  if (done) {
    conclusion = "success";
    for (const c of CONCLUSION_ORDER) {
      if (mine.some((r) => r.conclusion === c)) {
        conclusion = c;
        break;
      }
    }
  }
  return {
    id: suite.id,
    node_id: nodeId("CS", suite.id),
    head_branch: suite.headBranch,
    head_sha: suite.headSha,
    status: done ? "completed" : mine.some((r) => r.status === "in_progress") ? "in_progress" : "queued",
    conclusion,
    url: `${repoApiUrl(repo, urls)}/check-suites/${suite.id}`,
    before: null,
    after: suite.headSha,
    pull_requests: pullsForSha(repo, suite.headSha, urls),
    app: appShape(app, urls),
    created_at: suite.createdAt,
    updated_at: suite.updatedAt,
  };
}

/** `check-run` (REST); with `suite` given, the webhook form whose check_suite is complete. */
export function checkRunShape(repo: RepoRecord, run: CheckRunRecord, app: AppRecord, urls: Urls, suite?: Json): Json {
  const a = `${repoApiUrl(repo, urls)}/check-runs/${run.id}`;
  const html = `${repoWebUrl(repo, urls)}/runs/${run.id}`;
  return {
    id: run.id,
    name: run.name,
    node_id: nodeId("CR", run.id),
    head_sha: run.headSha,
    external_id: run.externalId,
    url: a,
    html_url: html,
    details_url: run.detailsUrl ?? `${urls.web}/apps/${enc(app.slug)}/home`,
    status: run.status,
    conclusion: run.conclusion,
    started_at: run.startedAt,
    completed_at: run.completedAt,
    output: {
      title: run.output.title,
      summary: run.output.summary,
      text: run.output.text,
      annotations_count: run.output.annotationsCount,
      annotations_url: `${a}/annotations`,
    },
    check_suite: suite ?? { id: run.suiteId },
    app: appShape(app, urls),
    pull_requests: pullsForSha(repo, run.headSha, urls),
  };
}

const UNSIGNED = { verified: false, reason: "unsigned", signature: null, payload: null, verified_at: null };

/** `git-commit` (Git database API). */
export function gitCommitShape(repo: RepoRecord, c: CommitInfo, urls: Urls): Json {
  const a = repoApiUrl(repo, urls);
  return {
    sha: c.sha,
    node_id: nodeId("C", c.sha),
    url: `${a}/git/commits/${c.sha}`,
    html_url: `${repoWebUrl(repo, urls)}/commit/${c.sha}`,
    author: { name: c.author.name, email: c.author.email, date: c.author.date },
    committer: { name: c.committer.name, email: c.committer.email, date: c.committer.date },
    tree: { sha: c.tree, url: `${a}/git/trees/${c.tree}` },
    message: c.message.replace(/\n$/, ""),
    parents: c.parents.map((p) => ({ sha: p, url: `${a}/git/commits/${p}`, html_url: `${repoWebUrl(repo, urls)}/commit/${p}` })),
    verification: { ...UNSIGNED },
  };
}

export function diffEntryShape(repo: RepoRecord, ref: string, d: DiffEntry, urls: Urls): Json {
  const sha = d.newSha ?? d.oldSha;
  const shape: Json = {
    sha,
    filename: d.path,
    status: d.status,
    additions: d.additions,
    deletions: d.deletions,
    changes: d.additions + d.deletions,
    blob_url: `${repoWebUrl(repo, urls)}/blob/${ref}/${encPath(d.path)}`,
    raw_url: `${repoWebUrl(repo, urls)}/raw/${ref}/${encPath(d.path)}`,
    contents_url: `${repoApiUrl(repo, urls)}/contents/${encPath(d.path)}?ref=${ref}`,
  };
  if (d.patch !== undefined) shape.patch = d.patch;
  return shape;
}

/** `commit` (GET /repos/{o}/{r}/commits/{ref}); `userFor` maps a git email to a GitHub user. */
export function commitShape(
  repo: RepoRecord,
  c: CommitInfo,
  urls: Urls,
  userFor: (email: string) => User | undefined,
  files?: DiffEntry[],
): Json {
  const a = repoApiUrl(repo, urls);
  const author = userFor(c.author.email);
  const committer = userFor(c.committer.email);
  const shape: Json = {
    url: `${a}/commits/${c.sha}`,
    sha: c.sha,
    node_id: nodeId("C", c.sha),
    html_url: `${repoWebUrl(repo, urls)}/commit/${c.sha}`,
    comments_url: `${a}/commits/${c.sha}/comments`,
    commit: {
      url: `${a}/git/commits/${c.sha}`,
      author: { name: c.author.name, email: c.author.email, date: c.author.date },
      committer: { name: c.committer.name, email: c.committer.email, date: c.committer.date },
      message: c.message.replace(/\n$/, ""),
      comment_count: 0,
      tree: { sha: c.tree, url: `${a}/git/trees/${c.tree}` },
      verification: { ...UNSIGNED },
    },
    author: author ? userShape(author, urls) : null,
    committer: committer ? userShape(committer, urls) : null,
    parents: c.parents.map((p) => ({ sha: p, url: `${a}/commits/${p}`, html_url: `${repoWebUrl(repo, urls)}/commit/${p}` })),
  };
  if (files) {
    const additions = files.reduce((n, f) => n + f.additions, 0);
    const deletions = files.reduce((n, f) => n + f.deletions, 0);
    shape.stats = { additions, deletions, total: additions + deletions };
    shape.files = files.map((f) => diffEntryShape(repo, c.sha, f, urls));
  }
  return shape;
}

export function refShape(repo: RepoRecord, ref: string, sha: string, type: string, urls: Urls): Json {
  const a = repoApiUrl(repo, urls);
  return {
    ref,
    node_id: nodeId("REF", `${repo.id}:${ref}`),
    url: `${a}/git/${ref}`,
    object: { sha, type, url: `${a}/git/${type === "tag" ? "tags" : "commits"}/${sha}` },
  };
}

export function treeShape(repo: RepoRecord, sha: string, entries: TreeEntry[], urls: Urls): Json {
  const a = repoApiUrl(repo, urls);
  return {
    sha,
    url: `${a}/git/trees/${sha}`,
    tree: entries.map((e) => {
      const item: Json = { path: e.path, mode: e.mode, type: e.type, sha: e.sha };
      if (e.type === "blob") {
        item.size = e.size ?? 0;
        item.url = `${a}/git/blobs/${e.sha}`;
      } else if (e.type === "tree") {
        item.url = `${a}/git/trees/${e.sha}`;
      }
      return item;
    }),
    truncated: false,
  };
}

/** One item of a contents listing (also the base of the single-file response). */
export function contentEntryShape(repo: RepoRecord, ref: string, e: TreeEntry, urls: Urls): Json {
  const a = repoApiUrl(repo, urls);
  const w = repoWebUrl(repo, urls);
  const type = e.type === "tree" ? "dir" : e.type === "commit" ? "submodule" : e.mode === "120000" ? "symlink" : "file";
  const self = `${a}/contents/${encPath(e.path)}?ref=${enc(ref)}`;
  const git = type === "dir" ? `${a}/git/trees/${e.sha}` : type === "submodule" ? null : `${a}/git/blobs/${e.sha}`;
  const html = type === "submodule" ? null : `${w}/${type === "dir" ? "tree" : "blob"}/${enc(ref)}/${encPath(e.path)}`;
  return {
    type,
    size: e.size ?? 0,
    name: e.path.split("/").pop() ?? e.path,
    path: e.path,
    sha: e.sha,
    url: self,
    git_url: git,
    html_url: html,
    download_url: type === "file" || type === "symlink" ? `${urls.web}/_raw/${enc(repo.owner.login)}/${enc(repo.name)}/${enc(ref)}/${encPath(e.path)}` : null,
    _links: { self, git, html },
  };
}

/** GitHub wraps base64 content at 60 characters per line. */
export function base64Wrapped(data: Buffer): string {
  const b64 = data.toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 60) lines.push(b64.slice(i, i + 60));
  return lines.length ? `${lines.join("\n")}\n` : "";
}

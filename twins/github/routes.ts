// REST handlers of the twin: the subset of GitHub's API the bot uses, with GitHub's status codes,
// error bodies and pagination.

import type { IncomingHttpHeaders } from "node:http";
import { newToken } from "./auth.js";
import { roleAtLeast, type Actor, type CheckRunInput, type TwinCore } from "./core.js";
import { ZERO_SHA, type TreeChange } from "./git.js";
import { HttpError, missingField, notFound, paginate, validationFailed, type ErrorDetail, type Reply, type Router } from "./http.js";
import {
  base64Wrapped,
  commitShape,
  contentEntryShape,
  diffEntryShape,
  fullRepoShape,
  gitCommitShape,
  installationShape,
  labelShape,
  pullSimpleShape,
  reactionShape,
  refShape,
  repoApiUrl,
  repoShape,
  repoWebUrl,
  treeShape,
  userShape,
  type Json,
} from "./shapes.js";
import type {
  AppRecord,
  CheckRunAction,
  CheckRunRecord,
  InstallationRecord,
  IssueRecord,
  Permissions,
  ReactionContent,
  RepoRecord,
  Role,
  TokenRecord,
  User,
} from "./state.js";

export type AuthInfo =
  | { kind: "anonymous" }
  | { kind: "app"; app: AppRecord }
  | { kind: "installation"; app: AppRecord; installation: InstallationRecord; token: TokenRecord }
  | { kind: "token"; user: User };

export interface RequestCtx {
  core: TwinCore;
  url: URL;
  query: URLSearchParams;
  body: unknown;
  auth: AuthInfo;
  headers: IncomingHttpHeaders;
  /** Archive tokens handed out in tarball redirects: token → { repo id, expiry }. */
  archiveTokens: Map<string, { repoId: number; expiresAt: number }>;
}

type P = Record<string, string>;

const INTEGRATION_FORBIDDEN = "Resource not accessible by integration";
const REACTIONS: ReactionContent[] = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"];

// ---- helpers -----------------------------------------------------------------------------------

function json(status: number, body: unknown, headers?: Record<string, string>): Reply {
  return { status, body, headers };
}

const MEDIA_TYPE = /application\/vnd\.github(?:\.v3)?\.(raw|diff|patch|object|html|text|full)\b/;

/** The format asked for in `Accept: application/vnd.github[.v3].<format>` (raw, diff, patch, ...). */
function mediaFormat(ctx: RequestCtx): string | null {
  return MEDIA_TYPE.exec(String(ctx.headers.accept ?? ""))?.[1] ?? null;
}

/** The content type of a custom media type's answer: the media type as asked for (GitHub's contents API). */
function mediaContentType(ctx: RequestCtx): string {
  return `${MEDIA_TYPE.exec(String(ctx.headers.accept ?? ""))?.[0] ?? "text/plain"}; charset=utf-8`;
}

function text(body: string | Buffer, contentType = "text/plain; charset=utf-8"): Reply {
  return { status: 200, raw: Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8"), headers: { "content-type": contentType } };
}

function obj(body: unknown): Record<string, unknown> {
  return body && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}

function invalid(resource: string, field: string): HttpError {
  return validationFailed([{ resource, field, code: "invalid" }]);
}

function reqString(b: Record<string, unknown>, key: string, resource: string): string {
  const v = b[key];
  if (v === undefined || v === null || v === "") throw missingField(resource, key);
  if (typeof v !== "string") throw invalid(resource, key);
  return v;
}

function optString(b: Record<string, unknown>, key: string, resource: string): string | undefined {
  const v = b[key];
  if (v === undefined) return undefined;
  if (typeof v !== "string") throw invalid(resource, key);
  return v;
}

function optNullableString(b: Record<string, unknown>, key: string, resource: string): string | null | undefined {
  return b[key] === null ? null : optString(b, key, resource);
}

function optBool(b: Record<string, unknown>, key: string, resource: string): boolean | undefined {
  const v = b[key];
  if (v === undefined) return undefined;
  if (typeof v !== "boolean") throw invalid(resource, key);
  return v;
}

function num(s: string | undefined): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0) throw notFound();
  return n;
}

export function permSatisfies(perms: Permissions, category: string, level: "read" | "write"): boolean {
  const have = perms[category];
  if (!have) return false;
  return level === "read" || have === "write" || have === "admin";
}

/** The acting user of an authenticated request (an app acts through its installation's bot). */
export function actorOf(auth: AuthInfo): Actor {
  if (auth.kind === "installation") return { user: auth.app.bot, app: auth.app };
  if (auth.kind === "token") return { user: auth.user, app: null };
  if (auth.kind === "app") throw new HttpError(403, INTEGRATION_FORBIDDEN);
  throw new HttpError(401, "Requires authentication");
}

function roleOfAuth(core: TwinCore, repo: RepoRecord, auth: AuthInfo): Role {
  if (auth.kind === "installation") {
    const covered = (auth.token.repoIds ?? new Set(core.reposOf(auth.installation).map((r) => r.id))).has(repo.id);
    if (!covered) return repo.private ? "none" : "read";
    return permSatisfies(auth.token.permissions, "contents", "write") ? "write" : "read";
  }
  if (auth.kind === "token") return core.roleOf(repo, auth.user);
  return repo.private ? "none" : "read";
}

/**
 * Resolves {owner}/{repo} and checks the caller may do this: `categories` are the app permissions
 * any of which grants the operation (e.g. issues or pull_requests for labels).
 */
function access(ctx: RequestCtx, p: P, categories: string[], level: "read" | "write"): RepoRecord {
  const repo = ctx.core.repo(p.owner ?? "", p.repo ?? "");
  if (!repo) throw notFound();
  const auth = ctx.auth;
  if (auth.kind === "anonymous") {
    if (repo.private) throw notFound();
    if (level === "write") throw new HttpError(401, "Requires authentication");
    return repo;
  }
  if (auth.kind === "app") throw new HttpError(403, INTEGRATION_FORBIDDEN);
  if (auth.kind === "token") {
    const role = ctx.core.roleOf(repo, auth.user);
    if (role === "none") throw notFound();
    if (level === "write" && !roleAtLeast(role, "triage")) throw new HttpError(403, "Must have push access to repository");
    return repo;
  }
  const repoIds = auth.token.repoIds ?? new Set(ctx.core.reposOf(auth.installation).map((r) => r.id));
  if (!repoIds.has(repo.id)) {
    if (repo.private) throw notFound();
    if (level === "write") throw new HttpError(403, INTEGRATION_FORBIDDEN);
    return repo;
  }
  if (!categories.some((c) => permSatisfies(auth.token.permissions, c, level))) throw new HttpError(403, INTEGRATION_FORBIDDEN);
  return repo;
}

function issueOf(repo: RepoRecord, n: string | undefined): IssueRecord {
  const issue = repo.issues.get(num(n));
  if (!issue) throw notFound();
  return issue;
}

function pullOf(repo: RepoRecord, n: string | undefined): IssueRecord {
  const issue = issueOf(repo, n);
  if (!issue.pull) throw notFound();
  return issue;
}

async function commitOrThrow(repo: RepoRecord, ref: string, status: 404 | 422 = 422): Promise<string> {
  const sha = await repo.git.resolveCommit(ref);
  if (!sha) throw status === 404 ? new HttpError(404, `No commit found for the ref ${ref}`) : new HttpError(422, `No commit found for SHA: ${ref}`);
  return sha;
}

function sortAndDirection<T>(items: T[], query: URLSearchParams, keys: Record<string, (t: T) => number | string>, defaultSort: string): T[] {
  const sort = query.get("sort") ?? defaultSort;
  const keyFn = keys[sort] ?? keys[defaultSort];
  if (!keyFn) return items;
  const direction = query.get("direction") ?? (sort === defaultSort ? "desc" : "asc");
  const sorted = [...items].sort((a, b) => {
    const x = keyFn(a);
    const y = keyFn(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  return direction === "desc" ? sorted.reverse() : sorted;
}

function labelNames(body: unknown): string[] {
  const raw = Array.isArray(body) ? body : obj(body).labels;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw invalid("Label", "labels");
  return raw.map((l) => {
    if (typeof l === "string") return l;
    const name = obj(l).name;
    if (typeof name !== "string") throw invalid("Label", "name");
    return name;
  });
}

function repoPermissionsFor(ctx: RequestCtx, repo: RepoRecord): Role {
  return roleOfAuth(ctx.core, repo, ctx.auth);
}

// ---- routes ------------------------------------------------------------------------------------

export function registerRoutes(r: Router<RequestCtx>): void {
  registerApps(r);
  registerRepoAndGit(r);
  registerPulls(r);
  registerIssues(r);
  registerChecks(r);
  r.on("GET", "/rate_limit", () => {
    const reset = Math.floor(Date.now() / 1000) + 3600;
    const core = { limit: 5000, used: 0, remaining: 5000, reset };
    return json(200, { resources: { core, search: { ...core, limit: 30, remaining: 30 }, graphql: core }, rate: core });
  });
}

function requireApp(ctx: RequestCtx): AppRecord {
  if (ctx.auth.kind !== "app") throw new HttpError(401, "A JSON web token could not be decoded");
  return ctx.auth.app;
}

function registerApps(r: Router<RequestCtx>): void {
  r.on("GET", "/app", (ctx) => {
    const app = requireApp(ctx);
    const count = [...ctx.core.installations.values()].filter((i) => i.appId === app.id).length;
    return json(200, { ...ctx.core.appShape(app), client_id: app.clientId, installations_count: count });
  });

  r.on("GET", "/app/installations", (ctx) => {
    const app = requireApp(ctx);
    // GitHub's description types this list's `account` as allOf(simple-user, enterprise), so the
    // enterprise fields it requires (name, slug, created_at, updated_at) are filled in too.
    const all = [...ctx.core.installations.values()]
      .filter((i) => i.appId === app.id)
      .map((i) => {
        const shape = installationShape(i, app, ctx.core.urls);
        const since = i.account.id === app.owner.id ? app.createdAt : i.createdAt;
        shape.account = { ...(shape.account as Json), name: i.account.name ?? i.account.login, slug: i.account.login.toLowerCase(), created_at: since, updated_at: since };
        return shape;
      });
    const page = paginate(all, ctx.query, ctx.url);
    return json(200, page.items, page.headers);
  });

  r.on("GET", "/app/installations/{installation_id}", (ctx, p) => {
    const app = requireApp(ctx);
    const inst = ctx.core.installations.get(num(p.installation_id));
    if (!inst || inst.appId !== app.id) throw notFound();
    return json(200, installationShape(inst, app, ctx.core.urls));
  });

  r.on("POST", "/app/installations/{installation_id}/access_tokens", (ctx, p) => {
    const app = requireApp(ctx);
    const inst = ctx.core.installations.get(num(p.installation_id));
    if (!inst || inst.appId !== app.id) throw notFound();
    const b = obj(ctx.body);
    const available = ctx.core.reposOf(inst);
    let repoIds: Set<number> | null = null;
    if (Array.isArray(b.repositories) || Array.isArray(b.repository_ids)) {
      repoIds = new Set();
      for (const name of (b.repositories as unknown[] | undefined) ?? []) {
        const repo = available.find((x) => x.name.toLowerCase() === String(name).toLowerCase());
        if (!repo) throw new HttpError(422, `There is at least one repository that does not exist or is not accessible to the parent installation.`);
        repoIds.add(repo.id);
      }
      for (const id of (b.repository_ids as unknown[] | undefined) ?? []) {
        const repo = available.find((x) => x.id === Number(id));
        if (!repo) throw new HttpError(422, `There is at least one repository that does not exist or is not accessible to the parent installation.`);
        repoIds.add(repo.id);
      }
    }
    let permissions: Permissions = { ...inst.permissions };
    if (b.permissions !== undefined) {
      permissions = {};
      for (const [k, v] of Object.entries(obj(b.permissions))) {
        const granted = inst.permissions[k];
        if (!granted || (v !== "read" && v !== "write") || (v === "write" && granted === "read")) {
          throw new HttpError(422, "The permissions requested are not granted to this installation.");
        }
        permissions[k] = v;
      }
      if (!permissions.metadata) permissions.metadata = "read";
    }
    const token: TokenRecord = {
      token: newToken("ghs_"),
      installationId: inst.id,
      expiresAt: ctx.core.clock().getTime() + 3600_000,
      repoIds,
      permissions,
    };
    ctx.core.tokens.set(token.token, token);
    const body: Json = {
      token: token.token,
      expires_at: new Date(token.expiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"),
      permissions,
      repository_selection: repoIds ? "selected" : inst.repositorySelection,
    };
    if (repoIds) body.repositories = available.filter((x) => repoIds?.has(x.id)).map((x) => repoShape(x, ctx.core.urls));
    return json(201, body);
  });

  r.on("GET", "/repos/{owner}/{repo}/installation", (ctx, p) => {
    const app = requireApp(ctx);
    const repo = ctx.core.repo(p.owner ?? "", p.repo ?? "");
    const inst = repo && ctx.core.installationsFor(repo).find((i) => i.appId === app.id);
    if (!inst) throw notFound();
    return json(200, installationShape(inst, app, ctx.core.urls));
  });

  r.on("GET", "/installation/repositories", (ctx) => {
    if (ctx.auth.kind !== "installation") throw new HttpError(403, "This endpoint requires an installation access token");
    const { installation, token } = ctx.auth;
    const repos = ctx.core.reposOf(installation).filter((x) => !token.repoIds || token.repoIds.has(x.id));
    const page = paginate(repos, ctx.query, ctx.url);
    return json(
      200,
      {
        total_count: repos.length,
        repositories: page.items.map((x) => repoShape(x, ctx.core.urls, { openIssues: ctx.core.openCount(x) })),
        repository_selection: token.repoIds ? "selected" : installation.repositorySelection,
      },
      page.headers,
    );
  });

  r.on("DELETE", "/installation/token", (ctx) => {
    if (ctx.auth.kind !== "installation") throw new HttpError(401, "Bad credentials");
    ctx.core.tokens.delete(ctx.auth.token.token);
    return { status: 204 };
  });
}

async function treeOf(repo: RepoRecord, treeish: string): Promise<string | null> {
  if (/^[0-9a-f]{40}$/.test(treeish)) {
    const tree = await repo.git.treeOf(treeish);
    if (tree) return tree;
  }
  const commit = await repo.git.resolveCommit(treeish);
  return commit ? (await repo.git.readCommit(commit)).tree : null;
}

async function contentsReply(ctx: RequestCtx, repo: RepoRecord, path: string): Promise<Reply> {
  const ref = ctx.query.get("ref") ?? repo.defaultBranch;
  const sha = await repo.git.resolveCommit(ref);
  if (!sha) throw new HttpError(404, `No commit found for the ref ${ref}`);
  const entry = await repo.git.entryAt(sha, path);
  if (!entry) throw notFound();
  const urls = ctx.core.urls;
  if (entry.type === "tree") {
    const listing = entry.path === "" ? await repo.git.listTree(sha, false) : await repo.git.listTree(entry.sha, false);
    const items = listing.map((e) => contentEntryShape(repo, ref, { ...e, path: entry.path ? `${entry.path}/${e.path}` : e.path }, urls));
    return json(200, items);
  }
  const shape = contentEntryShape(repo, ref, entry, urls);
  if (entry.type === "commit") return json(200, { ...shape, submodule_git_url: "" });
  const data = await repo.git.readBlob(entry.sha);
  if (mediaFormat(ctx) === "raw") return text(data, mediaContentType(ctx));
  if (entry.mode === "120000") return json(200, { ...shape, target: data.toString("utf8") });
  return json(200, { ...shape, content: base64Wrapped(data), encoding: "base64" });
}

/**
 * GET /tarball: a 302 to the download (codeload on GitHub). Like GitHub, the location names the
 * ref as asked (a branch as refs/heads/<name>), resolved when the download starts, and carries a
 * short-lived token only for a private repository.
 */
async function tarballRedirect(ctx: RequestCtx, p: P, asked: string | undefined): Promise<Reply> {
  const repo = access(ctx, p, ["contents"], "read");
  const ref = asked || repo.defaultBranch;
  await commitOrThrow(repo, ref, 404);
  const qualified = ref.startsWith("refs/") || /^[0-9a-f]{40}$/.test(ref) ? ref : (await repo.git.refSha(`refs/heads/${ref}`)) ? `refs/heads/${ref}` : (await repo.git.refSha(`refs/tags/${ref}`)) ? `refs/tags/${ref}` : ref;
  let query = "";
  if (repo.private) {
    const token = newToken("ARCHIVE");
    ctx.archiveTokens.set(token, { repoId: repo.id, expiresAt: Date.now() + 5 * 60_000 });
    query = `?token=${token}`;
  }
  const path = qualified.split("/").map(encodeURIComponent).join("/");
  const location = `${ctx.core.urls.web}/_codeload/${encodeURIComponent(repo.owner.login)}/${encodeURIComponent(repo.name)}/legacy.tar.gz/${path}${query}`;
  return { status: 302, headers: { location, "content-type": "text/html;charset=utf-8" }, raw: Buffer.alloc(0) };
}

function registerRepoAndGit(r: Router<RequestCtx>): void {
  r.on("GET", "/repos/{owner}/{repo}", (ctx, p) => {
    const repo = access(ctx, p, ["metadata"], "read");
    return json(200, fullRepoShape(repo, ctx.core.urls, repoPermissionsFor(ctx, repo), ctx.core.openCount(repo)));
  });

  r.on("GET", "/repos/{owner}/{repo}/branches", async (ctx, p) => {
    const repo = access(ctx, p, ["contents", "metadata"], "read");
    const refs = await repo.git.listRefs("refs/heads/");
    const all = refs.map((x) => ({
      name: x.ref.replace(/^refs\/heads\//, ""),
      commit: { sha: x.sha, url: `${repoApiUrl(repo, ctx.core.urls)}/commits/${x.sha}` },
      protected: false,
    }));
    const page = paginate(all, ctx.query, ctx.url);
    return json(200, page.items, page.headers);
  });

  r.on(
    "GET",
    "/repos/{owner}/{repo}/branches/{branch}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents", "metadata"], "read");
      const branch = p.branch ?? "";
      const sha = await ctx.core.branchSha(repo, branch);
      if (!sha) throw new HttpError(404, "Branch not found");
      const a = repoApiUrl(repo, ctx.core.urls);
      const info = await repo.git.readCommit(sha);
      return json(200, {
        name: branch,
        commit: commitShape(repo, info, ctx.core.urls, (e) => ctx.core.userForEmail(e)),
        _links: { self: `${a}/branches/${encodeURIComponent(branch)}`, html: `${repoWebUrl(repo, ctx.core.urls)}/tree/${branch}` },
        protected: false,
        protection: { enabled: false, required_status_checks: { enforcement_level: "off", contexts: [], checks: [] } },
        protection_url: `${a}/branches/${encodeURIComponent(branch)}/protection`,
      });
    },
    { greedy: true },
  );

  r.on("GET", "/repos/{owner}/{repo}/contents", async (ctx, p) => contentsReply(ctx, access(ctx, p, ["contents"], "read"), ""));
  r.on("GET", "/repos/{owner}/{repo}/contents/{path}", async (ctx, p) => contentsReply(ctx, access(ctx, p, ["contents"], "read"), p.path ?? ""), {
    greedy: true,
  });

  r.on(
    "PUT",
    "/repos/{owner}/{repo}/contents/{path}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents"], "write");
      const actor = actorOf(ctx.auth);
      const b = obj(ctx.body);
      const message = reqString(b, "message", "Commit");
      const content = reqString(b, "content", "Commit");
      const branch = optString(b, "branch", "Commit") ?? repo.defaultBranch;
      const path = (p.path ?? "").replace(/^\/+/, "");
      const head = await ctx.core.branchSha(repo, branch);
      if (!head) throw new HttpError(404, `Branch ${branch} not found`);
      const existing = await repo.git.entryAt(head, path);
      const sha = optString(b, "sha", "Commit");
      if (existing && sha === undefined) throw new HttpError(422, `Invalid request.\n\n"sha" wasn't supplied.`);
      if (existing && sha !== existing.sha) throw new HttpError(409, `${path} does not match ${sha ?? ""}`);
      const who = (key: string) => {
        const x = obj(b[key]);
        return typeof x.name === "string" && typeof x.email === "string" ? { name: x.name, email: x.email, date: ctx.core.now() } : undefined;
      };
      const author = who("author") ?? who("committer") ?? ctx.core.identity(actor.user);
      const commit = await ctx.core.commitFiles(repo, head, { [path]: Buffer.from(content, "base64") }, message, author, who("committer") ?? author);
      if (!(await ctx.core.moveBranch(repo, branch, commit, actor, head))) throw new HttpError(409, "Reference update failed");
      const entry = await repo.git.entryAt(commit, path);
      const info = await repo.git.readCommit(commit);
      return json(existing ? 200 : 201, {
        content: entry ? contentEntryShape(repo, branch, entry, ctx.core.urls) : null,
        commit: gitCommitShape(repo, info, ctx.core.urls),
      });
    },
    { greedy: true },
  );

  r.on(
    "GET",
    "/repos/{owner}/{repo}/git/ref/{ref}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents"], "read");
      const ref = `refs/${p.ref ?? ""}`;
      const found = (await repo.git.listRefs(ref)).find((x) => x.ref === ref);
      if (!found) throw notFound();
      return json(200, refShape(repo, found.ref, found.sha, found.type, ctx.core.urls));
    },
    { greedy: true },
  );

  // Every ref (GitHub still answers the listing its description replaced with matching-refs).
  r.on("GET", "/repos/{owner}/{repo}/git/refs", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "read");
    const refs = await repo.git.listRefs("refs/");
    return json(
      200,
      refs.map((x) => refShape(repo, x.ref, x.sha, x.type, ctx.core.urls)),
    );
  });

  r.on(
    "GET",
    "/repos/{owner}/{repo}/git/matching-refs/{ref}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents"], "read");
      const prefix = `refs/${p.ref ?? ""}`;
      const refs = (await repo.git.listRefs("refs/")).filter((x) => x.ref.startsWith(prefix));
      return json(
        200,
        refs.map((x) => refShape(repo, x.ref, x.sha, x.type, ctx.core.urls)),
      );
    },
    { greedy: true },
  );

  r.on("POST", "/repos/{owner}/{repo}/git/refs", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "write");
    const actor = actorOf(ctx.auth);
    const b = obj(ctx.body);
    const ref = reqString(b, "ref", "Reference");
    const sha = reqString(b, "sha", "Reference");
    if (!/^refs\/[^/]+\/.+/.test(ref) || !repo.git.validRefName(ref)) {
      throw new HttpError(422, "Reference name is invalid");
    }
    const type = await repo.git.objectType(sha);
    if (!type || sha.length !== 40) throw new HttpError(422, "Object does not exist");
    if (await repo.git.refSha(ref)) throw new HttpError(422, "Reference already exists");
    if (ref.startsWith("refs/heads/")) {
      if (type !== "commit") throw new HttpError(422, "Object is not a commit");
      if (!(await ctx.core.moveBranch(repo, ref.slice("refs/heads/".length), sha, actor, null))) throw new HttpError(422, "Reference already exists");
    } else if (!(await repo.git.updateRef(ref, sha, ZERO_SHA))) {
      throw new HttpError(422, "Reference already exists");
    }
    return json(201, refShape(repo, ref, sha, type, ctx.core.urls), { location: `${repoApiUrl(repo, ctx.core.urls)}/git/${ref}` });
  });

  r.on(
    "PATCH",
    "/repos/{owner}/{repo}/git/refs/{ref}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents"], "write");
      const actor = actorOf(ctx.auth);
      const b = obj(ctx.body);
      const sha = reqString(b, "sha", "Reference");
      const force = optBool(b, "force", "Reference") ?? false;
      const ref = `refs/${p.ref ?? ""}`;
      const current = await repo.git.refSha(ref);
      if (!current) throw new HttpError(422, "Reference does not exist");
      const type = await repo.git.objectType(sha);
      if (!type || sha.length !== 40) throw new HttpError(422, "Object does not exist");
      if (!force && current !== sha && (type !== "commit" || !(await repo.git.isAncestor(current, sha)))) {
        throw new HttpError(422, "Update is not a fast forward");
      }
      if (ref.startsWith("refs/heads/")) {
        if (current !== sha && !(await ctx.core.moveBranch(repo, ref.slice("refs/heads/".length), sha, actor, current))) {
          throw new HttpError(422, "Reference cannot be updated");
        }
      } else if (!(await repo.git.updateRef(ref, sha, current))) {
        throw new HttpError(422, "Reference cannot be updated");
      }
      return json(200, refShape(repo, ref, sha, type, ctx.core.urls));
    },
    { greedy: true },
  );

  r.on(
    "DELETE",
    "/repos/{owner}/{repo}/git/refs/{ref}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents"], "write");
      const actor = actorOf(ctx.auth);
      const ref = `refs/${p.ref ?? ""}`;
      const current = await repo.git.refSha(ref);
      if (!current) throw new HttpError(422, "Reference does not exist");
      if (ref === `refs/heads/${repo.defaultBranch}`) throw new HttpError(422, "Cannot delete the default branch");
      if (ref.startsWith("refs/heads/")) await ctx.core.moveBranch(repo, ref.slice("refs/heads/".length), null, actor, current);
      else await repo.git.deleteRef(ref, current);
      return { status: 204 };
    },
    { greedy: true },
  );

  r.on("POST", "/repos/{owner}/{repo}/git/blobs", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "write");
    const b = obj(ctx.body);
    if (typeof b.content !== "string") throw missingField("Blob", "content");
    const encoding = optString(b, "encoding", "Blob") ?? "utf-8";
    if (encoding !== "utf-8" && encoding !== "utf8" && encoding !== "base64") throw invalid("Blob", "encoding");
    const sha = await repo.git.writeBlob(encoding === "base64" ? Buffer.from(b.content, "base64") : Buffer.from(b.content, "utf8"));
    const url = `${repoApiUrl(repo, ctx.core.urls)}/git/blobs/${sha}`;
    return json(201, { sha, url }, { location: url });
  });

  r.on("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "read");
    const sha = p.file_sha ?? "";
    if ((await repo.git.objectType(sha)) !== "blob") throw notFound();
    const data = await repo.git.readBlob(sha);
    if (mediaFormat(ctx) === "raw") return text(data, "application/octet-stream");
    return json(200, {
      sha,
      node_id: `B_${sha}`,
      size: data.length,
      url: `${repoApiUrl(repo, ctx.core.urls)}/git/blobs/${sha}`,
      content: base64Wrapped(data),
      encoding: "base64",
    });
  });

  r.on("POST", "/repos/{owner}/{repo}/git/trees", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "write");
    const b = obj(ctx.body);
    if (!Array.isArray(b.tree)) throw missingField("Tree", "tree");
    const baseTreeSha = optString(b, "base_tree", "Tree");
    let baseTree: string | null = null;
    if (baseTreeSha !== undefined) {
      baseTree = await treeOf(repo, baseTreeSha);
      if (!baseTree) throw new HttpError(422, "Invalid tree info", [{ resource: "Tree", field: "base_tree", code: "invalid" }]);
    }
    const changes = new Map<string, TreeChange>();
    for (const [i, raw] of (b.tree as unknown[]).entries()) {
      const e = obj(raw);
      const path = typeof e.path === "string" ? e.path.replace(/^\/+|\/+$/g, "") : "";
      const mode = e.mode;
      const bad = (msg: string) => new HttpError(422, msg, [{ resource: "Tree", field: `tree[${i}]`, code: "invalid" }]);
      if (!path) throw bad(`tree.path is missing`);
      if (typeof mode !== "string" || !["100644", "100755", "040000", "160000", "120000"].includes(mode)) throw bad(`tree.mode must be one of 100644, 100755, 040000, 160000, 120000`);
      const hasContent = typeof e.content === "string";
      if (hasContent && e.sha !== undefined) throw bad("Must supply either tree.sha or tree.content, not both");
      if (e.sha === null) {
        if (!baseTree) throw bad(`tree.sha null is only valid with base_tree`);
        changes.set(path, null);
        continue;
      }
      if (hasContent) {
        if (mode === "040000" || mode === "160000") throw bad("tree.content can only be used with blob modes");
        changes.set(path, { mode, sha: await repo.git.writeBlob(Buffer.from(e.content as string, "utf8")) });
        continue;
      }
      if (typeof e.sha !== "string") throw bad("Must supply either tree.sha or tree.content");
      const type = await repo.git.objectType(e.sha);
      if (mode === "040000") {
        if (type !== "tree") throw bad(`tree.sha ${e.sha} is not a valid tree`);
        changes.set(path, null);
        for (const sub of await repo.git.listTree(e.sha, true)) {
          if (sub.type !== "tree") changes.set(`${path}/${sub.path}`, { mode: sub.mode, sha: sub.sha });
        }
      } else if (mode === "160000") {
        if (!/^[0-9a-f]{40}$/.test(e.sha)) throw bad(`tree.sha ${e.sha} is not a valid commit`);
        changes.set(path, { mode, sha: e.sha });
      } else {
        if (type !== "blob") throw bad(`tree.sha ${e.sha} is not a valid blob`);
        changes.set(path, { mode, sha: e.sha });
      }
    }
    const sha = await repo.git.buildTree(baseTree, changes);
    const url = `${repoApiUrl(repo, ctx.core.urls)}/git/trees/${sha}`;
    return json(201, treeShape(repo, sha, await repo.git.listTree(sha, false), ctx.core.urls), { location: url });
  });

  r.on("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "read");
    const tree = await treeOf(repo, p.tree_sha ?? "");
    if (!tree) throw notFound();
    const recursive = ["1", "true"].includes(ctx.query.get("recursive") ?? "");
    return json(200, treeShape(repo, tree, await repo.git.listTree(tree, recursive), ctx.core.urls));
  });

  r.on("POST", "/repos/{owner}/{repo}/git/commits", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "write");
    const actor = actorOf(ctx.auth);
    const b = obj(ctx.body);
    const message = reqString(b, "message", "Commit");
    const tree = reqString(b, "tree", "Commit");
    if ((await repo.git.objectType(tree)) !== "tree") throw new HttpError(422, "Tree SHA does not exist");
    const parents = b.parents === undefined ? [] : b.parents;
    if (!Array.isArray(parents)) throw invalid("Commit", "parents");
    const parentShas: string[] = [];
    for (const parent of parents) {
      if (typeof parent !== "string" || (await repo.git.objectType(parent)) !== "commit") {
        throw new HttpError(422, "Parent SHA does not exist or is not a commit object");
      }
      parentShas.push(parent);
    }
    const ident = (key: string) => {
      const x = obj(b[key]);
      if (b[key] === undefined) return undefined;
      if (typeof x.name !== "string" || typeof x.email !== "string") throw invalid("Commit", key);
      const date = typeof x.date === "string" ? x.date : ctx.core.now();
      if (Number.isNaN(Date.parse(date))) throw invalid("Commit", `${key}.date`);
      return { name: x.name, email: x.email, date };
    };
    const author = ident("author") ?? ctx.core.identity(actor.user);
    const committer = ident("committer") ?? author;
    const sha = await repo.git.commitTree(tree, parentShas, message, author, committer);
    const url = `${repoApiUrl(repo, ctx.core.urls)}/git/commits/${sha}`;
    return json(201, gitCommitShape(repo, await repo.git.readCommit(sha), ctx.core.urls), { location: url });
  });

  r.on("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "read");
    const sha = p.commit_sha ?? "";
    if ((await repo.git.objectType(sha)) !== "commit") throw notFound();
    return json(200, gitCommitShape(repo, await repo.git.readCommit(sha), ctx.core.urls));
  });

  r.on("GET", "/repos/{owner}/{repo}/commits", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "read");
    const ref = ctx.query.get("sha") ?? repo.defaultBranch;
    const head = await commitOrThrow(repo, ref, 404);
    const shas = await repo.git.history(head, { path: ctx.query.get("path") ?? undefined });
    const page = paginate(shas, ctx.query, ctx.url);
    const items: Json[] = [];
    for (const sha of page.items) items.push(commitShape(repo, await repo.git.readCommit(sha), ctx.core.urls, (e) => ctx.core.userForEmail(e)));
    return json(200, items, page.headers);
  });

  r.on("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", (ctx, p) => listCheckRuns(ctx, p), { greedy: false });

  r.on(
    "GET",
    "/repos/{owner}/{repo}/commits/{ref}",
    async (ctx, p) => {
      const repo = access(ctx, p, ["contents"], "read");
      const sha = await commitOrThrow(repo, p.ref ?? "");
      const info = await repo.git.readCommit(sha);
      const format = mediaFormat(ctx);
      if (format === "diff" || format === "patch") return text(await repo.git.unifiedDiff(info.parents[0] ?? null, sha));
      const files = await repo.git.diff(info.parents[0] ?? null, sha);
      return json(200, commitShape(repo, info, ctx.core.urls, (e) => ctx.core.userForEmail(e), files));
    },
    { greedy: true },
  );

  r.on("GET", "/repos/{owner}/{repo}/tarball/{ref}", (ctx, p) => tarballRedirect(ctx, p, p.ref), { greedy: true });
  r.on("GET", "/repos/{owner}/{repo}/tarball", (ctx, p) => tarballRedirect(ctx, p, undefined));

  r.on("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", (ctx, p) => {
    const repo = access(ctx, p, ["metadata"], "read");
    const user = ctx.core.findUser(p.username ?? "");
    if (!user) throw new HttpError(404, `${p.username ?? ""} is not a user`);
    const role = ctx.core.roleOf(repo, user);
    const legacy = role === "admin" ? "admin" : role === "maintain" || role === "write" ? "write" : role === "none" ? "none" : "read";
    const roleName = role === "none" ? "none" : role;
    return json(200, {
      permission: legacy,
      role_name: roleName,
      user: { ...userShape(user, ctx.core.urls), permissions: rolePermissionsOf(role), role_name: roleName },
    });
  });
}

function rolePermissionsOf(role: Role): Record<string, boolean> {
  return {
    admin: roleAtLeast(role, "admin"),
    maintain: roleAtLeast(role, "maintain"),
    push: roleAtLeast(role, "write"),
    triage: roleAtLeast(role, "triage"),
    pull: roleAtLeast(role, "read"),
  };
}

function registerPulls(r: Router<RequestCtx>): void {
  r.on("GET", "/repos/{owner}/{repo}/pulls", (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "read");
    const state = ctx.query.get("state") ?? "open";
    const head = ctx.query.get("head");
    const base = ctx.query.get("base");
    let pulls = [...repo.issues.values()].filter((i) => i.pull && (state === "all" || i.state === state));
    if (head) {
      const [owner, ref] = head.includes(":") ? [head.slice(0, head.indexOf(":")), head.slice(head.indexOf(":") + 1)] : [head, undefined];
      pulls = pulls.filter((i) => owner.toLowerCase() === repo.owner.login.toLowerCase() && (ref === undefined || i.pull?.headRef === ref));
    }
    if (base) pulls = pulls.filter((i) => i.pull?.baseRef === base);
    pulls = sortAndDirection(
      pulls,
      ctx.query,
      {
        created: (i) => i.number,
        updated: (i) => `${i.updatedAt}:${String(i.number).padStart(9, "0")}`,
        popularity: (i) => repo.comments.filter((c) => c.issueNumber === i.number).length,
        "long-running": (i) => -i.number,
      },
      "created",
    );
    const page = paginate(pulls, ctx.query, ctx.url);
    return json(
      200,
      page.items.map((i) => pullSimpleShape(repo, i, ctx.core.urls)),
      page.headers,
    );
  });

  r.on("POST", "/repos/{owner}/{repo}/pulls", async (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "write");
    const actor = actorOf(ctx.auth);
    const b = obj(ctx.body);
    const head = reqString(b, "head", "PullRequest");
    const base = reqString(b, "base", "PullRequest");
    const title = reqString(b, "title", "PullRequest");
    const issue = await ctx.core.createPull(repo, actor, {
      title,
      head,
      base,
      body: optNullableString(b, "body", "PullRequest"),
      draft: optBool(b, "draft", "PullRequest"),
      maintainerCanModify: optBool(b, "maintainer_can_modify", "PullRequest"),
    });
    const shape = await ctx.core.pullShape(repo, issue, false);
    return json(201, shape, { location: String(shape.url) });
  });

  // Review comments on the diffs of every pull request (before /pulls/{pull_number}).
  r.on("GET", "/repos/{owner}/{repo}/pulls/comments", (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "read");
    return commentListing(ctx, repo.reviewComments, (c) => ctx.core.reviewCommentShape(repo, c));
  });

  r.on("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", async (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "read");
    const issue = pullOf(repo, p.pull_number);
    const format = mediaFormat(ctx);
    if ((format === "diff" || format === "patch") && issue.pull) {
      const pull = issue.pull;
      const baseHead = issue.state === "open" ? ((await ctx.core.branchSha(repo, pull.baseRef)) ?? pull.baseSha) : pull.baseSha;
      return text(await repo.git.unifiedDiff((await repo.git.mergeBase(baseHead, pull.headSha)) ?? baseHead, pull.headSha));
    }
    return json(200, await ctx.core.pullShape(repo, issue, true));
  });

  r.on("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", async (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "write");
    const actor = actorOf(ctx.auth);
    const issue = pullOf(repo, p.pull_number);
    const b = obj(ctx.body);
    const maintainer = optBool(b, "maintainer_can_modify", "PullRequest");
    if (maintainer !== undefined && issue.pull) issue.pull.maintainerCanModify = maintainer;
    await ctx.core.updateIssue(repo, issue, actor, {
      title: optString(b, "title", "PullRequest"),
      body: optNullableString(b, "body", "PullRequest"),
      state: optString(b, "state", "PullRequest"),
      base: optString(b, "base", "PullRequest"),
    });
    return json(200, await ctx.core.pullShape(repo, issue, false));
  });

  r.on("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "read");
    const issue = pullOf(repo, p.pull_number);
    if (!issue.pull?.merged) throw notFound();
    return { status: 204 };
  });

  r.on("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", async (ctx, p) => {
    const repo = access(ctx, p, ["contents"], "write");
    const actor = actorOf(ctx.auth);
    const issue = pullOf(repo, p.pull_number);
    const b = obj(ctx.body);
    const sha = await ctx.core.mergePull(repo, issue, actor, {
      sha: optString(b, "sha", "PullRequest"),
      method: optString(b, "merge_method", "PullRequest"),
      commitTitle: optString(b, "commit_title", "PullRequest"),
      commitMessage: optString(b, "commit_message", "PullRequest"),
    });
    return json(200, { sha, merged: true, message: "Pull Request successfully merged" });
  });

  r.on("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", async (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "read");
    const issue = pullOf(repo, p.pull_number);
    const pull = issue.pull;
    if (!pull) throw notFound();
    const baseHead = issue.state === "open" ? ((await ctx.core.branchSha(repo, pull.baseRef)) ?? pull.baseSha) : pull.baseSha;
    const mergeBase = (await repo.git.mergeBase(baseHead, pull.headSha)) ?? baseHead;
    const files = await repo.git.diff(mergeBase, pull.headSha);
    const page = paginate(files, ctx.query, ctx.url);
    return json(
      200,
      page.items.map((f) => diffEntryShape(repo, pull.headSha, f, ctx.core.urls)),
      page.headers,
    );
  });

  r.on("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", async (ctx, p) => {
    const repo = access(ctx, p, ["pull_requests"], "read");
    const issue = pullOf(repo, p.pull_number);
    const pull = issue.pull;
    if (!pull) throw notFound();
    const baseHead = issue.state === "open" ? ((await ctx.core.branchSha(repo, pull.baseRef)) ?? pull.baseSha) : pull.baseSha;
    const shas = await repo.git.revList(pull.headSha, [baseHead], 250);
    const page = paginate(shas, ctx.query, ctx.url);
    const items: Json[] = [];
    for (const sha of page.items) items.push(commitShape(repo, await repo.git.readCommit(sha), ctx.core.urls, (e) => ctx.core.userForEmail(e)));
    return json(200, items, page.headers);
  });
}

const ISSUE_PERMS = ["issues", "pull_requests"];

/** A repository-wide comment listing: `since`, `sort` (created | updated), `direction`, pages. */
function commentListing<T extends { id: number; updatedAt: string }>(ctx: RequestCtx, comments: T[], shape: (c: T) => Json) {
  const since = ctx.query.get("since");
  const all = sortAndDirection(
    comments.filter((c) => !since || c.updatedAt >= since),
    ctx.query,
    { created: (c) => String(c.id).padStart(12, "0"), updated: (c) => `${c.updatedAt}:${String(c.id).padStart(12, "0")}` },
    "created",
  );
  const page = paginate(all, ctx.query, ctx.url);
  return json(200, page.items.map(shape), page.headers);
}

function registerIssues(r: Router<RequestCtx>): void {
  // Every issue and pull request comment of the repository (before /issues/{issue_number}).
  r.on("GET", "/repos/{owner}/{repo}/issues/comments", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    return commentListing(ctx, repo.comments, (c) => ctx.core.commentShape(repo, c));
  });

  r.on("GET", "/repos/{owner}/{repo}/issues", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    const q = ctx.query;
    const state = q.get("state") ?? "open";
    let issues = [...repo.issues.values()].filter((i) => state === "all" || i.state === state);
    const labels = q.get("labels");
    if (labels) {
      const wanted = labels.split(",").map((l) => l.trim().toLowerCase()).filter(Boolean);
      issues = issues.filter((i) => wanted.every((w) => i.labels.some((l) => l.toLowerCase() === w)));
    }
    const creator = q.get("creator");
    if (creator) issues = issues.filter((i) => i.user.login.toLowerCase() === creator.toLowerCase());
    const since = q.get("since");
    if (since) issues = issues.filter((i) => i.updatedAt >= since);
    issues = sortAndDirection(
      issues,
      q,
      {
        created: (i) => i.number,
        updated: (i) => `${i.updatedAt}:${String(i.number).padStart(9, "0")}`,
        comments: (i) => repo.comments.filter((c) => c.issueNumber === i.number).length,
      },
      "created",
    );
    const page = paginate(issues, q, ctx.url);
    return json(
      200,
      page.items.map((i) => ctx.core.issueShape(repo, i)),
      page.headers,
    );
  });

  r.on("POST", "/repos/{owner}/{repo}/issues", async (ctx, p) => {
    const repo = access(ctx, p, ["issues"], "write");
    const actor = actorOf(ctx.auth);
    const b = obj(ctx.body);
    const title = b.title === undefined || b.title === "" ? undefined : b.title;
    if (typeof title !== "string" && typeof title !== "number") throw missingField("Issue", "title");
    const assignees = Array.isArray(b.assignees) ? b.assignees.map(String) : [];
    const issue = await ctx.core.createIssue(repo, actor, {
      title: String(title),
      body: optNullableString(b, "body", "Issue"),
      labels: b.labels === undefined ? [] : labelNames({ labels: b.labels }),
      assignees,
    });
    const shape = ctx.core.issueShape(repo, issue, true);
    return json(201, shape, { location: String(shape.url) });
  });

  r.on("GET", "/repos/{owner}/{repo}/issues/{issue_number}", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    return json(200, ctx.core.issueShape(repo, issueOf(repo, p.issue_number), true));
  });

  r.on("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}", async (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const issue = issueOf(repo, p.issue_number);
    const b = obj(ctx.body);
    await ctx.core.updateIssue(repo, issue, actor, {
      title: optString(b, "title", "Issue"),
      body: optNullableString(b, "body", "Issue"),
      state: optString(b, "state", "Issue"),
      stateReason: optNullableString(b, "state_reason", "Issue"),
      labels: b.labels === undefined ? undefined : labelNames({ labels: b.labels }),
    });
    return json(200, ctx.core.issueShape(repo, issue, true));
  });

  const labelsOf = (ctx: RequestCtx, repo: RepoRecord, issue: IssueRecord) =>
    issue.labels.flatMap((n) => {
      const l = ctx.core.findLabel(repo, n);
      return l ? [labelShape(repo, l, ctx.core.urls)] : [];
    });

  r.on("GET", "/repos/{owner}/{repo}/labels", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    const page = paginate(repo.labels, ctx.query, ctx.url);
    return json(
      200,
      page.items.map((l) => labelShape(repo, l, ctx.core.urls)),
      page.headers,
    );
  });

  r.on("POST", "/repos/{owner}/{repo}/labels", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    actorOf(ctx.auth);
    const b = obj(ctx.body);
    const name = reqString(b, "name", "Label");
    const color = optString(b, "color", "Label");
    if (color !== undefined && !/^#?[0-9a-fA-F]{6}$/.test(color)) throw invalid("Label", "color");
    const label = ctx.core.createLabel(repo, name, color ?? "ededed", optNullableString(b, "description", "Label") ?? null);
    const shape = labelShape(repo, label, ctx.core.urls);
    return json(201, shape, { location: String(shape.url) });
  });

  r.on("GET", "/repos/{owner}/{repo}/labels/{name}", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    const label = ctx.core.findLabel(repo, p.name ?? "");
    if (!label) throw notFound();
    return json(200, labelShape(repo, label, ctx.core.urls));
  });

  r.on("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    return json(200, labelsOf(ctx, repo, issueOf(repo, p.issue_number)));
  });

  r.on("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels", async (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const issue = issueOf(repo, p.issue_number);
    const names = labelNames(ctx.body);
    if (names.length === 0) throw missingField("Label", "labels");
    await ctx.core.addLabels(repo, issue, names, actor);
    return json(200, labelsOf(ctx, repo, issue));
  });

  r.on("PUT", "/repos/{owner}/{repo}/issues/{issue_number}/labels", async (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const issue = issueOf(repo, p.issue_number);
    await ctx.core.setLabels(repo, issue, labelNames(ctx.body), actor);
    return json(200, labelsOf(ctx, repo, issue));
  });

  r.on("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels", async (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    await ctx.core.setLabels(repo, issueOf(repo, p.issue_number), [], actor);
    return { status: 204 };
  });

  r.on("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", async (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const issue = issueOf(repo, p.issue_number);
    if (!(await ctx.core.removeLabel(repo, issue, p.name ?? "", actor))) throw new HttpError(404, "Label does not exist");
    return json(200, labelsOf(ctx, repo, issue));
  });

  r.on("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    const issue = issueOf(repo, p.issue_number);
    const since = ctx.query.get("since");
    const all = repo.comments.filter((c) => c.issueNumber === issue.number && (!since || c.updatedAt >= since));
    const page = paginate(all, ctx.query, ctx.url);
    return json(
      200,
      page.items.map((c) => ctx.core.commentShape(repo, c)),
      page.headers,
    );
  });

  r.on("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const issue = issueOf(repo, p.issue_number);
    const body = reqString(obj(ctx.body), "body", "IssueComment");
    const shape = ctx.core.commentShape(repo, ctx.core.addComment(repo, issue, actor, body));
    return json(201, shape, { location: String(shape.url) });
  });

  const commentOf = (repo: RepoRecord, id: string | undefined) => {
    const c = repo.comments.find((x) => x.id === num(id));
    if (!c) throw notFound();
    return c;
  };

  r.on("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    return json(200, ctx.core.commentShape(repo, commentOf(repo, p.comment_id)));
  });

  r.on("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const c = commentOf(repo, p.comment_id);
    ctx.core.editComment(repo, c, actor, reqString(obj(ctx.body), "body", "IssueComment"));
    return json(200, ctx.core.commentShape(repo, c));
  });

  r.on("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "read");
    const c = commentOf(repo, p.comment_id);
    const content = ctx.query.get("content");
    const all = c.reactions.filter((x) => !content || x.content === content);
    const page = paginate(all, ctx.query, ctx.url);
    return json(
      200,
      page.items.map((x) => reactionShape(x, ctx.core.urls)),
      page.headers,
    );
  });

  r.on("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", (ctx, p) => {
    const repo = access(ctx, p, ISSUE_PERMS, "write");
    const actor = actorOf(ctx.auth);
    const c = commentOf(repo, p.comment_id);
    const content = reqString(obj(ctx.body), "content", "Reaction");
    if (!REACTIONS.includes(content as ReactionContent)) throw invalid("Reaction", "content");
    const { reaction, created } = ctx.core.addReaction(c, actor.user, content as ReactionContent);
    return json(created ? 201 : 200, reactionShape(reaction, ctx.core.urls));
  });
}

function checkRunInput(b: Record<string, unknown>, creating: boolean): CheckRunInput {
  const R = "CheckRun";
  const errors: ErrorDetail[] = [];
  const input: CheckRunInput = {};
  const name = optString(b, "name", R);
  if (name !== undefined) input.name = name;
  const status = optString(b, "status", R);
  if (status !== undefined) {
    if (!["queued", "in_progress", "completed", "waiting", "requested", "pending"].includes(status)) throw invalid(R, "status");
    input.status = status as CheckRunRecord["status"];
  }
  const conclusion = optString(b, "conclusion", R);
  if (conclusion !== undefined) {
    if (!["action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"].includes(conclusion)) throw invalid(R, "conclusion");
    input.conclusion = conclusion;
  }
  if (status === "completed" && conclusion === undefined && creating) {
    throw new HttpError(422, "Invalid request.\n\nNo subschema in \"anyOf\" matched.\n\"conclusion\" wasn't supplied.");
  }
  const externalId = optString(b, "external_id", R);
  if (externalId !== undefined) input.externalId = externalId;
  const detailsUrl = optString(b, "details_url", R);
  if (detailsUrl !== undefined) {
    try {
      new URL(detailsUrl);
    } catch {
      throw invalid(R, "details_url");
    }
    input.detailsUrl = detailsUrl;
  }
  for (const [key, field] of [
    ["started_at", "startedAt"],
    ["completed_at", "completedAt"],
  ] as const) {
    const v = optString(b, key, R);
    if (v === undefined) continue;
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw invalid(R, key);
    input[field] = new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");
  }
  if (b.output !== undefined) {
    const o = obj(b.output);
    if (typeof o.title !== "string") errors.push({ resource: R, field: "output.title", code: "missing_field" });
    if (typeof o.summary !== "string") errors.push({ resource: R, field: "output.summary", code: "missing_field" });
    if (errors.length) throw validationFailed(errors);
    if (typeof o.summary === "string" && o.summary.length > 65535) throw invalid(R, "output.summary");
    if (typeof o.text === "string" && o.text.length > 65535) throw invalid(R, "output.text");
    input.output = {
      title: o.title as string,
      summary: o.summary as string,
      text: typeof o.text === "string" ? o.text : undefined,
      annotationsCount: Array.isArray(o.annotations) ? o.annotations.length : 0,
    };
  }
  if (b.actions !== undefined) {
    if (!Array.isArray(b.actions) || b.actions.length > 3) throw invalid(R, "actions");
    const actions: CheckRunAction[] = [];
    for (const raw of b.actions) {
      const a = obj(raw);
      if (typeof a.label !== "string" || a.label.length > 20) throw invalid(R, "actions.label");
      if (typeof a.description !== "string" || a.description.length > 40) throw invalid(R, "actions.description");
      if (typeof a.identifier !== "string" || a.identifier.length > 20) throw invalid(R, "actions.identifier");
      actions.push({ label: a.label, description: a.description, identifier: a.identifier });
    }
    input.actions = actions;
  }
  return input;
}

function requireInstallation(ctx: RequestCtx): { app: AppRecord; actor: Actor } {
  if (ctx.auth.kind !== "installation") throw new HttpError(403, "You must authenticate via a GitHub App.");
  return { app: ctx.auth.app, actor: actorOf(ctx.auth) };
}

async function listCheckRuns(ctx: RequestCtx, p: P): Promise<Reply> {
  const repo = access(ctx, p, ["checks"], "read");
  const sha = await commitOrThrow(repo, p.ref ?? "", 422);
  const q = ctx.query;
  let runs = repo.checkRuns.filter((x) => x.headSha === sha);
  const name = q.get("check_name");
  if (name) runs = runs.filter((x) => x.name === name);
  const status = q.get("status");
  if (status) runs = runs.filter((x) => x.status === status);
  const appId = q.get("app_id");
  if (appId) runs = runs.filter((x) => x.appId === Number(appId));
  runs = [...runs].sort((a, b) => b.id - a.id);
  if ((q.get("filter") ?? "latest") === "latest") {
    const seen = new Set<string>();
    runs = runs.filter((x) => {
      const key = `${x.appId}:${x.name}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  const page = paginate(runs, q, ctx.url);
  return json(
    200,
    { total_count: runs.length, check_runs: page.items.map((x) => ctx.core.checkRunShape(repo, x, false)) },
    page.headers,
  );
}

function registerChecks(r: Router<RequestCtx>): void {
  r.on("POST", "/repos/{owner}/{repo}/check-runs", async (ctx, p) => {
    const repo = access(ctx, p, ["checks"], "write");
    const { app, actor } = requireInstallation(ctx);
    const b = obj(ctx.body);
    const name = reqString(b, "name", "CheckRun");
    const headSha = reqString(b, "head_sha", "CheckRun");
    const sha = await repo.git.resolveCommit(headSha);
    if (!sha || sha !== headSha) throw new HttpError(422, `No commit found for SHA: ${headSha}`);
    const run = await ctx.core.createCheckRun(repo, app, actor, { ...checkRunInput(b, true), name, headSha });
    const shape = ctx.core.checkRunShape(repo, run, false);
    return json(201, shape, { location: String(shape.url) });
  });

  const runOf = (ctx: RequestCtx, repo: RepoRecord, id: string | undefined) => {
    const run = repo.checkRuns.find((x) => x.id === num(id));
    if (!run) throw notFound();
    return run;
  };

  r.on("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", (ctx, p) => {
    const repo = access(ctx, p, ["checks"], "read");
    return json(200, ctx.core.checkRunShape(repo, runOf(ctx, repo, p.check_run_id), false));
  });

  r.on("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", (ctx, p) => {
    const repo = access(ctx, p, ["checks"], "write");
    const { app, actor } = requireInstallation(ctx);
    const run = runOf(ctx, repo, p.check_run_id);
    if (run.appId !== app.id) throw new HttpError(403, "Invalid app_id `" + String(app.id) + "` - check run can only be modified by the GitHub App that created it.");
    ctx.core.updateCheckRun(repo, run, actor, checkRunInput(obj(ctx.body), false));
    return json(200, ctx.core.checkRunShape(repo, run, false));
  });
}

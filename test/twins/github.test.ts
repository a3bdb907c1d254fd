// The GitHub twin driven by real clients (ProbotOctokit as an app and as an installation, and a
// real Probot app), with every JSON response checked against GitHub's OpenAPI description and
// every webhook checked against @octokit/webhooks-schemas and its HMAC signature.

import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Probot, ProbotOctokit, createNodeMiddleware } from "probot";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GitHubTwin } from "../../twins/github/index.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";
import { findTemplate, formatErrors, responseSchema, validate, validateResponse, validateWebhook, webhookSchema, type SchemaError } from "../../twins/github/schema.js";

const APP_ID = 4242;
const SECRET = "twin-webhook-secret";
const OWNER = "alice";
const REPO = "research";
const TRAIN = ["import torch", "", "LR = 0.04", "", "WARMUP = 10", "WEIGHT_DECAY = 0.1", "BETAS = (0.9, 0.95)", "", "DEPTH = 8", "BATCH = 64", "", "def main():", "    pass", ""].join("\n");

type Octokit = InstanceType<typeof ProbotOctokit>;


function newKey(): string {
  return generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  }).privateKey;
}

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** Problems found while checking responses and payloads; every test ends with none. */
const violations: string[] = [];

function documentedSchema(method: string, template: string, status: number) {
  try {
    return responseSchema(method, template, status);
  } catch {
    return null;
  }
}

/** How many JSON responses were checked against the description. */
let checkedResponses = 0;

function checkResponse(method: string, template: string, status: number, data: unknown, mustBeDocumented: boolean): void {
  // Raw, diff and archive media types are not JSON; everything else is checked.
  if (data === undefined || data === null || typeof data === "string" || data instanceof ArrayBuffer) return;
  checkedResponses++;
  const schema = documentedSchema(method, template, status);
  if (!schema) {
    if (mustBeDocumented) violations.push(`${method} ${template} ${status}: no documented schema`);
    return;
  }
  const errors = validate(schema, data);
  if (errors.length) violations.push(`${method} ${template} ${status}:\n${formatErrors(errors)}`);
}

/**
 * The OpenAPI template of a request: Octokit passes templates, except for pagination's next links,
 * which name the repository by id (/repositories/{id}/pulls), as GitHub's do.
 */
function templateOf(method: string, url: string, base: string): string | null {
  const raw = url.startsWith(base) ? url.slice(base.length) : url.startsWith("http") ? new URL(url).pathname : url;
  const path = raw.replace(/^\/repositories\/\d+\//, "/repos/{owner}/{repo}/");
  if (path.includes("{")) return path.split("?")[0] ?? path;
  return findTemplate(method, path);
}

function client(twinUrl: string, auth: Record<string, unknown> | string): Octokit {
  const o = new ProbotOctokit({
    auth: typeof auth === "string" ? { token: auth } : auth,
    baseUrl: twinUrl,
    throttle: { enabled: false },
    retry: { enabled: false },
    log: quiet,
  });
  o.hook.after("request", (response, options) => {
    const method = String(options.method);
    const template = templateOf(method, String(options.url), twinUrl);
    if (!template) violations.push(`${method} ${String(options.url)}: not in the OpenAPI description`);
    else checkResponse(method, template, response.status, response.data, true);
  });
  o.hook.error("request", (error, options) => {
    const e = error as { status?: number; response?: { data?: unknown } };
    const method = String(options.method);
    const template = templateOf(method, String(options.url), twinUrl);
    if (template && e.status && e.response) checkResponse(method, template, e.status, e.response.data, false);
    throw error;
  });
  return o;
}

const startReceiver = (secret: string) => startWebhookReceiver(secret, violations);

describe("GitHub twin", () => {
  // These tests drive the API faster than GitHub allows one client to write; the limits are
  // specified on their own below.
  const twin = new GitHubTwin({ limits: false });
  const privateKey = newKey();
  let url = "";
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let installationId = 0;
  let app: Octokit;
  let gh: Octokit;
  let botLogin = "";

  const received = (event: string, action?: string) => receiver.received.filter((r) => r.event === event && (action === undefined || r.action === action));

  /** One commit on a new or existing branch through blobs → trees → commits → refs. */
  async function commitOnBranch(branch: string, files: Record<string, string | null>, message: string, from = "main"): Promise<string> {
    let parent: string;
    let exists = true;
    try {
      parent = (await gh.rest.git.getRef({ owner: OWNER, repo: REPO, ref: `heads/${branch}` })).data.object.sha;
    } catch {
      exists = false;
      parent = (await gh.rest.git.getRef({ owner: OWNER, repo: REPO, ref: `heads/${from}` })).data.object.sha;
    }
    const base = await gh.rest.git.getCommit({ owner: OWNER, repo: REPO, commit_sha: parent });
    const tree: Array<{ path: string; mode: "100644"; type: "blob"; sha: string | null }> = [];
    for (const [path, content] of Object.entries(files)) {
      if (content === null) {
        tree.push({ path, mode: "100644", type: "blob", sha: null });
      } else {
        const blob = await gh.rest.git.createBlob({ owner: OWNER, repo: REPO, content: Buffer.from(content).toString("base64"), encoding: "base64" });
        tree.push({ path, mode: "100644", type: "blob", sha: blob.data.sha });
      }
    }
    const t = await gh.rest.git.createTree({ owner: OWNER, repo: REPO, base_tree: base.data.tree.sha, tree });
    const c = await gh.rest.git.createCommit({ owner: OWNER, repo: REPO, message, tree: t.data.sha, parents: [parent] });
    if (exists) await gh.rest.git.updateRef({ owner: OWNER, repo: REPO, ref: `heads/${branch}`, sha: c.data.sha });
    else await gh.rest.git.createRef({ owner: OWNER, repo: REPO, ref: `refs/heads/${branch}`, sha: c.data.sha });
    return c.data.sha;
  }

  beforeAll(async () => {
    receiver = await startReceiver(SECRET);
    ({ url } = await twin.start());
    ({ botLogin } = twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: receiver.url, slug: "autoresearch" }));
    await twin.createRepo(OWNER, REPO, { "train.py": TRAIN, "program.md": "# Research program\n\nTry the optimizer.\n", "trainer/prepare.py": "DATA = 'brown'\n" });
    await twin.createRepo(OWNER, "secret-notes", { "notes.md": "private\n" }, { private: true });
    installationId = await twin.installApp(OWNER, [REPO]);
    app = client(url, { appId: APP_ID, privateKey });
    gh = client(url, { appId: APP_ID, privateKey, installationId });
    await twin.waitForDeliveries();
  });

  afterEach(() => {
    const found = violations.splice(0);
    expect(found, found.join("\n\n")).toEqual([]);
  });

  afterAll(async () => {
    await twin.stop();
    await new Promise<void>((resolve) => receiver.server.close(() => resolve()));
  });

  it("has a schema validator that really rejects broken responses and payloads", async () => {
    const { data } = await gh.rest.pulls.list({ owner: OWNER, repo: REPO, state: "all" });
    const repo = (await gh.rest.repos.get({ owner: OWNER, repo: REPO })).data as unknown as Record<string, unknown>;
    expect(validateResponse("get", "/repos/{owner}/{repo}", 200, repo)).toEqual([]);

    const missing: Record<string, unknown> = { ...repo };
    delete missing.default_branch;
    const wrongType = { ...repo, private: "no", owner: { ...(repo.owner as object), id: "1" } };
    const badEnum = { ...repo, squash_merge_commit_title: "WHATEVER" };
    const badDate = { ...repo, created_at: "yesterday" };
    const e1 = validateResponse("get", "/repos/{owner}/{repo}", 200, missing);
    expect(e1.map((e) => e.path)).toContain("$.default_branch");
    const e2 = validateResponse("get", "/repos/{owner}/{repo}", 200, wrongType);
    expect(e2.map((e) => e.path)).toEqual(expect.arrayContaining(["$.private", "$.owner.id"]));
    expect(validateResponse("get", "/repos/{owner}/{repo}", 200, badEnum)).not.toEqual([]);
    expect(validateResponse("get", "/repos/{owner}/{repo}", 200, badDate)).not.toEqual([]);
    expect(validateResponse("get", "/repos/{owner}/{repo}/pulls", 200, [{ number: 1 }])).not.toEqual([]);
    expect(data).toEqual([]);

    const [install] = received("installation", "created");
    expect(install).toBeDefined();
    const payload = { ...(install?.payload ?? {}) };
    expect(validateWebhook("installation", payload)).toEqual([]);
    const noSender: Record<string, unknown> = { ...payload };
    delete noSender.sender;
    expect(validateWebhook("installation", noSender).map((e: SchemaError) => e.path)).toContain("$.sender");
    expect(validateWebhook("installation", { ...payload, surprise: 1 })).not.toEqual([]);
    expect(validate(webhookSchema("installation", "created"), { ...payload, action: "deleted" })).not.toEqual([]);
  });

  it("authenticates the app by JWT, issues installation tokens and delivers a signed installation.created", async () => {
    const me = await app.rest.apps.getAuthenticated();
    expect(me.data).toMatchObject({ id: APP_ID, slug: "autoresearch" });
    const installs = await app.rest.apps.listInstallations();
    expect(installs.data.map((i) => i.id)).toEqual([installationId]);
    const inst = await app.rest.apps.getRepoInstallation({ owner: OWNER, repo: REPO });
    expect(inst.data).toMatchObject({ id: installationId, app_id: APP_ID, repository_selection: "selected" });
    const token = await app.rest.apps.createInstallationAccessToken({ installation_id: installationId });
    expect(token.status).toBe(201);
    expect(token.data.token).toMatch(/^ghs_[A-Za-z0-9]{36}$/);
    expect(Date.parse(token.data.expires_at)).toBeGreaterThan(Date.now() + 50 * 60_000);
    expect(token.data.permissions).toMatchObject({ contents: "write", pull_requests: "write", checks: "write" });
    const repos = await gh.rest.apps.listReposAccessibleToInstallation();
    expect(repos.data.repositories.map((r) => r.full_name)).toEqual([`${OWNER}/${REPO}`]);

    const [delivery] = received("installation", "created");
    expect(delivery?.signatureOk).toBe(true);
    expect(delivery?.payload).toMatchObject({ action: "created", installation: { id: installationId, app_id: APP_ID }, sender: { login: OWNER } });
    expect(twin.deliveriesOf("installation")[0]).toMatchObject({ status: 200, state: "delivered" });
  });

  it("rejects bad credentials, foreign JWTs and tokens outside their installation", async () => {
    const bad = client(url, "ghs_000000000000000000000000000000000000");
    await expect(bad.rest.repos.get({ owner: OWNER, repo: REPO })).rejects.toMatchObject({ status: 401, response: { data: { message: "Bad credentials" } } });
    const forged = client(url, { appId: APP_ID, privateKey: newKey() });
    await expect(forged.rest.apps.getAuthenticated()).rejects.toMatchObject({ status: 401 });
    const raw = client(url, await twin.installationToken(installationId));
    await expect(raw.request("GET /app")).rejects.toMatchObject({ status: 401 });
    // The private repository is not part of the installation: GitHub hides it.
    await expect(gh.rest.repos.get({ owner: OWNER, repo: "secret-notes" })).rejects.toMatchObject({ status: 404 });
    await expect(gh.rest.repos.getContent({ owner: OWNER, repo: "secret-notes", path: "notes.md" })).rejects.toMatchObject({ status: 404 });
    // A read-only token scoped down to one repository may read but not write.
    const scoped = await app.rest.apps.createInstallationAccessToken({ installation_id: installationId, repositories: [REPO], permissions: { contents: "read" } });
    expect(scoped.data.repository_selection).toBe("selected");
    const ro = client(url, scoped.data.token);
    expect((await ro.rest.repos.getContent({ owner: OWNER, repo: REPO, path: "train.py" })).status).toBe(200);
    await expect(ro.rest.git.createBlob({ owner: OWNER, repo: REPO, content: "x" })).rejects.toMatchObject({ status: 403 });
    await expect(
      app.rest.apps.createInstallationAccessToken({ installation_id: installationId, permissions: { administration: "write" } }),
    ).rejects.toMatchObject({ status: 422 });
  });

  it("commits through the git data API and moves refs with GitHub's rules", async () => {
    const main0 = (await gh.rest.git.getRef({ owner: OWNER, repo: REPO, ref: "heads/main" })).data.object.sha;
    expect(main0).toBe(await twin.branchSha(OWNER, REPO, "main"));
    const sha = await commitOnBranch("autoresearch/1-lr", { "train.py": TRAIN.replace("LR = 0.04", "LR = 0.05") }, "Raise LR to 0.05");
    expect(await twin.readFile(OWNER, REPO, "autoresearch/1-lr", "train.py")).toContain("LR = 0.05");
    expect(await twin.listFiles(OWNER, REPO, sha)).toEqual(["program.md", "train.py", "trainer/prepare.py"]);

    const gc = await gh.rest.git.getCommit({ owner: OWNER, repo: REPO, commit_sha: sha });
    expect(gc.data).toMatchObject({ sha, message: "Raise LR to 0.05", parents: [{ sha: main0 }], author: { name: botLogin } });
    const commit = await gh.rest.repos.getCommit({ owner: OWNER, repo: REPO, ref: sha });
    expect(commit.data.files?.map((f) => [f.filename, f.status, f.additions, f.deletions])).toEqual([["train.py", "modified", 1, 1]]);
    expect(commit.data.files?.[0]?.patch).toContain("-LR = 0.04\n+LR = 0.05");
    expect(commit.data.author?.login).toBe(botLogin);
    const branch = await gh.rest.repos.getBranch({ owner: OWNER, repo: REPO, branch: "autoresearch/1-lr" });
    expect(branch.data.commit.sha).toBe(sha);
    const tree = await gh.rest.git.getTree({ owner: OWNER, repo: REPO, tree_sha: gc.data.tree.sha, recursive: "1" });
    expect(tree.data.tree.map((e) => `${e.type}:${e.path}`)).toEqual(["blob:program.md", "blob:train.py", "tree:trainer", "blob:trainer/prepare.py"]);

    const file = await gh.rest.repos.getContent({ owner: OWNER, repo: REPO, path: "train.py", ref: "autoresearch/1-lr" });
    if (Array.isArray(file.data) || file.data.type !== "file") throw new Error("expected a file");
    expect(Buffer.from(file.data.content, "base64").toString()).toContain("LR = 0.05");
    expect(file.data.sha).toBe(tree.data.tree.find((e) => e.path === "train.py")?.sha);
    const raw = await gh.rest.repos.getContent({ owner: OWNER, repo: REPO, path: "train.py", ref: sha, mediaType: { format: "raw" } });
    expect(raw.data as unknown).toBe(TRAIN.replace("LR = 0.04", "LR = 0.05"));
    const dir = await gh.rest.repos.getContent({ owner: OWNER, repo: REPO, path: "trainer" });
    expect(Array.isArray(dir.data) && dir.data.map((e) => e.name)).toEqual(["prepare.py"]);
    await expect(gh.rest.repos.getContent({ owner: OWNER, repo: REPO, path: "missing.py" })).rejects.toMatchObject({ status: 404 });
    await expect(gh.rest.repos.getCommit({ owner: OWNER, repo: REPO, ref: "no-such-ref" })).rejects.toMatchObject({ status: 422 });

    // Refs: duplicate create, non-fast-forward without force, force, delete.
    await expect(gh.rest.git.createRef({ owner: OWNER, repo: REPO, ref: "refs/heads/autoresearch/1-lr", sha })).rejects.toMatchObject({
      status: 422,
      response: { data: { message: "Reference already exists" } },
    });
    await expect(gh.rest.git.updateRef({ owner: OWNER, repo: REPO, ref: "heads/autoresearch/1-lr", sha: main0 })).rejects.toMatchObject({ status: 422 });
    const other = await commitOnBranch("scratch", { "train.py": null, "notes/a.md": "a\n" }, "Scratch");
    expect(await twin.listFiles(OWNER, REPO, other)).toEqual(["notes/a.md", "program.md", "trainer/prepare.py"]);
    await expect(gh.rest.git.updateRef({ owner: OWNER, repo: REPO, ref: "heads/scratch", sha })).rejects.toMatchObject({
      status: 422,
      response: { data: { message: "Update is not a fast forward" } },
    });
    await gh.rest.git.updateRef({ owner: OWNER, repo: REPO, ref: "heads/scratch", sha, force: true });
    expect(await twin.branchSha(OWNER, REPO, "scratch")).toBe(sha);
    expect((await gh.rest.git.deleteRef({ owner: OWNER, repo: REPO, ref: "heads/scratch" })).status).toBe(204);
    await expect(gh.rest.git.getRef({ owner: OWNER, repo: REPO, ref: "heads/scratch" })).rejects.toMatchObject({ status: 404 });
    await expect(gh.rest.git.deleteRef({ owner: OWNER, repo: REPO, ref: "heads/scratch" })).rejects.toMatchObject({ status: 422 });

    await twin.waitForDeliveries();
    const pushes = received("push").filter((p) => p.payload.ref === "refs/heads/scratch");
    expect(pushes.map((p) => [p.payload.created, p.payload.deleted, p.payload.forced])).toEqual([
      [true, false, false],
      [false, false, true],
      [false, true, false],
    ]);
    expect((pushes[0]?.payload.head_commit as { removed: string[]; added: string[] }).removed).toEqual(["train.py"]);
    expect(pushes.every((p) => p.signatureOk)).toBe(true);
  });

  it("pushes like a human and reports added, modified and removed files", async () => {
    const before = await twin.branchSha(OWNER, REPO, "main");
    const sha = await twin.pushCommit(OWNER, REPO, "main", { "program.md": "# Research program\n\nFocus on the optimizer tonight.\n", "README.md": "hi\n" }, "Tonight: optimizer", {
      user: "carol",
    });
    const log = await twin.log(OWNER, REPO, "main", 2);
    expect(log.map((c) => c.sha)).toEqual([sha, before]);
    expect(log[0]?.message).toBe("Tonight: optimizer");
    await twin.waitForDeliveries();
    const push = received("push").find((p) => p.payload.after === sha);
    expect(push?.payload).toMatchObject({ ref: "refs/heads/main", before, forced: false, sender: { login: "carol" }, head_commit: { id: sha, added: ["README.md"], modified: ["program.md"], removed: [] } });
  });

  it("opens pull requests with GitHub's validation and paginates them with Link headers", async () => {
    const head = await twin.branchSha(OWNER, REPO, "autoresearch/1-lr");
    const pr = await gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "autoresearch/1-lr", base: "main", title: "Raise LR", body: "Hypothesis: faster." });
    expect(pr.status).toBe(201);
    expect(pr.data).toMatchObject({ state: "open", merged: false, head: { ref: "autoresearch/1-lr", sha: head }, base: { ref: "main" }, user: { login: botLogin, type: "Bot" } });
    await expect(gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "autoresearch/1-lr", base: "main", title: "again" })).rejects.toMatchObject({
      status: 422,
      response: { data: { message: "Validation Failed", errors: [{ message: `A pull request already exists for ${OWNER}:autoresearch/1-lr.` }] } },
    });
    await gh.rest.git.createRef({ owner: OWNER, repo: REPO, ref: "refs/heads/empty", sha: (await twin.branchSha(OWNER, REPO, "main")) ?? "" });
    await expect(gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "empty", base: "main", title: "nothing" })).rejects.toMatchObject({
      status: 422,
      response: { data: { errors: [{ message: "No commits between main and empty" }] } },
    });
    await expect(gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "nope", base: "main", title: "x" })).rejects.toMatchObject({ status: 422 });

    const got = await gh.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: pr.data.number });
    expect(got.data).toMatchObject({ mergeable: true, mergeable_state: "clean", commits: 1, additions: 1, deletions: 1, changed_files: 1 });
    const diff = await gh.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: pr.data.number, mediaType: { format: "diff" } });
    expect(diff.data as unknown).toMatch(/^diff --git a\/train.py b\/train.py\n[\s\S]*-LR = 0.04\n\+LR = 0.05\n/);
    const files = await gh.rest.pulls.listFiles({ owner: OWNER, repo: REPO, pull_number: pr.data.number });
    expect(files.data.map((f) => f.filename)).toEqual(["train.py"]);
    const commits = await gh.rest.pulls.listCommits({ owner: OWNER, repo: REPO, pull_number: pr.data.number });
    expect(commits.data.map((c) => c.commit.message)).toEqual(["Raise LR to 0.05"]);

    const edited = await gh.rest.pulls.update({ owner: OWNER, repo: REPO, pull_number: pr.data.number, body: "Hypothesis: faster convergence." });
    expect(edited.data.body).toBe("Hypothesis: faster convergence.");

    // Several experiment PRs, listed page by page.
    for (let i = 2; i <= 8; i++) {
      await commitOnBranch(`autoresearch/${i}-depth`, { "train.py": TRAIN.replace("DEPTH = 8", `DEPTH = ${i + 8}`) }, `Depth ${i + 8}`);
      await gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: `autoresearch/${i}-depth`, base: "main", title: `Depth ${i + 8}` });
    }
    const first = await gh.rest.pulls.list({ owner: OWNER, repo: REPO, per_page: 3 });
    expect(first.data).toHaveLength(3);
    expect(first.headers.link).toMatch(/rel="next"/);
    expect(first.headers.link).toMatch(/page=3[^>]*>; rel="last"/);
    const all = await gh.paginate(gh.rest.pulls.list, { owner: OWNER, repo: REPO, state: "all", per_page: 3 });
    expect(all.map((p) => p.number)).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
    const asc = await gh.paginate(gh.rest.pulls.list, { owner: OWNER, repo: REPO, per_page: 4, direction: "asc" });
    expect(asc.map((p) => p.number)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const byHead = await gh.rest.pulls.list({ owner: OWNER, repo: REPO, head: `${OWNER}:autoresearch/3-depth` });
    expect(byHead.data.map((p) => p.number)).toEqual([3]);

    await twin.waitForDeliveries();
    const opened = received("pull_request", "opened");
    expect(opened.map((d) => d.payload.number)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(received("pull_request", "edited")[0]?.payload.changes).toEqual({ body: { from: "Hypothesis: faster." } });
  });

  it("labels pull requests and lists them through the issues API", async () => {
    const labels = await gh.rest.issues.listLabelsForRepo({ owner: OWNER, repo: REPO, per_page: 100 });
    expect(labels.data.map((l) => l.name)).toContain("enhancement");
    const created = await gh.rest.issues.createLabel({ owner: OWNER, repo: REPO, name: "autoresearch", color: "5319e7", description: "Experiment" });
    expect(created.status).toBe(201);
    await expect(gh.rest.issues.createLabel({ owner: OWNER, repo: REPO, name: "autoresearch" })).rejects.toMatchObject({ status: 422 });
    for (const n of [1, 2, 3, 4]) await gh.rest.issues.addLabels({ owner: OWNER, repo: REPO, issue_number: n, labels: ["autoresearch"] });
    const added = await gh.rest.issues.addLabels({ owner: OWNER, repo: REPO, issue_number: 1, labels: ["experiment:running"] });
    expect(added.data.map((l) => l.name)).toEqual(["autoresearch", "experiment:running"]);
    const set = await gh.rest.issues.setLabels({ owner: OWNER, repo: REPO, issue_number: 1, labels: ["autoresearch", "experiment:queued"] });
    expect(set.data.map((l) => l.name)).toEqual(["autoresearch", "experiment:queued"]);
    const removed = await gh.rest.issues.removeLabel({ owner: OWNER, repo: REPO, issue_number: 1, name: "experiment:queued" });
    expect(removed.data.map((l) => l.name)).toEqual(["autoresearch"]);
    await expect(gh.rest.issues.removeLabel({ owner: OWNER, repo: REPO, issue_number: 1, name: "nope" })).rejects.toMatchObject({ status: 404 });
    expect(twin.labels(OWNER, REPO, 1)).toEqual(["autoresearch"]);

    const issue = await twin.createIssue(OWNER, REPO, "carol", "Nightly report", "", ["autoresearch"]);
    const page = await gh.paginate(gh.rest.issues.listForRepo, { owner: OWNER, repo: REPO, labels: "autoresearch", state: "all", per_page: 2 });
    expect(page.map((i) => [i.number, Boolean(i.pull_request)])).toEqual([
      [issue, false],
      [4, true],
      [3, true],
      [2, true],
      [1, true],
    ]);
    const one = await gh.rest.issues.get({ owner: OWNER, repo: REPO, issue_number: 1 });
    expect(one.data.pull_request?.url).toMatch(/\/pulls\/1$/);

    await twin.waitForDeliveries();
    const labeled = received("pull_request", "labeled").filter((d) => d.payload.number === 1);
    expect(labeled.map((d) => (d.payload.label as { name: string }).name)).toEqual(["autoresearch", "experiment:running", "experiment:queued"]);
    expect(received("pull_request", "unlabeled").map((d) => (d.payload.label as { name: string }).name)).toEqual(["experiment:running", "experiment:queued"]);
    expect(received("issues", "opened")).toHaveLength(1);
  });

  it("keeps comments, reactions and collaborator permissions", async () => {
    const c = await gh.rest.issues.createComment({ owner: OWNER, repo: REPO, issue_number: 1, body: "Queued on the local runner." });
    expect(c.status).toBe(201);
    expect(c.data.performed_via_github_app?.id).toBe(APP_ID);
    const upd = await gh.rest.issues.updateComment({ owner: OWNER, repo: REPO, comment_id: c.data.id, body: "Running." });
    expect(upd.data.body).toBe("Running.");
    const human = await twin.postComment(OWNER, REPO, 1, "bob", "Try it with the old LR.");
    const r1 = await gh.rest.reactions.createForIssueComment({ owner: OWNER, repo: REPO, comment_id: human, content: "eyes" });
    const r2 = await gh.rest.reactions.createForIssueComment({ owner: OWNER, repo: REPO, comment_id: human, content: "eyes" });
    expect([r1.status, r2.status]).toEqual([201, 200]);
    expect(twin.reactions(OWNER, REPO, human)).toEqual([{ user: botLogin, content: "eyes" }]);
    const list = await gh.rest.issues.listComments({ owner: OWNER, repo: REPO, issue_number: 1 });
    expect(list.data.map((x) => [x.user?.login, x.body, x.reactions?.eyes])).toEqual([
      [botLogin, "Running.", 0],
      ["bob", "Try it with the old LR.", 1],
    ]);

    twin.setPermission(OWNER, REPO, "bob", "write");
    twin.user("mallory");
    const perm = async (username: string) => (await gh.rest.repos.getCollaboratorPermissionLevel({ owner: OWNER, repo: REPO, username })).data;
    expect(await perm("bob")).toMatchObject({ permission: "write", role_name: "write", user: { login: "bob" } });
    expect(await perm(OWNER)).toMatchObject({ permission: "admin" });
    expect(await perm("mallory")).toMatchObject({ permission: "read" });
    twin.setPermission(OWNER, REPO, "mallory", "none");
    expect(await perm("mallory")).toMatchObject({ permission: "none" });
    await expect(perm("nobody-at-all")).rejects.toMatchObject({ status: 404 });

    await twin.waitForDeliveries();
    const created = received("issue_comment", "created");
    expect(created.map((d) => (d.payload.sender as { login: string }).login)).toEqual([botLogin, "bob"]);
    expect(created[1]?.payload).toMatchObject({ issue: { number: 1, pull_request: {} }, comment: { body: "Try it with the old LR.", author_association: "NONE" } });
    expect(received("issue_comment", "edited")[0]?.payload.changes).toEqual({ body: { from: "Queued on the local runner." } });

    // Review comments on the diff: their own listing and event.
    await twin.postReviewComment(OWNER, REPO, 1, "bob", "This line halves the warmup.", "train.py", 2);
    const reviews = await gh.rest.pulls.listReviewCommentsForRepo({ owner: OWNER, repo: REPO, since: "2000-01-01T00:00:00Z" });
    expect(reviews.data.map((x) => [x.user?.login, x.path, x.line, x.body])).toEqual([["bob", "train.py", 2, "This line halves the warmup."]]);
    expect(reviews.data[0]!.pull_request_url).toMatch(/\/pulls\/1$/);
    await twin.waitForDeliveries();
    expect(received("pull_request_review_comment", "created")[0]?.payload).toMatchObject({ comment: { path: "train.py" }, pull_request: { number: 1 } });
  });

  it("creates, updates and lists check runs and delivers their events", async () => {
    const sha = (await twin.branchSha(OWNER, REPO, "autoresearch/1-lr")) ?? "";
    const run = await gh.rest.checks.create({ owner: OWNER, repo: REPO, name: "val_bpb", head_sha: sha, status: "in_progress", external_id: "run-1-a1" });
    expect(run.data).toMatchObject({ status: "in_progress", conclusion: null, external_id: "run-1-a1", app: { id: APP_ID }, pull_requests: [{ number: 1 }] });
    await expect(gh.rest.checks.create({ owner: OWNER, repo: REPO, name: "x", head_sha: "0".repeat(40) })).rejects.toMatchObject({ status: 422 });
    const done = await gh.rest.checks.update({
      owner: OWNER,
      repo: REPO,
      check_run_id: run.data.id,
      conclusion: "success",
      output: { title: "val_bpb 0.9979 (−0.0021)", summary: "Improved on the baseline.", text: "```\nval_bpb: 0.997900\n```" },
      actions: [{ label: "Rerun", description: "Measure this commit again", identifier: "rerun" }],
    });
    expect(done.data).toMatchObject({ status: "completed", conclusion: "success", output: { title: "val_bpb 0.9979 (−0.0021)" } });
    expect(done.data.completed_at).toMatch(/Z$/);
    await gh.rest.checks.create({ owner: OWNER, repo: REPO, name: "val_bpb", head_sha: sha, conclusion: "failure", output: { title: "rerun", summary: "worse" } });
    await gh.rest.checks.create({ owner: OWNER, repo: REPO, name: "lint", head_sha: sha, status: "queued" });

    const latest = await gh.rest.checks.listForRef({ owner: OWNER, repo: REPO, ref: sha, check_name: "val_bpb" });
    expect(latest.data.total_count).toBe(1);
    expect(latest.data.check_runs[0]?.conclusion).toBe("failure");
    const allRuns = await gh.rest.checks.listForRef({ owner: OWNER, repo: REPO, ref: "autoresearch/1-lr", filter: "all", per_page: 2 });
    expect(allRuns.data.total_count).toBe(3);
    expect(allRuns.data.check_runs).toHaveLength(2);
    expect(allRuns.headers.link).toMatch(/rel="next"/);
    const one = await gh.rest.checks.get({ owner: OWNER, repo: REPO, check_run_id: run.data.id });
    expect(one.data.output.summary).toBe("Improved on the baseline.");

    await twin.clickCheckRunAction(run.data.id, "rerun", { user: "bob" });
    await twin.waitForDeliveries();
    expect(received("check_run", "created")).toHaveLength(3);
    expect(received("check_run", "completed").map((d) => (d.payload.check_run as { conclusion: string }).conclusion)).toEqual(["success", "failure"]);
    const action = received("check_run", "requested_action")[0];
    expect(action?.payload).toMatchObject({ requested_action: { identifier: "rerun" }, sender: { login: "bob" }, check_run: { id: run.data.id } });
    expect(twin.checkRuns(OWNER, REPO, { headSha: sha, name: "val_bpb" }).map((r) => r.conclusion)).toEqual(["success", "failure"]);
  });

  it("squash-merges with the head SHA guard, refuses conflicts and merges cleanly after the base moved", async () => {
    // The head moved after measurement: 409.
    const measured = (await twin.branchSha(OWNER, REPO, "autoresearch/2-depth")) ?? "";
    await twin.pushCommit(OWNER, REPO, "autoresearch/2-depth", { "notes.md": "late edit\n" }, "Late edit", { user: "bob" });
    await expect(gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 2, merge_method: "squash", sha: measured })).rejects.toMatchObject({
      status: 409,
      response: { data: { message: "Head branch was modified. Review and try the merge again." } },
    });
    await twin.waitForDeliveries();
    expect(received("pull_request", "synchronize").map((d) => [d.payload.number, d.payload.before])).toEqual([[2, measured]]);

    // A clean squash: one new commit on main, parent = old main, the PR's change applied.
    const main0 = (await twin.branchSha(OWNER, REPO, "main")) ?? "";
    const head1 = (await twin.branchSha(OWNER, REPO, "autoresearch/1-lr")) ?? "";
    const merged = await gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1, merge_method: "squash", sha: head1, commit_title: "Raise LR (#1)", commit_message: "val_bpb 0.9979" });
    expect(merged.data).toMatchObject({ merged: true, message: "Pull Request successfully merged" });
    const log = await twin.log(OWNER, REPO, "main", 2);
    expect(log[0]).toMatchObject({ sha: merged.data.sha, parents: [main0], message: "Raise LR (#1)\n\nval_bpb 0.9979" });
    // main had moved (the human's program.md push) — both changes are in the merged tree.
    expect(await twin.readFile(OWNER, REPO, "main", "train.py")).toContain("LR = 0.05");
    expect(await twin.readFile(OWNER, REPO, "main", "program.md")).toContain("optimizer tonight");
    const after = await gh.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 1 });
    expect(after.data).toMatchObject({ state: "closed", merged: true, merge_commit_sha: merged.data.sha, merged_by: { login: botLogin } });
    expect(twin.pull(OWNER, REPO, 1)).toMatchObject({ merged: true, mergeCommitSha: merged.data.sha });
    await expect(gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 1 })).rejects.toMatchObject({ status: 405 });

    // PR 3 changed the same line as PR 2; after 2 lands, 3 conflicts: 405 and mergeable false.
    await gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 2, merge_method: "squash" });
    const p3 = await gh.rest.pulls.get({ owner: OWNER, repo: REPO, pull_number: 3 });
    expect(p3.data).toMatchObject({ mergeable: false, mergeable_state: "dirty" });
    await expect(gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: 3, merge_method: "squash", sha: p3.data.head.sha })).rejects.toMatchObject({
      status: 405,
      response: { data: { message: "Pull Request is not mergeable" } },
    });
    expect((await twin.log(OWNER, REPO, "main", 10)).filter((c) => c.parents.length > 1)).toEqual([]);

    // Closing without merging, reopening, and a reopen refused once the head branch is gone.
    const closed = await gh.rest.pulls.update({ owner: OWNER, repo: REPO, pull_number: 3, state: "closed" });
    expect(closed.data).toMatchObject({ state: "closed", merged: false });
    const reopened = await gh.rest.pulls.update({ owner: OWNER, repo: REPO, pull_number: 3, state: "open" });
    expect(reopened.data).toMatchObject({ state: "open", closed_at: null });
    await gh.rest.git.deleteRef({ owner: OWNER, repo: REPO, ref: "heads/autoresearch/3-depth" });
    expect(twin.pull(OWNER, REPO, 3)).toMatchObject({ state: "closed", merged: false });
    await expect(gh.rest.pulls.update({ owner: OWNER, repo: REPO, pull_number: 3, state: "open" })).rejects.toMatchObject({ status: 422 });

    // A pull request whose head lands on its base by a push is marked merged, as on GitHub.
    const ffHead = await commitOnBranch("ff", { "NOTES.md": "fast-forward\n" }, "Notes");
    const ff = await gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "ff", base: "main", title: "Notes" });
    await twin.setBranch(OWNER, REPO, "main", ffHead, { user: "carol" });
    expect(twin.pull(OWNER, REPO, ff.data.number)).toMatchObject({ state: "closed", merged: true, mergeCommitSha: ffHead, mergedBy: "carol" });

    await twin.waitForDeliveries();
    const closedEvents = received("pull_request", "closed");
    expect(closedEvents.map((d) => [d.payload.number, (d.payload.pull_request as { merged: boolean }).merged])).toEqual([
      [1, true],
      [2, true],
      [3, false],
      [3, false],
      [ff.data.number, true],
    ]);
    expect(received("pull_request", "reopened").map((d) => d.payload.number)).toEqual([3]);
    const mainPush = received("push").find((d) => d.payload.after === merged.data.sha);
    expect(mainPush?.payload).toMatchObject({ ref: "refs/heads/main", before: main0, forced: false, commits: [{ id: merged.data.sha, modified: ["train.py"] }] });
  });

  it("writes files through the contents API and merges with the merge and rebase methods", async () => {
    const created = await gh.rest.repos.createOrUpdateFileContents({
      owner: OWNER,
      repo: REPO,
      path: "results/results.tsv",
      message: "Add results",
      content: Buffer.from("commit\tval_bpb\n").toString("base64"),
    });
    expect(created.status).toBe(201);
    const blobSha = created.data.content?.sha ?? "";
    await expect(
      gh.rest.repos.createOrUpdateFileContents({ owner: OWNER, repo: REPO, path: "results/results.tsv", message: "x", content: "eA==" }),
    ).rejects.toMatchObject({ status: 422 });
    await expect(
      gh.rest.repos.createOrUpdateFileContents({ owner: OWNER, repo: REPO, path: "results/results.tsv", message: "x", content: "eA==", sha: "0".repeat(40) }),
    ).rejects.toMatchObject({ status: 409 });
    const updated = await gh.rest.repos.createOrUpdateFileContents({
      owner: OWNER,
      repo: REPO,
      path: "results/results.tsv",
      message: "Append a result",
      content: Buffer.from("commit\tval_bpb\nabc1234\t0.997900\n").toString("base64"),
      sha: blobSha,
    });
    expect(updated.status).toBe(200);
    expect(await twin.readFile(OWNER, REPO, "main", "results/results.tsv")).toBe("commit\tval_bpb\nabc1234\t0.997900\n");
    const history = await gh.rest.repos.listCommits({ owner: OWNER, repo: REPO, path: "results/results.tsv" });
    expect(history.data.map((c) => c.commit.message)).toEqual(["Append a result", "Add results"]);
    const branches = await gh.paginate(gh.rest.repos.listBranches, { owner: OWNER, repo: REPO, per_page: 5 });
    expect(branches.map((b) => b.name)).toContain("main");
    const refs = await gh.rest.git.listMatchingRefs({ owner: OWNER, repo: REPO, ref: "heads/autoresearch/" });
    expect(refs.data.every((r) => r.ref.startsWith("refs/heads/autoresearch/"))).toBe(true);

    // merge: a two-parent commit; rebase: the PR's commits replayed one by one on the base.
    await commitOnBranch("m-merge", { "merge.txt": "m\n" }, "Merge me");
    const pm = await gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "m-merge", base: "main", title: "Merge me" });
    const headM = (await twin.branchSha(OWNER, REPO, "m-merge")) ?? "";
    const mainM = (await twin.branchSha(OWNER, REPO, "main")) ?? "";
    const mm = await gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: pm.data.number, merge_method: "merge" });
    expect((await twin.log(OWNER, REPO, "main", 1))[0]).toMatchObject({ sha: mm.data.sha, parents: [mainM, headM] });
    await commitOnBranch("m-rebase", { "r1.txt": "1\n" }, "First");
    await commitOnBranch("m-rebase", { "r2.txt": "2\n", "train.py": TRAIN.replace("BATCH = 64", "BATCH = 32") }, "Second");
    await twin.pushCommit(OWNER, REPO, "main", { "program.md": "# Moved\n" }, "Move main", { user: "carol" });
    const pr = await gh.rest.pulls.create({ owner: OWNER, repo: REPO, head: "m-rebase", base: "main", title: "Rebase me" });
    const rm = await gh.rest.pulls.merge({ owner: OWNER, repo: REPO, pull_number: pr.data.number, merge_method: "rebase" });
    const top = await twin.log(OWNER, REPO, "main", 3);
    expect(top.map((c) => [c.message, c.parents.length])).toEqual([
      ["Second", 1],
      ["First", 1],
      ["Move main", 1],
    ]);
    expect(top[0]?.sha).toBe(rm.data.sha);
    expect(await twin.readFile(OWNER, REPO, "main", "train.py")).toContain("BATCH = 32");
    expect(await twin.readFile(OWNER, REPO, "main", "program.md")).toBe("# Moved\n");
  });

  it("redirects tarball downloads to an archive of the exact commit", async () => {
    const sha = (await twin.branchSha(OWNER, REPO, "main")) ?? "";
    const res = await gh.rest.repos.downloadTarballArchive({ owner: OWNER, repo: REPO, ref: "main" });
    expect(res.status).toBe(200);
    const dir = mkdtempSync(join(tmpdir(), "twin-tarball-"));
    try {
      writeFileSync(join(dir, "repo.tar.gz"), Buffer.from(res.data as ArrayBuffer));
      execFileSync("tar", ["-xzf", "repo.tar.gz"], { cwd: dir });
      const root = `${OWNER}-${REPO}-${sha.slice(0, 7)}`;
      expect(readFileSync(join(dir, root, "train.py"), "utf8")).toBe(await twin.readFile(OWNER, REPO, sha, "train.py"));
      expect(readFileSync(join(dir, root, "results", "results.tsv"), "utf8")).toContain("0.997900");
      expect(readFileSync(join(dir, root, "trainer", "prepare.py"), "utf8")).toBe("DATA = 'brown'\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // The redirect itself, and the archive URL refusing callers without a grant (private repo).
    const token = await twin.installationToken(installationId);
    const redirect = await fetch(`${url}/repos/${OWNER}/${REPO}/tarball/main`, { headers: { authorization: `token ${token}` }, redirect: "manual" });
    expect(redirect.status).toBe(302);
    // GitHub's location names the ref as asked, qualified; a public repository's has no token.
    expect(redirect.headers.get("location")).toMatch(/\/legacy\.tar\.gz\/refs\/heads\/main$/);
    const denied = await fetch(`${new URL(url).origin}/_codeload/${OWNER}/secret-notes/legacy.tar.gz/main`);
    expect(denied.status).toBe(404);
  });

  it("logs every API request with its route, auth kind and read/write class", async () => {
    expect(checkedResponses).toBeGreaterThan(150);
    // waitForIdle gives the caller's asynchronous work the whole quiet period to start: a request
    // sent only after it was called (as a bot answering a webhook would) is waited for. (Ignoring
    // the quiet period, it returns before the request arrives.)
    const before = twin.requests.length;
    const idle = twin.waitForIdle(1_000);
    await new Promise((resolve) => setImmediate(resolve));
    const late = gh.rest.repos.get({ owner: OWNER, repo: REPO });
    await idle;
    expect(twin.requests.slice(before).map((r) => r.route)).toEqual(["GET /repos/{owner}/{repo}"]);
    await late;
    const stats = twin.requestStats((r) => r.auth === "installation");
    expect(stats.total).toBe(stats.reads + stats.writes);
    expect(stats.byRoute["POST /repos/{owner}/{repo}/pulls"]).toBeGreaterThanOrEqual(9);
    expect(stats.byRoute["PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge"]).toBeGreaterThanOrEqual(3);
    expect(twin.requests.some((r) => r.auth === "app" && r.route === "POST /app/installations/{installation_id}/access_tokens")).toBe(true);
    expect(twin.requests.some((r) => r.auth === "invalid" && r.status === 401)).toBe(true);
  });

  it("accepts personal access tokens and can record webhooks without delivering them", async () => {
    const quietTwin = new GitHubTwin({ deliveries: false, personalTokens: { "ghp_carol": "carol" } });
    const base = (await quietTwin.start()).url;
    try {
      quietTwin.createApp({ appId: 7, privateKey, webhookSecret: "s", webhookUrl: receiver.url });
      await quietTwin.createRepo("carol", "sandbox", { "a.txt": "a\n" }, { private: true });
      await quietTwin.installApp("carol", "all");
      const pat = client(base, "ghp_carol");
      const issue = await pat.rest.issues.create({ owner: "carol", repo: "sandbox", title: "From a PAT" });
      expect(issue.data.user?.login).toBe("carol");
      expect(issue.data.performed_via_github_app).toBeNull();
      const stranger = client(base, "ghp_unknown");
      await expect(stranger.rest.repos.get({ owner: "carol", repo: "sandbox" })).rejects.toMatchObject({ status: 401 });
      const anonymous = new ProbotOctokit({ baseUrl: base, log: quiet, throttle: { enabled: false }, retry: { enabled: false } });
      await expect(anonymous.rest.repos.get({ owner: "carol", repo: "sandbox" })).rejects.toMatchObject({ status: 404 });
      await quietTwin.waitForDeliveries();
      expect(quietTwin.deliveries.map((d) => [d.event, d.action, d.state])).toEqual([
        ["installation", "created", "skipped"],
        ["issues", "opened", "skipped"],
      ]);
      expect(validateWebhook("issues", quietTwin.deliveries[1]?.payload ?? {})).toEqual([]);
      expect(receiver.received.some((r) => (r.payload.repository as { name?: string } | undefined)?.name === "sandbox")).toBe(false);
    } finally {
      await quietTwin.stop();
    }
  });

  it("drives a real Probot app: signed webhooks in, installation-authenticated API calls out", async () => {
    const key = newKey();
    const probotId = 5151;
    const probot = new Probot({ appId: probotId, privateKey: key, secret: "probot-secret", baseUrl: url, logLevel: "fatal" });
    const handled: string[] = [];
    const middleware = await createNodeMiddleware(
      (a: Probot) => {
        a.onAny(async (context) => {
          handled.push(`${context.name}.${String((context.payload as { action?: string }).action)}`);
        });
        a.on("issue_comment.created", async (context) => {
          if (context.isBot) return;
          const perm = await context.octokit.rest.repos.getCollaboratorPermissionLevel(context.repo({ username: context.payload.comment.user?.login ?? "" }));
          const config = await context.config<{ greeting?: string }>("echo.yml", { greeting: "hi" });
          await context.octokit.rest.issues.createComment(context.issue({ body: `${config?.greeting ?? "?"} (${perm.data.permission}): ${context.payload.comment.body}` }));
        });
      },
      { probot },
    );
    const server = createServer((req, res) => {
      void middleware(req, res, () => res.writeHead(404).end());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      twin.createApp({ appId: probotId, privateKey: key, webhookSecret: "probot-secret", webhookUrl: `http://127.0.0.1:${port}/api/github/webhooks`, slug: "echo" });
      await twin.createRepo(OWNER, "echo-room", { "README.md": "echo\n", ".github/echo.yml": "greeting: echo\n" });
      await twin.installApp(OWNER, ["echo-room"], { appId: probotId });
      const issue = await twin.createIssue(OWNER, "echo-room", "bob", "Say something");
      await twin.postComment(OWNER, "echo-room", issue, "bob", "hello");
      await twin.waitForIdle(150);
      expect(twin.comments(OWNER, "echo-room", issue).map((c) => [c.user, c.body])).toEqual([
        ["bob", "hello"],
        ["echo[bot]", "echo (read): hello"],
      ]);
      expect(handled).toEqual(["installation.created", "issues.opened", "issue_comment.created", "issue_comment.created"]);
      const mine = twin.deliveries.filter((d) => d.appId === probotId);
      expect(mine.map((d) => d.status)).toEqual([200, 200, 200, 200]);
      // The first app is not installed on echo-room and heard nothing of it.
      expect(receiver.received.some((r) => (r.payload.repository as { name?: string } | undefined)?.name === "echo-room")).toBe(false);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("GitHub twin: rate limits", () => {
  // The twins' clock, moved by hand: windows, resets and retry-after are exact, and a storm ends
  // when the clock passes it, without waiting for it.
  const T = Date.parse("2025-03-01T12:00:00Z");
  let clock = T;
  const now = () => new Date(clock);
  beforeEach(() => {
    clock = T;
  });
  // Reads and writes of one repository (dave's), with a personal token.
  const call = (url: string, method: string, token = "ghp_dave") =>
    fetch(`${url}/repos/dave/notes/issues`, { method, headers: { authorization: `token ${token}`, "content-type": "application/json" }, body: method === "GET" ? undefined : JSON.stringify({ title: "a note" }) });
  const start = async (twin: GitHubTwin) => {
    const started = await twin.start();
    twin.user("dave");
    await twin.createRepo("dave", "notes", { "README.md": "notes\n" });
    return started;
  };

  it("announces the primary limit on every answer and refuses past it with remaining 0 and the reset", async () => {
    const twin = new GitHubTwin({ now, personalTokens: { ghp_dave: "dave" }, limits: { primaryPerHour: 3 } });
    const { url } = await start(twin);
    try {
      const answers = [];
      for (let i = 0; i < 4; i++) answers.push(await call(url, "GET"));
      expect(answers.slice(0, 3).map((r) => r.headers.get("x-ratelimit-remaining"))).toEqual(["2", "1", "0"]);
      expect(answers[0]!.headers.get("x-ratelimit-limit")).toBe("3");
      const refused = answers[3]!;
      expect(refused.status).toBe(403);
      expect(refused.headers.get("x-ratelimit-remaining")).toBe("0");
      expect(Number(refused.headers.get("x-ratelimit-reset"))).toBe((T + 3600_000) / 1000); // an hour after the window opened
      expect(((await refused.json()) as { message: string }).message).toMatch(/API rate limit exceeded/);
      expect(twin.limiter!.events.map((e) => e.kind)).toEqual(["primary"]);
    } finally {
      await twin.stop();
    }
  });

  it("refuses content-generating requests past the minute's allowance, 403 or 429, with and without retry-after", async () => {
    for (const [status, retryAfter] of [[403, true], [429, false]] as const) {
      const twin = new GitHubTwin({ now, personalTokens: { ghp_dave: "dave", ghp_erin: "erin" }, limits: { writesPerMinute: 2, secondaryStatus: status, retryAfter } });
      const { url } = await start(twin);
      try {
        expect((await call(url, "POST")).status).toBe(201);
        expect((await call(url, "POST")).status).toBe(201);
        expect((await call(url, "GET")).status).toBe(200); // reads are not content
        const refused = await call(url, "POST");
        expect(refused.status).toBe(status);
        expect(((await refused.json()) as { message: string }).message).toMatch(/secondary rate limit/);
        if (retryAfter) expect(refused.headers.get("retry-after")).toBe("60"); // the first write leaves the minute then
        else expect(refused.headers.get("retry-after")).toBeNull();
        await call(url, "POST", "ghp_erin"); // another identity has its own allowance: not refused by the limits
        expect(twin.limiter!.events).toMatchObject([{ identity: "user:dave", kind: "secondary", status, retryAfter: retryAfter ? expect.any(Number) : null }]);
      } finally {
        await twin.stop();
      }
    }
  });

  it("answers every request with the secondary limit during an injected storm, then serves again", async () => {
    const twin = new GitHubTwin({ now, personalTokens: { ghp_dave: "dave" } });
    const { url } = await start(twin);
    try {
      twin.limiter!.storm({ durationMs: 1500, status: 429 });
      const refused = await call(url, "GET");
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("2"); // the seconds left of the storm, rounded up
      clock += 1499;
      const last = await call(url, "GET");
      expect([last.status, last.headers.get("retry-after")]).toEqual([429, "1"]);
      clock += 1;
      expect((await call(url, "GET")).status).toBe(200);
    } finally {
      await twin.stop();
    }
  });

  it("refuses a request past the concurrency limit", async () => {
    const twin = new GitHubTwin({ personalTokens: { ghp_dave: "dave" }, limits: { concurrent: 2 } });
    const { url } = await start(twin);
    try {
      // Two requests held in flight (as a slow download would), then a third one.
      twin.limiter!.enter();
      twin.limiter!.enter();
      expect((await call(url, "GET")).status).toBe(403);
      twin.limiter!.done();
      twin.limiter!.done();
      expect((await call(url, "GET")).status).toBe(200);
      expect(twin.limiter!.events.map((e) => e.kind)).toEqual(["concurrent"]);
    } finally {
      await twin.stop();
    }
  });
});

// The GitHub twin's git over smart HTTP, driven by the real git CLI: fetches by SHA into shallow
// partial clones, pushes that create, force-move and delete branches (and what GitHub raises for
// them: push webhooks, pull requests synchronized, closed or merged), GitHub's credentials and
// refusals, and the request log that tells git apart from the API and its rate limits.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ProbotOctokit } from "probot";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startWebhookReceiver } from "../support/webhook-receiver.js";
import { newAppKey } from "../../twins/bot.js";
import { GitHubTwin, type Fault } from "../../twins/github/index.js";
import { GitRepo, gitSpawnCount, runGit, type GitIdentity } from "../../twins/github/git.js";
import { httpBackend, pushCommands, type BackendRequest } from "../../twins/github/smart-http.js";

const OWNER = "alice";
const REPO = "research";
const SECRET = "git-http-secret";
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };


const startReceiver = () => startWebhookReceiver(SECRET);

interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

const scratch = mkdtempSync(join(tmpdir(), "git-http-test-"));

/**
 * Runs the git CLI asynchronously (the twin answers in this process), with no user or system
 * configuration and no credential prompts.
 */
function git(cwd: string, args: string[]): Promise<GitResult> {
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: scratch,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_ASKPASS: "",
    GIT_AUTHOR_NAME: "Researcher",
    GIT_AUTHOR_EMAIL: "researcher@example.com",
    GIT_COMMITTER_NAME: "Researcher",
    GIT_COMMITTER_EMAIL: "researcher@example.com",
    LC_ALL: "C",
  };
  return new Promise((resolve) => {
    execFile("git", args, { cwd, env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function gitOk(cwd: string, args: string[]): Promise<string> {
  const r = await git(cwd, args);
  if (r.code !== 0) throw new Error(`git ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

/** `-c http.extraHeader=Authorization: ...` for a token, as Basic (x-access-token) or Bearer. */
function authArgs(token: string, scheme: "basic" | "bearer" = "basic"): string[] {
  const value = scheme === "basic" ? `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}` : `Bearer ${token}`;
  return ["-c", `http.extraHeader=Authorization: ${value}`];
}

let dirs = 0;
const newDir = (): string => join(scratch, `w${++dirs}`);

describe("GitHub twin: git over smart HTTP", () => {
  /** What the twin answers the next pushes with (nothing: it serves them). */
  let pushFault: Fault | undefined;
  // One API write a minute: the pushes below must not use it up (git is not the API).
  const twin = new GitHubTwin({
    limits: { writesPerMinute: 1 },
    faults: (r) => (r.git && r.route === "GIT receive-pack {owner}/{repo}" ? pushFault : undefined),
  });
  let origin = "";
  let api = "";
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let installationId = 0;
  let token = "";
  let botLogin = "";
  let repoUrl = "";

  const received = (event: string, action?: string) => receiver.received.filter((r) => r.event === event && (action === undefined || r.action === action));

  /** A full clone of the repository, authenticated, ready to commit and push. */
  async function workingClone(): Promise<string> {
    const dir = newDir();
    await gitOk(scratch, [...authArgs(token), "clone", "-q", repoUrl, dir]);
    await gitOk(dir, ["config", "http.extraHeader", `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`]);
    return dir;
  }

  async function commit(dir: string, file: string, content: string, message: string): Promise<string> {
    writeFileSync(join(dir, file), content);
    await gitOk(dir, ["add", file]);
    await gitOk(dir, ["commit", "-q", "-m", message]);
    return gitOk(dir, ["rev-parse", "HEAD"]);
  }

  beforeAll(async () => {
    receiver = await startReceiver();
    ({ origin, url: api } = await twin.start());
    ({ botLogin } = twin.createApp({ appId: 31, privateKey: newAppKey(), webhookSecret: SECRET, webhookUrl: receiver.url, slug: "autoresearch" }));
    await twin.createRepo(OWNER, REPO, { "train.py": "LR = 0.04\n", "program.md": "# Program\n" });
    await twin.createRepo(OWNER, "private-notes", { "notes.md": "secret\n" }, { private: true });
    installationId = await twin.installApp(OWNER, [REPO, "private-notes"]);
    token = await twin.installationToken(installationId);
    repoUrl = `${origin}/${OWNER}/${REPO}.git`;
    await twin.waitForDeliveries();
  });

  afterEach(async () => {
    await twin.waitForDeliveries();
    const problems = receiver.problems.splice(0);
    expect(problems, problems.join("\n\n")).toEqual([]);
  });

  afterAll(async () => {
    await twin.stop();
    await new Promise<void>((resolve) => receiver.server.close(() => resolve()));
    rmSync(scratch, { recursive: true, force: true });
  });

  it("fetches a commit by SHA into a shallow clone without blobs, which are fetched when read", async () => {
    // A commit that no branch points at any more: only a fetch by SHA reaches it.
    const old = await twin.pushCommit(OWNER, REPO, "scratch", { "train.py": "LR = 0.05\n" }, "Try 0.05");
    await twin.setBranch(OWNER, REPO, "scratch", null);
    const dir = newDir();
    await gitOk(scratch, ["init", "-q", dir]);
    await gitOk(dir, ["remote", "add", "origin", `${origin}/${OWNER}/private-notes`]);
    // Private: the token is needed, sent as Bearer here; the URL has no .git.
    expect((await git(dir, ["fetch", "-q", "origin", "main"])).code).not.toBe(0);
    await gitOk(dir, [...authArgs(token, "bearer"), "fetch", "-q", "--depth=1", "origin", "main"]);
    expect(await gitOk(dir, ["show", "FETCH_HEAD:notes.md"])).toBe("secret");

    const partial = newDir();
    await gitOk(scratch, [...authArgs(token), "clone", "-q", "--depth=1", "--filter=blob:none", "--no-checkout", repoUrl, partial]);
    await gitOk(partial, [...authArgs(token), "fetch", "-q", "--depth=1", "--filter=blob:none", "origin", old]);
    expect(await gitOk(partial, ["cat-file", "-t", old])).toBe("commit");
    // Protocol v0 (older clients, other git libraries) asks by SHA too: served, unreachable or not.
    const v0 = newDir();
    await gitOk(scratch, ["init", "-q", v0]);
    await gitOk(v0, [...authArgs(token), "-c", "protocol.version=0", "fetch", "-q", "--depth=1", repoUrl, old]);
    expect(await gitOk(v0, ["cat-file", "-t", old])).toBe("commit");
    // Shallow (no parent) and partial (the blobs are promised, not here).
    expect(await gitOk(partial, ["rev-list", "--count", old])).toBe("1");
    const missing = (await gitOk(partial, ["rev-list", "--objects", "--missing=print", old])).split("\n").filter((l) => l.startsWith("?"));
    expect(missing.length).toBeGreaterThanOrEqual(2);
    // Reading a file fetches its blob from the twin on demand.
    expect(await gitOk(partial, [...authArgs(token), "show", `${old}:train.py`])).toBe("LR = 0.05");
  });

  it("pushes a new branch with a new commit: the branch is there through the API and a push webhook goes out", async () => {
    const dir = await workingClone();
    const sha = await commit(dir, "train.py", "LR = 0.03\n", "Lower the learning rate");
    const push = await git(dir, ["push", "origin", "HEAD:refs/heads/autoresearch/1-lr"]);
    expect(push.code, push.stderr).toBe(0);

    const gh = new ProbotOctokit({ auth: { token }, baseUrl: api, log: quiet, throttle: { enabled: false }, retry: { enabled: false } });
    const ref = await gh.rest.git.getRef({ owner: OWNER, repo: REPO, ref: "heads/autoresearch/1-lr" });
    expect(ref.data.object.sha).toBe(sha);
    await twin.waitForDeliveries();
    const pushes = received("push").filter((r) => r.payload.ref === "refs/heads/autoresearch/1-lr");
    expect(pushes).toHaveLength(1);
    expect(pushes[0]?.payload).toMatchObject({
      before: "0000000000000000000000000000000000000000",
      after: sha,
      created: true,
      deleted: false,
      pusher: { name: botLogin },
      sender: { login: botLogin },
      head_commit: { id: sha, message: "Lower the learning rate", modified: ["train.py"] },
    });
  });

  it("lists refs as every push and ref update left them, though the listing is kept between them", async () => {
    const gh = new ProbotOctokit({ auth: { token }, baseUrl: api, log: quiet, throttle: { enabled: false }, retry: { enabled: false } });
    const listed = async () =>
      Object.fromEntries((await gh.rest.git.listMatchingRefs({ owner: OWNER, repo: REPO, ref: "heads/listing/" })).data.map((r) => [r.ref, r.object.sha]));
    expect(await listed()).toEqual({});
    const dir = await workingClone();
    const first = await commit(dir, "notes.txt", "one\n", "One");
    expect((await git(dir, ["push", "origin", "HEAD:refs/heads/listing/a"])).code).toBe(0);
    expect(await listed()).toEqual({ "refs/heads/listing/a": first });
    const second = await commit(dir, "notes.txt", "two\n", "Two");
    expect((await git(dir, ["push", "origin", "HEAD:refs/heads/listing/a", `${first}:refs/heads/listing/b`])).code).toBe(0);
    expect(await listed()).toEqual({ "refs/heads/listing/a": second, "refs/heads/listing/b": first });
    // Moved and deleted by the twin's own operations (as the API's writes move them).
    await twin.setBranch(OWNER, REPO, "listing/b", second, { user: "bob" });
    expect(await listed()).toEqual({ "refs/heads/listing/a": second, "refs/heads/listing/b": second });
    await twin.setBranch(OWNER, REPO, "listing/a", null, { user: "bob" });
    expect(await listed()).toEqual({ "refs/heads/listing/b": second });
    await twin.setBranch(OWNER, REPO, "listing/b", null, { user: "bob" });
    expect(await listed()).toEqual({});
  });

  it("a listing read while refs move, each time only the moved ones read again, ends as git's own for-each-ref", async () => {
    const dir = mkdtempSync(join(scratch, "listing-"));
    const repo = await GitRepo.init(join(dir, "r.git"), "main");
    const id = { name: "R", email: "r@example.com", date: "2026-01-01T00:00:00Z" };
    const commits: string[] = [];
    for (let i = 0; i < 4; i++) commits.push(await repo.commitTree(await repo.buildTree(null, new Map([["f", { mode: "100644", sha: await repo.writeBlob(`${i}\n`) }]])), [], `c${i}`, id, id));
    const gitsOwn = async () =>
      (await runGit(repo.dir, ["for-each-ref", "--format=%(refname) %(objectname)"])).stdout.toString().trim().split("\n").filter(Boolean).sort();
    const listing = async () => (await repo.listRefs("refs/")).map((r) => `${r.ref} ${r.sha}`);
    await repo.updateRef("refs/heads/a", commits[0]!);
    expect(await listing()).toEqual([`refs/heads/a ${commits[0]}`]);
    // A listing asked for while another is read, and after a ref moved that the other reads
    // again: it shows that move too.
    await repo.updateRef("refs/heads/a", commits[1]!);
    const first = listing();
    const moving = repo.updateRef("refs/heads/b", commits[2]!);
    const second = listing();
    expect((await second).filter((l) => l.startsWith("refs/heads/a "))).toEqual([`refs/heads/a ${commits[1]}`]);
    await Promise.all([first, moving]);
    expect([await repo.refSha("refs/heads/a"), await repo.refSha("refs/heads/b")]).toEqual([commits[1], commits[2]]);
    // A ref moved since the last listing is read from git, not from the listing.
    await repo.updateRef("refs/heads/a", commits[3]!);
    expect(await repo.refSha("refs/heads/a")).toBe(commits[3]);
    // A fixed pseudo-random sequence of moves, deletions and git's own writes, with listings in between and alongside.
    let seed = 7;
    const rand = (k: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % k);
    for (let round = 0; round < 12; round++) {
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 6; i++) {
        const ref = `refs/heads/b${rand(5)}`;
        const what = rand(3);
        if (round % 4 === 3 && i === 0) ops.push(repo.git(["update-ref", `refs/tags/t${rand(3)}`, commits[rand(4)]!])); // moves what it likes
        else if (what === 0) ops.push(repo.deleteRef(ref));
        else ops.push(repo.updateRef(ref, commits[rand(4)]!));
        ops.push(listing());
      }
      await Promise.all(ops);
      const own = await gitsOwn();
      expect(await listing(), `round ${round}`).toEqual(own);
      // Each ref as refSha reads it, from the listing where it has not moved since: git's too.
      const refs = [...Array(5).keys()].map((k) => `refs/heads/b${k}`).concat([...Array(3).keys()].map((k) => `refs/tags/t${k}`));
      const shas = await Promise.all(refs.map(async (ref) => `${ref} ${(await repo.refSha(ref)) ?? "-"}`));
      expect(shas, `round ${round}`).toEqual(refs.map((ref) => `${ref} ${own.find((l) => l.startsWith(`${ref} `))?.split(" ")[1] ?? "-"}`));
    }
    repo.close();
  });

  it("force-pushes a pull request's head: the pull request follows and synchronize goes out", async () => {
    const first = await twin.pushCommit(OWNER, REPO, "autoresearch/2-depth", { "train.py": "DEPTH = 10\n" }, "Deeper", { user: "bob" });
    const number = await twin.openPull(OWNER, REPO, { head: "autoresearch/2-depth", title: "Deeper", user: "bob" });
    const dir = await workingClone();
    const rewritten = await commit(dir, "train.py", "DEPTH = 12\n", "Deeper still");
    const refused = await git(dir, ["push", "origin", "HEAD:autoresearch/2-depth"]);
    expect(refused.code).not.toBe(0); // not a fast-forward
    expect(twin.pull(OWNER, REPO, number).headSha).toBe(first);

    const push = await git(dir, ["push", "--force", "origin", "HEAD:autoresearch/2-depth"]);
    expect(push.code, push.stderr).toBe(0);
    expect(twin.pull(OWNER, REPO, number).headSha).toBe(rewritten);
    await twin.waitForDeliveries();
    const sync = received("pull_request", "synchronize").filter((r) => r.payload.number === number);
    expect(sync.map((r) => [r.payload.before, r.payload.after])).toEqual([[first, rewritten]]);
    expect(received("push").find((r) => r.payload.after === rewritten)?.payload.forced).toBe(true);
  });

  it("deletes branches with git push --delete, several in one push: their pull requests close", async () => {
    await twin.pushCommit(OWNER, REPO, "autoresearch/3-warmup", { "train.py": "WARMUP = 20\n" }, "Warmup", { user: "bob" });
    await twin.pushCommit(OWNER, REPO, "autoresearch/4-decay", { "train.py": "DECAY = 0.2\n" }, "Decay", { user: "bob" });
    await twin.pushCommit(OWNER, REPO, "autoresearch/5-betas", { "train.py": "BETAS = 0.8\n" }, "Betas", { user: "bob" });
    const warmup = await twin.openPull(OWNER, REPO, { head: "autoresearch/3-warmup", title: "Warmup", user: "bob" });
    const decay = await twin.openPull(OWNER, REPO, { head: "autoresearch/4-decay", title: "Decay", user: "bob" });
    const dir = await workingClone();

    const one = await git(dir, ["push", "origin", "--delete", "autoresearch/3-warmup"]);
    expect(one.code, one.stderr).toBe(0);
    expect(twin.pull(OWNER, REPO, warmup)).toMatchObject({ state: "closed", merged: false });

    const two = await git(dir, ["push", "origin", "--delete", "autoresearch/4-decay", "autoresearch/5-betas"]);
    expect(two.code, two.stderr).toBe(0);
    expect(twin.pull(OWNER, REPO, decay)).toMatchObject({ state: "closed", merged: false });
    const branches = await twin.branches(OWNER, REPO);
    for (const gone of ["autoresearch/3-warmup", "autoresearch/4-decay", "autoresearch/5-betas"]) expect(branches[gone]).toBeUndefined();

    await twin.waitForDeliveries();
    const deletions = received("push")
      .filter((r) => r.payload.deleted === true && (r.payload.sender as { login?: string }).login === botLogin)
      .map((r) => r.payload.ref);
    expect(deletions).toEqual(["refs/heads/autoresearch/3-warmup", "refs/heads/autoresearch/4-decay", "refs/heads/autoresearch/5-betas"]);
    expect(received("pull_request", "closed").map((r) => r.payload.number)).toEqual(expect.arrayContaining([warmup, decay]));
    // The default branch is not deleted by a push (git refuses to delete the current branch).
    expect((await git(dir, ["push", "origin", "--delete", "main"])).code).not.toBe(0);
    expect(await twin.branchSha(OWNER, REPO, "main")).not.toBeNull();
  });

  it("marks a pull request merged when a push lands its head in its base", async () => {
    await twin.pushCommit(OWNER, REPO, "autoresearch/6-batch", { "batch.txt": "BATCH = 32\n" }, "Batch", { user: "bob" });
    const number = await twin.openPull(OWNER, REPO, { head: "autoresearch/6-batch", title: "Batch", user: "bob" });
    const dir = await workingClone();
    await gitOk(dir, ["fetch", "-q", "origin", "autoresearch/6-batch"]);
    await gitOk(dir, ["merge", "-q", "--no-edit", "FETCH_HEAD"]);
    const push = await git(dir, ["push", "origin", "HEAD:main"]);
    expect(push.code, push.stderr).toBe(0);
    expect(twin.pull(OWNER, REPO, number)).toMatchObject({ state: "closed", merged: true, mergedBy: botLogin });
    expect(await twin.readFile(OWNER, REPO, "main", "batch.txt")).toBe("BATCH = 32\n");
  });

  it("asks for credentials (401) without a token or with a bad one, and refuses (403) a token without the repository or contents: write", async () => {
    // Without credentials: a public repository can be fetched, not pushed; a private one is not told.
    const anonymous = await fetch(`${repoUrl}/info/refs?service=git-receive-pack`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("www-authenticate")).toBe('Basic realm="GitHub"');
    expect((await fetch(`${origin}/${OWNER}/private-notes.git/info/refs?service=git-upload-pack`)).status).toBe(401);
    expect((await fetch(`${origin}/${OWNER}/no-such-repo.git/info/refs?service=git-upload-pack`)).status).toBe(401);
    const publicRefs = await fetch(`${repoUrl}/info/refs?service=git-upload-pack`);
    expect(publicRefs.status).toBe(200);
    expect(publicRefs.headers.get("content-type")).toBe("application/x-git-upload-pack-advertisement");

    const dir = await workingClone();
    await commit(dir, "train.py", "LR = 0.02\n", "Lower still");
    await gitOk(dir, ["config", "--unset", "http.extraHeader"]);
    const noToken = await git(dir, ["push", "origin", "HEAD:refs/heads/refused"]);
    expect(noToken.stderr).toContain("could not read Username"); // asked for credentials
    // A bad token in the URL, the way a credential helper would send it.
    const bad = await git(dir, ["push", `http://x-access-token:ghs_notatoken@${new URL(origin).host}/${OWNER}/${REPO}.git`, "HEAD:refs/heads/refused"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("remote: Invalid username or token");
    expect(bad.stderr).toContain("Authentication failed");

    // Another app's installation (on another repository of the account) may not push here.
    const otherApp = twin.createApp({ appId: 32, privateKey: newAppKey(), webhookSecret: SECRET, webhookUrl: null, slug: "other" });
    await twin.createRepo(OWNER, "elsewhere", { "a.txt": "a\n" });
    const other = await twin.installationToken(await twin.installApp(OWNER, ["elsewhere"], { appId: otherApp.id }));
    const foreign = await git(dir, [...authArgs(other), "push", "origin", "HEAD:refs/heads/refused"]);
    expect(foreign.code).not.toBe(0);
    expect(foreign.stderr).toContain("remote: Permission to alice/research.git denied to other[bot]");
    expect(foreign.stderr).toContain("error: 403");
    expect((await fetch(`${origin}/${OWNER}/private-notes.git/info/refs?service=git-upload-pack`, { headers: { authorization: `token ${other}` } })).status).toBe(403);

    // Read-only contents: fetching works, pushing does not.
    const readOnly = await twin.installationToken(installationId, { permissions: { contents: "read", metadata: "read" } });
    expect((await git(dir, [...authArgs(readOnly), "fetch", "-q", "origin", "main"])).code).toBe(0);
    const denied = await git(dir, [...authArgs(readOnly), "push", "origin", "HEAD:refs/heads/refused"]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/pushing needs contents: write/);
    expect((await twin.branches(OWNER, REPO)).refused).toBeUndefined();
  });

  it("answers a push with an injected 5xx, without carrying it out or after it did", async () => {
    const dir = await workingClone();
    const sha = await commit(dir, "train.py", "LR = 0.07\n", "Through a flaky front end");
    try {
      pushFault = { status: 502 };
      const lost = await git(dir, ["push", "origin", "HEAD:refs/heads/flaky"]);
      expect(lost.stderr).toContain("error: 502");
      expect(await twin.branchSha(OWNER, REPO, "flaky")).toBeNull();
      pushFault = { status: 503, carriedOut: true };
      const late = await git(dir, ["push", "origin", "HEAD:refs/heads/flaky"]);
      expect(late.stderr).toContain("error: 503");
      expect(await twin.branchSha(OWNER, REPO, "flaky")).toBe(sha);
    } finally {
      pushFault = undefined;
    }
    await twin.waitForDeliveries();
    expect(received("push").filter((r) => r.payload.ref === "refs/heads/flaky")).toHaveLength(1);
  });

  it("logs git requests as git, not as API reads or writes, and passes them by the rate limits", async () => {
    twin.resetRequests();
    const dir = await workingClone();
    for (let i = 0; i < 3; i++) {
      await commit(dir, "train.py", `LR = 0.0${i + 1}\n`, `Step ${i}`);
      await gitOk(dir, ["push", "-q", "origin", "HEAD:refs/heads/many-pushes"]);
    }
    const stats = twin.requestStats((r) => r.installationId === installationId);
    expect(stats.writes).toBe(0);
    expect(stats.reads).toBe(0);
    expect(stats.git).toBe(stats.total);
    expect(stats.byRoute["GIT receive-pack {owner}/{repo}"]).toBe(3);
    expect(stats.byRoute["GIT receive-pack refs {owner}/{repo}"]).toBe(3);
    expect(stats.byRoute["GIT upload-pack {owner}/{repo}"]).toBeGreaterThanOrEqual(1);
    expect(twin.requests.filter((r) => r.route === "GIT receive-pack {owner}/{repo}").every((r) => r.git && !r.write && r.auth === "installation" && r.status === 200)).toBe(true);
    expect(twin.limiter?.events).toEqual([]);

    // The minute's one API write is still there after the pushes; the next one is refused.
    const gh = new ProbotOctokit({ auth: { token }, baseUrl: api, log: quiet, throttle: { enabled: false }, retry: { enabled: false } });
    expect((await gh.rest.issues.createLabel({ owner: OWNER, repo: REPO, name: "first" })).status).toBe(201);
    await expect(gh.rest.issues.createLabel({ owner: OWNER, repo: REPO, name: "second" })).rejects.toMatchObject({ status: 403 });
  });
});

describe("GitHub twin: the ref updates a push asks for", () => {
  const pkt = (s: string) => `${(s.length + 4).toString(16).padStart(4, "0")}${s}`;
  const [a, b] = ["a".repeat(40), "b".repeat(40)];
  const zero = "0".repeat(40);

  it("reads each command (the first with capabilities), past shallow lines and a push certificate, up to the flush", () => {
    const body = Buffer.from(
      pkt(`shallow ${a}\n`) +
        pkt("push-cert\0report-status\n") +
        pkt("certificate version 0.1\n") +
        "0000" +
        pkt(`${zero} ${b} refs/heads/new\0report-status agent=git/2\n`) +
        pkt(`${a} ${zero} refs/heads/gone\n`) +
        pkt(`${a} ${b} refs/heads/moved\n`) +
        "0000PACK...",
    );
    expect(pushCommands(body)).toEqual([
      { ref: "refs/heads/new", old: null, new: b },
      { ref: "refs/heads/gone", old: a, new: null },
      { ref: "refs/heads/moved", old: a, new: b },
    ]);
    expect(pushCommands(gzipSync(body), "gzip")).toEqual(pushCommands(body));
  });

  it("stops at what it cannot read", () => {
    expect(pushCommands(Buffer.from(pkt(`${a} ${b} refs/heads/x\n`) + pkt("not a command\n") + pkt(`${a} ${b} refs/heads/y\n`)))).toEqual([
      { ref: "refs/heads/x", old: a, new: b },
    ]);
    expect(pushCommands(Buffer.from("zzzz"))).toEqual([]);
    expect(pushCommands(Buffer.from("not gzip"), "gzip")).toEqual([]);
  });
});

describe("GitHub twin: the refs advertisement a push asks for", () => {
  it("is git's own, byte for byte, in every protocol a client asks for, without a git process once learned", async () => {
    const repo = await GitRepo.init(join(scratch, "advertised.git"), "main");
    try {
      const ask = (gitProtocol?: string): BackendRequest => ({
        method: "GET",
        path: { owner: "o", repo: "advertised", service: "receive-pack", step: "refs" },
        contentType: undefined,
        contentEncoding: undefined,
        gitProtocol,
        remoteUser: "bob",
        body: Buffer.alloc(0),
      });
      // git's answer, from git http-backend itself.
      const gits = async (gitProtocol?: string) => {
        const env: Record<string, string> = {
          GIT_PROJECT_ROOT: scratch, PATH_INFO: "/advertised.git/info/refs", REQUEST_METHOD: "GET", QUERY_STRING: "service=git-receive-pack",
          GIT_HTTP_EXPORT_ALL: "1", REMOTE_USER: "bob", REMOTE_ADDR: "127.0.0.1", CONTENT_LENGTH: "0",
        };
        if (gitProtocol) env.GIT_PROTOCOL = gitProtocol;
        const out = (await runGit(scratch, ["http-backend"], { env })).stdout;
        return out.subarray(out.indexOf("\r\n\r\n") + 4).toString("latin1");
      };
      const protocols = [undefined, "version=1", "version=2"];
      // Learned on an empty repository (no refs: the capabilities^{} line).
      for (const p of protocols) expect((await httpBackend(repo, ask(p))).body.toString("latin1")).toBe(await gits(p));
      const before = gitSpawnCount();
      for (const p of protocols) expect((await httpBackend(repo, ask(p))).body.toString("latin1")).toBe(await gits(p));
      expect(gitSpawnCount() - before).toBe(protocols.length); // git's own answers only

      const id: GitIdentity = { name: "T", email: "t@example.com", date: "2024-01-01T00:00:00.000Z" };
      const tree = await repo.buildTree(null, new Map([["a.txt", { mode: "100644", sha: await repo.writeBlob("a\n") }]]));
      const one = await repo.commitTree(tree, [], "one", id, id);
      const two = await repo.commitTree(tree, [one], "two", id, id);
      await repo.updateRef("refs/heads/main", two);
      await repo.updateRef("refs/heads/autoresearch/1-lr", one);
      await repo.updateRef("refs/heads/Zeta", one);
      await runGit(repo.dir, ["tag", "-a", "-m", "v1", "v1", one], { env: { GIT_COMMITTER_NAME: "T", GIT_COMMITTER_EMAIL: "t@example.com" } });
      repo.refsChanged();
      for (const p of protocols) {
        const ours = await httpBackend(repo, ask(p));
        expect(ours.headers["content-type"]).toBe("application/x-git-receive-pack-advertisement");
        expect(ours.body.toString("latin1")).toBe(await gits(p));
      }
      await repo.deleteRef("refs/heads/Zeta");
      expect((await httpBackend(repo, ask())).body.toString("latin1")).toBe(await gits());
    } finally {
      repo.close();
    }
  });
});

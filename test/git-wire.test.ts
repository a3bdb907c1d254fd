// Experiment commits and branch deletions pushed from the bot's own process
// (src/github/git-wire.ts): git's smart HTTP protocol against the GitHub twin, which serves it
// with git's own http-backend, and the parent's trees read through the twin's REST API with a
// real Octokit, as src/app.ts wires them.
import { execFile, execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { ProbotOctokit } from "probot";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GitWire, gitUrlFor, treeFromApi, type GitWireOptions } from "../src/github/git-wire.js";
import { GitHubError } from "../src/github/octokit.js";
import { NotLeaderError } from "../src/leader/elector.js";
import { newAppKey } from "../twins/bot.js";
import { GitHubTwin } from "../twins/github/index.js";

const OWNER = "alice";
const REPO = "research";
const AUTHOR = { name: "autoresearch-bot[bot]", email: "autoresearch-bot[bot]@users.noreply.github.com" };
const TREES = "GET /repos/{owner}/{repo}/git/trees/{tree_sha}";
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

const scratch = mkdtempSync(path.join(tmpdir(), "git-wire-"));
const ENV = { PATH: process.env.PATH ?? "", HOME: scratch, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1", GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" };

/** git on the twin's bare repository (or a scratch clone), for setting up and checking. */
function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", env: ENV }).trim();
}

/** git talking to the twin, which answers in this process: not blocking it. */
function gitAsync(cwd: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("git", args, { cwd, encoding: "utf8", env: ENV }, (err, stdout, stderr) => (err ? reject(new Error(`git ${args.join(" ")}: ${stderr}`)) : resolve(stdout.trim()))),
  );
}

/** The error a promise rejects with (failing the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<Error> {
  const r = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  if (r.ok) throw new Error(`expected a failure, got ${JSON.stringify(r.v)}`);
  expect(r.e).toBeInstanceOf(Error);
  return r.e as Error;
}

/** A small HTTP server standing in for something that is not GitHub's git. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("GitWire", () => {
  const twin = new GitHubTwin({ limits: false });
  let origin = "";
  let api = "";
  let installationId = 0;
  let token = "";
  let url = "";
  let bare = "";
  let main = "";

  /** A wire as src/app.ts makes it: trees through the REST API (with the suite's token: these tests are of git's side). */
  function wireWith(o: Partial<GitWireOptions> = {}): GitWire {
    return new GitWire({
      url,
      token: async () => token,
      author: AUTHOR,
      readTree: async (sha) => {
        const gh = new ProbotOctokit({ auth: { token }, baseUrl: api, log: quiet, throttle: { enabled: false }, retry: { enabled: false } });
        return treeFromApi((await gh.rest.git.getTree({ owner: OWNER, repo: REPO, tree_sha: sha })).data, sha);
      },
      ...o,
    });
  }
  const gitRequests = () => twin.requests.filter((r) => r.git).map((r) => r.route);
  const treeReads = () => twin.requests.filter((r) => r.route === TREES).length;
  const branches = async () => Object.keys(await twin.branches(OWNER, REPO)).filter((b) => b.startsWith("autoresearch/")).sort();

  beforeAll(async () => {
    ({ origin, url: api } = await twin.start());
    twin.createApp({ appId: 41, privateKey: newAppKey(), webhookSecret: "s", webhookUrl: null, slug: "autoresearch-bot" });
    await twin.createRepo(OWNER, REPO, {
      "train.py": "LR = 0.04\n",
      "prepare.py": "print('prepare')\n",
      "data/notes.txt": "a large file nobody needs to download\n",
      // Names that sort differently as a folder ("lib/") and as files ("lib-x", "lib.py").
      "lib/a.py": "A = 1\n",
      "lib.py": "L = 1\n",
      "lib-x.txt": "x\n",
    });
    installationId = await twin.installApp(OWNER, [REPO]);
    token = await twin.installationToken(installationId);
    url = gitUrlFor(api, OWNER, REPO);
    bare = twin.gitDir(OWNER, REPO);
    // An executable file, pushed over the twin's smart HTTP as a person would.
    const work = path.join(scratch, "work");
    const auth = `http.extraHeader=Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
    await gitAsync(scratch, "-c", auth, "clone", "-q", url, work);
    writeFileSync(path.join(work, "run.sh"), "#!/bin/sh\npython3 train.py\n");
    chmodSync(path.join(work, "run.sh"), 0o755);
    git(work, "add", "run.sh");
    git(work, "-c", "user.name=alice", "-c", "user.email=alice@example.com", "commit", "-qm", "a script");
    await gitAsync(work, "-c", auth, "push", "-q", "origin", "HEAD:main");
  });
  afterAll(async () => {
    await twin.stop();
    rmSync(scratch, { recursive: true, force: true });
  });
  beforeEach(async () => {
    main = (await twin.branchSha(OWNER, REPO, "main"))!;
    twin.resetRequests();
  });

  it("pushes the change as one commit on a new branch, on top of its parent, by the bot, in two git requests", async () => {
    const sha = await wireWith().commit("autoresearch/1-lr", main, { "train.py": "LR = 0.05\n" }, "LR: 0.04 → 0.05");
    expect(await twin.branchSha(OWNER, REPO, "autoresearch/1-lr")).toBe(sha);
    expect(git(bare, "rev-parse", `${sha}^`)).toBe(main);
    expect(await twin.readFile(OWNER, REPO, sha, "train.py")).toBe("LR = 0.05\n");
    // Everything else is the parent's, the executable bit included.
    expect(git(bare, "diff", "--name-only", main, sha)).toBe("train.py");
    expect(git(bare, "ls-tree", sha, "run.sh")).toMatch(/^100755 /);
    expect(git(bare, "log", "-1", "--format=%an <%ae>|%s", sha)).toBe(`${AUTHOR.name} <${AUTHOR.email}>|LR: 0.04 → 0.05`);
    expect(gitRequests()).toEqual(["GIT receive-pack refs {owner}/{repo}", "GIT receive-pack {owner}/{repo}"]);
  });

  it("pushes several branches side by side (a pass opens experiments together); each lands on its parent with its change", async () => {
    const wire = wireWith();
    const names = [1, 2, 3, 4, 5, 6].map((i) => `autoresearch/${30 + i}-lr`);
    const shas = await Promise.all(names.map((b, i) => wire.commit(b, main, { "train.py": `LR = 0.0${i + 1}\n` }, `LR ${i}`)));
    for (const [i, b] of names.entries()) {
      expect(await twin.branchSha(OWNER, REPO, b)).toBe(shas[i]);
      expect(await twin.readFile(OWNER, REPO, b, "train.py")).toBe(`LR = 0.0${i + 1}\n`);
      expect(git(bare, "rev-parse", `${shas[i]}^`)).toBe(main);
    }
    expect(() => git(bare, "fsck", "--strict", "--no-dangling")).not.toThrow();
  });

  it("adds files in new and existing folders, and keeps an executable file executable when it is rewritten", async () => {
    const files = { "opt/deep/opt.py": "X = 1\n", "run.sh": "#!/bin/sh\nexit 0\n", "lib/a.py": "A = 2\n", "lib/b.py": "B = 1\n", "lib.py": "L = 2\n" };
    const sha = await wireWith().commit("autoresearch/2-x", main, files, "several files");
    for (const [p, text] of Object.entries(files)) expect(await twin.readFile(OWNER, REPO, sha, p)).toBe(text);
    expect(git(bare, "ls-tree", sha, "run.sh")).toMatch(/^100755 /);
    expect(git(bare, "ls-tree", sha, "opt/deep/opt.py")).toMatch(/^100644 /);
    expect(git(bare, "diff", "--name-only", main, sha).split("\n").sort()).toEqual(Object.keys(files).sort());
    // Every object the bot built is what git itself would have built (trees in git's order).
    expect(() => git(bare, "fsck", "--strict", "--no-dangling")).not.toThrow();
  });

  it("with nothing changed, an empty commit (a baseline's pull request needs one)", async () => {
    const wire = wireWith();
    const sha = await wire.commit("autoresearch/3-baseline", main, {}, "Baseline");
    expect(sha).not.toBe(main);
    expect(git(bare, "rev-parse", `${sha}^{tree}`)).toBe(git(bare, "rev-parse", `${main}^{tree}`));
    const same = await wire.commit("autoresearch/4-same", main, { "train.py": "LR = 0.04\n" }, "the same text");
    expect(git(bare, "rev-parse", `${same}^{tree}`)).toBe(git(bare, "rev-parse", `${main}^{tree}`));
  });

  it("moves an existing branch of its own onto a new commit, wherever it is (a change re-applied on a new head)", async () => {
    const wire = wireWith();
    await wire.commit("autoresearch/5-lr", main, { "train.py": "LR = 0.05\n" }, "first");
    // Someone else's commit on the branch, then the head moves on.
    await twin.pushCommit(OWNER, REPO, "autoresearch/5-lr", { "notes.md": "mine\n" }, "a person's commit", { user: "bob" });
    const head = await twin.pushCommit(OWNER, REPO, "main", { "prepare.py": "print('prepare v2')\n" }, "moved on");
    const again = await wire.commit("autoresearch/5-lr", head, { "train.py": "LR = 0.05\n" }, "re-applied");
    expect(await twin.branchSha(OWNER, REPO, "autoresearch/5-lr")).toBe(again);
    expect(git(bare, "rev-parse", `${again}^`)).toBe(head);
    expect(await twin.readFile(OWNER, REPO, again, "prepare.py")).toBe("print('prepare v2')\n");
    expect(await twin.readFile(OWNER, REPO, again, "notes.md")).toBeNull();
  });

  it("reads only the trees along the changed paths, once: the usual commit on a head it has seen reads none", async () => {
    // A new head whose root and "lib" are trees not read before ("data" is the same as ever).
    const head = await twin.pushCommit(OWNER, REPO, "main", { "program.md": "# Program\n", "lib/c.py": "C = 1\n" }, "a new head");
    twin.resetRequests();
    const wire = wireWith();
    await wire.commit("autoresearch/6-a", head, { "train.py": "LR = 0.06\n" }, "a");
    expect(treeReads()).toBe(1); // the head's root tree (asked for by the commit's sha)
    twin.resetRequests();
    // The next experiment on the same head, from a new wire (each pass makes its own).
    await wireWith().commit("autoresearch/7-b", head, { "train.py": "LR = 0.07\n" }, "b");
    expect(treeReads()).toBe(0);
    expect(twin.requests.map((r) => r.route)).toEqual(["GIT receive-pack refs {owner}/{repo}", "GIT receive-pack {owner}/{repo}"]);
    // A file in a folder reads that folder once; a new folder and the untouched "data" none.
    await wire.commit("autoresearch/8-c", head, { "lib/a.py": "A = 3\n", "new/x.py": "X\n" }, "c");
    expect(treeReads()).toBe(1);
    twin.resetRequests();
    await wire.commit("autoresearch/9-d", head, { "lib/a.py": "A = 4\n" }, "d");
    expect(treeReads()).toBe(0);
    expect(await twin.readFile(OWNER, REPO, "autoresearch/9-d", "lib/a.py")).toBe("A = 4\n");
    expect(await twin.readFile(OWNER, REPO, "autoresearch/9-d", "data/notes.txt")).toBe("a large file nobody needs to download\n");
  });

  it("deletes several branches in one push, only those still at their commit; one moved or gone is returned and left alone", async () => {
    const wire = wireWith();
    const a = await wire.commit("autoresearch/10-a", main, { "train.py": "A\n" }, "a");
    const b = await wire.commit("autoresearch/11-b", main, { "train.py": "B\n" }, "b");
    const c = await wire.commit("autoresearch/12-c", main, { "train.py": "C\n" }, "c");
    // Someone pushed to 11 since: it is not the bot's to delete any more; 12 is already gone.
    const moved = await twin.pushCommit(OWNER, REPO, "autoresearch/11-b", { "train.py": "B2\n" }, "a person's push", { user: "bob" });
    await twin.setBranch(OWNER, REPO, "autoresearch/12-c", null);
    twin.resetRequests();
    const refused = await wire.deleteBranches([
      { name: "autoresearch/10-a", sha: a },
      { name: "autoresearch/11-b", sha: b },
      { name: "autoresearch/12-c", sha: c },
    ]);
    expect(refused.sort()).toEqual(["autoresearch/11-b", "autoresearch/12-c"]);
    expect(await twin.branchSha(OWNER, REPO, "autoresearch/10-a")).toBeNull();
    expect(await twin.branchSha(OWNER, REPO, "autoresearch/11-b")).toBe(moved);
    expect(gitRequests()).toEqual(["GIT receive-pack refs {owner}/{repo}", "GIT receive-pack {owner}/{repo}"]);
    // Nothing left to delete: no push at all.
    twin.resetRequests();
    expect(await wire.deleteBranches([{ name: "autoresearch/12-c", sha: c }])).toEqual(["autoresearch/12-c"]);
    expect(gitRequests()).toEqual(["GIT receive-pack refs {owner}/{repo}"]);
  });

  it("a branch moved between the advertisement and the push is refused by the server (its lease is the old sha) and left alone", async () => {
    const wire = wireWith();
    const a = await wire.commit("autoresearch/13-a", main, { "train.py": "A\n" }, "a");
    const b = await wire.commit("autoresearch/14-b", main, { "train.py": "B\n" }, "b");
    let calls = 0;
    let moved = "";
    // The token is asked for before each request: the second is the push, after the advertisement.
    const racing = wireWith({
      token: async () => {
        if (++calls === 2) moved = await twin.pushCommit(OWNER, REPO, "autoresearch/14-b", { "train.py": "B2\n" }, "a person's push", { user: "bob" });
        return token;
      },
    });
    const refused = await racing.deleteBranches([
      { name: "autoresearch/13-a", sha: a },
      { name: "autoresearch/14-b", sha: b },
    ]);
    expect(refused).toEqual(["autoresearch/14-b"]);
    expect(await twin.branchSha(OWNER, REPO, "autoresearch/13-a")).toBeNull();
    expect(await twin.branchSha(OWNER, REPO, "autoresearch/14-b")).toBe(moved);
  });

  it("refuses a path a commit cannot hold, a bad commit id or branch name, and sends nothing", async () => {
    const wire = wireWith();
    for (const bad of ["../escape.py", ".git/config", "lib//a.py", "/abs.py"]) {
      await expect(wire.commit("autoresearch/15-x", main, { [bad]: "x\n" }, "bad")).rejects.toThrow(/not a file path a commit can hold/);
    }
    await expect(wire.commit("autoresearch/15-x", main, { lib: "x\n" }, "bad")).rejects.toThrow(/lib is a folder in the parent commit/);
    await expect(wire.commit("autoresearch/15-x", "--upload-pack=touch /tmp/owned", { "train.py": "x\n" }, "bad")).rejects.toThrow(/not a commit id/);
    await expect(wire.commit("autoresearch/15-x y\n0000", main, { "train.py": "x\n" }, "bad")).rejects.toThrow(/not a branch name git accepts/);
    await expect(wire.deleteBranches([{ name: "autoresearch/15-x", sha: "-f" }])).rejects.toThrow(/not a commit id/);
    expect(gitRequests()).toEqual([]);
    expect(await branches()).not.toContain("autoresearch/15-x");
  });

  it("a follower sends nothing", async () => {
    const follower = wireWith({ mayWrite: () => false });
    await expect(follower.commit("autoresearch/16-x", main, { "train.py": "X\n" }, "x")).rejects.toBeInstanceOf(NotLeaderError);
    await expect(follower.deleteBranches([{ name: "autoresearch/1-lr", sha: main }])).rejects.toBeInstanceOf(NotLeaderError);
    expect(twin.requests).toEqual([]);
  });

  it("a refused token is an error naming HTTP 401 and what GitHub said, never the token, and loses nothing", async () => {
    const bad = "ghs_notarealtokenatall0123456789";
    const err = await failure(wireWith({ token: async () => bad }).commit("autoresearch/17-x", main, { "train.py": "X\n" }, "x"));
    expect(err).toBeInstanceOf(GitHubError);
    expect(err.message).toMatch(/^GitHub git push autoresearch\/17-x failed: GET http:\/\/.*\/alice\/research\.git\/info\/refs\?service=git-receive-pack answered HTTP 401: .*token was refused/);
    expect(err.message).not.toContain(bad);
    expect(err.message).not.toContain(Buffer.from(`x-access-token:${bad}`).toString("base64"));
    expect(await branches()).not.toContain("autoresearch/17-x");
  });

  it("a token without contents: write is an error naming HTTP 403 and the permission, never the token", async () => {
    const readOnly = await twin.installationToken(installationId, { permissions: { contents: "read", metadata: "read" } });
    const wire = wireWith({ token: async () => readOnly });
    for (const attempt of [() => wire.commit("autoresearch/18-x", main, { "train.py": "X\n" }, "x"), () => wire.deleteBranches([{ name: "autoresearch/1-lr", sha: main }])]) {
      const err = await failure(attempt());
      expect(err.message).toMatch(/answered HTTP 403: Permission to alice\/research\.git denied to autoresearch-bot\[bot\].*contents: write/);
      expect(err.message).not.toContain(readOnly);
    }
    expect(await branches()).not.toContain("autoresearch/18-x");
  });

  it("does not follow a redirect with the token: a 3xx is an error naming where it pointed", async () => {
    const seen: string[] = [];
    const redirector = await serve((req, res) => {
      seen.push(req.url ?? "");
      res.writeHead(301, { location: `${origin}${req.url}` }).end();
    });
    try {
      const wire = wireWith({ url: `${redirector.url}/alice/research.git` });
      const err = await failure(wire.commit("autoresearch/19-x", main, { "train.py": "X\n" }, "x"));
      expect(err.message).toMatch(/answered HTTP 301, a redirect to http:\/\/127\.0\.0\.1:\d+\/alice\/research\.git\/info\/refs.*not followed with the token/);
      expect(seen).toEqual(["/alice/research.git/info/refs?service=git-receive-pack"]);
      expect(gitRequests()).toEqual([]);
    } finally {
      await redirector.close();
    }
  });

  it("an unreachable remote or one that is not git is an error naming the step and the address, and loses nothing", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const nowhere = wireWith({ url: `http://127.0.0.1:${port}/alice/research.git` });
    await expect(nowhere.commit("autoresearch/20-x", main, { "train.py": "X\n" }, "x")).rejects.toThrow(
      new RegExp(`^GitHub git push autoresearch/20-x failed: GET http://127\\.0\\.0\\.1:${port}/alice/research\\.git/info/refs\\?service=git-receive-pack: fetch failed \\(ECONNREFUSED\\)`),
    );
    const missing = wireWith({ url: `${origin}/alice/nowhere.git` });
    await expect(missing.commit("autoresearch/20-x", main, { "train.py": "X\n" }, "x")).rejects.toThrow(/answered HTTP 404: Repository not found: alice\/nowhere\. \(no such repository, or the app is not installed on it\)/);
    // A sign-in page where git was expected (a proxy, a wrong address): refused, not parsed.
    const page = await serve((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<html>Sign in</html>"));
    try {
      const notGit = wireWith({ url: `${page.url}/alice/research.git` });
      await expect(notGit.commit("autoresearch/20-x", main, { "train.py": "X\n" }, "x")).rejects.toThrow(/answered "text\/html", not application\/x-git-receive-pack-advertisement: not a smart HTTP git server/);
    } finally {
      await page.close();
    }
    expect(await branches()).not.toContain("autoresearch/20-x");
  });

  it("a tree GitHub does not give (or gives wrong) is an error naming it, and nothing is pushed", async () => {
    const unknown = "e".repeat(40);
    const gone = wireWith({ readTree: () => Promise.reject(Object.assign(new Error("Not Found\nmore"), { status: 404 })) });
    await expect(gone.commit("autoresearch/21-x", unknown, { "train.py": "X\n" }, "x")).rejects.toThrow(/^GitHub read the tree of eeeeeee failed \(HTTP 404\): Not Found$/);
    // Asked for a folder's tree, it answers another one.
    const root = { sha: "d".repeat(40), entries: [{ mode: "40000", name: "lib", sha: "c".repeat(40) }] };
    const wrong = wireWith({ readTree: async (sha) => (sha === "f".repeat(40) ? root : { sha: "b".repeat(40), entries: [] }) });
    await expect(wrong.commit("autoresearch/21-x", "f".repeat(40), { "lib/a.py": "X\n" }, "x")).rejects.toThrow(/answered tree bbbbbbb when asked for tree ccccccc/);
    expect(gitRequests()).toEqual([]);
  });

  it("checks the REST API's tree answer: a truncated or malformed one is an error", () => {
    const sha = "a".repeat(40);
    expect(treeFromApi({ sha, truncated: false, tree: [{ path: "lib", mode: "040000", type: "tree", sha }, { path: "run.sh", mode: "100755", type: "blob", sha }] }, sha)).toEqual({
      sha,
      entries: [{ mode: "40000", name: "lib", sha }, { mode: "100755", name: "run.sh", sha }],
    });
    expect(() => treeFromApi({ sha, truncated: true, tree: [] }, sha)).toThrow(/came truncated/);
    expect(() => treeFromApi({ sha, tree: [{ path: "a/b", mode: "100644", type: "blob", sha }] }, sha)).toThrow(/tree\.0\.path: not a name inside one folder/);
    expect(() => treeFromApi({ sha: "nope", tree: [] }, sha)).toThrow(/sha: not a 40-digit sha/);
    expect(() => treeFromApi({ sha, tree: [{ path: "x", mode: "100644", type: "blob", sha: "x" }] }, sha)).toThrow(GitHubError);
  });

  it("the git address of a repository: github.com, GitHub Enterprise Server, a twin at its root", () => {
    expect(gitUrlFor("https://api.github.com", "alice", "research")).toBe("https://github.com/alice/research.git");
    expect(gitUrlFor("https://ghe.example.com/api/v3/", "acme", "nanochat")).toBe("https://ghe.example.com/acme/nanochat.git");
    expect(gitUrlFor("http://127.0.0.1:4321/api/v3", "a b", "r")).toBe("http://127.0.0.1:4321/a%20b/r.git");
  });
});

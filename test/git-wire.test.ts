// Experiment commits and branch deletions by git push (src/github/git-wire.ts), against a real
// bare repository over git's own file:// transport (the GitHub twin's smart HTTP is covered by
// the end-to-end nights and test/twins/git-http.test.ts).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GitWire, gitUrlFor } from "../src/github/git-wire.js";
import { NotLeaderError } from "../src/leader/elector.js";

const AUTHOR = { name: "autoresearch-bot[bot]", email: "autoresearch-bot[bot]@users.noreply.github.com" };

function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" } }).trim();
}

describe("GitWire", () => {
  let dir: string;
  let server: string;
  let main: string;
  let wire: GitWire;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "git-wire-"));
    server = path.join(dir, "server.git");
    git(dir, "init", "-q", "--bare", "--initial-branch=main", server);
    // What GitHub allows: fetching any reachable commit by its sha, and partial clones.
    git(server, "config", "uploadpack.allowAnySHA1InWant", "true");
    git(server, "config", "uploadpack.allowFilter", "true");
    const work = path.join(dir, "work");
    mkdirSync(path.join(work, "data"), { recursive: true });
    writeFileSync(path.join(work, "train.py"), "LR = 0.04\n");
    writeFileSync(path.join(work, "prepare.py"), "print('prepare')\n");
    writeFileSync(path.join(work, "run.sh"), "#!/bin/sh\npython3 train.py\n");
    chmodSync(path.join(work, "run.sh"), 0o755);
    writeFileSync(path.join(work, "data", "notes.txt"), "a large file nobody needs to download\n");
    // Names that sort differently as a folder ("lib/") and as files ("lib-x", "lib.py").
    mkdirSync(path.join(work, "lib"));
    writeFileSync(path.join(work, "lib", "a.py"), "A = 1\n");
    writeFileSync(path.join(work, "lib.py"), "L = 1\n");
    writeFileSync(path.join(work, "lib-x.txt"), "x\n");
    git(dir, "init", "-q", "--initial-branch=main", work);
    git(work, "add", ".");
    git(work, "-c", "user.name=alice", "-c", "user.email=alice@example.com", "commit", "-qm", "start");
    git(work, "push", "-q", server, "main");
    main = git(server, "rev-parse", "main");
    wire = new GitWire({ url: `file://${server}`, token: async () => "a-token", author: AUTHOR });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("pushes the change as one commit on a new branch, on top of its parent, by the bot", async () => {
    const sha = await wire.commit("autoresearch/1-lr", main, { "train.py": "LR = 0.05\n" }, "LR: 0.04 → 0.05");
    expect(git(server, "rev-parse", "autoresearch/1-lr")).toBe(sha);
    expect(git(server, "rev-parse", `${sha}^`)).toBe(main);
    expect(git(server, "show", `${sha}:train.py`)).toBe("LR = 0.05");
    // Everything else is the parent's, the executable bit included.
    expect(git(server, "diff", "--name-only", main, sha)).toBe("train.py");
    expect(git(server, "ls-tree", sha, "run.sh")).toMatch(/^100755 /);
    expect(git(server, "log", "-1", "--format=%an <%ae>|%s", sha)).toBe(`${AUTHOR.name} <${AUTHOR.email}>|LR: 0.04 → 0.05`);
  });

  it("adds files in new and existing folders, and keeps an executable file executable when it is rewritten", async () => {
    const files = { "opt/deep/opt.py": "X = 1\n", "run.sh": "#!/bin/sh\nexit 0\n", "lib/a.py": "A = 2\n", "lib/b.py": "B = 1\n", "lib.py": "L = 2\n" };
    const sha = await wire.commit("autoresearch/2-x", main, files, "several files");
    for (const [p, text] of Object.entries(files)) expect(git(server, "show", `${sha}:${p}`)).toBe(text.trimEnd());
    expect(git(server, "ls-tree", sha, "run.sh")).toMatch(/^100755 /);
    expect(git(server, "ls-tree", sha, "opt/deep/opt.py")).toMatch(/^100644 /);
    expect(git(server, "diff", "--name-only", main, sha).split("\n").sort()).toEqual(Object.keys(files).sort());
    // Every object the bot built is what git itself would have built (trees in git's order).
    expect(() => git(server, "fsck", "--strict", "--no-dangling")).not.toThrow();
  });

  it("with nothing changed, an empty commit (a baseline's pull request needs one)", async () => {
    const sha = await wire.commit("autoresearch/3-baseline", main, {}, "Baseline");
    expect(sha).not.toBe(main);
    expect(git(server, "rev-parse", `${sha}^{tree}`)).toBe(git(server, "rev-parse", `${main}^{tree}`));
    const same = await wire.commit("autoresearch/4-same", main, { "train.py": "LR = 0.04\n" }, "the same text");
    expect(git(server, "rev-parse", `${same}^{tree}`)).toBe(git(server, "rev-parse", `${main}^{tree}`));
  });

  it("moves an existing branch of its own onto a new commit (a change re-applied on a new head)", async () => {
    const first = await wire.commit("autoresearch/5-lr", main, { "train.py": "LR = 0.05\n" }, "first");
    const work = path.join(dir, "work");
    writeFileSync(path.join(work, "prepare.py"), "print('prepare v2')\n");
    git(work, "-c", "user.name=alice", "-c", "user.email=alice@example.com", "commit", "-qam", "moved on");
    git(work, "push", "-q", server, "main");
    const head = git(server, "rev-parse", "main");
    const again = await wire.commit("autoresearch/5-lr", head, { "train.py": "LR = 0.05\n" }, "re-applied");
    expect(again).not.toBe(first);
    expect(git(server, "rev-parse", "autoresearch/5-lr")).toBe(again);
    expect(git(server, "rev-parse", `${again}^`)).toBe(head);
    expect(git(server, "show", `${again}:prepare.py`)).toBe("print('prepare v2')");
  });

  it("fetches trees only: the parent's file contents never come down", async () => {
    await wire.commit("autoresearch/6-lr", main, { "train.py": "LR = 0.06\n" }, "lr");
    const missing = git(wire.dir, "rev-list", "--objects", "--missing=print", main).split("\n").filter((x) => x.startsWith("?"));
    expect(missing.length).toBeGreaterThanOrEqual(3); // prepare.py, run.sh, data/notes.txt stayed on the server
  });

  it("deletes several branches in one push, only those still at their commit; one gone counts as deleted", async () => {
    const a = await wire.commit("autoresearch/7-a", main, { "train.py": "A\n" }, "a");
    const b = await wire.commit("autoresearch/8-b", main, { "train.py": "B\n" }, "b");
    const c = await wire.commit("autoresearch/9-c", main, { "train.py": "C\n" }, "c");
    // Someone pushed to 8 since: it is not the bot's to delete any more.
    await wire.commit("autoresearch/8-b", b, { "train.py": "B2\n" }, "a person's push");
    git(server, "update-ref", "-d", "refs/heads/autoresearch/9-c");
    const refused = await wire.deleteBranches([
      { name: "autoresearch/7-a", sha: a },
      { name: "autoresearch/8-b", sha: b },
      { name: "autoresearch/9-c", sha: c },
    ]);
    expect(refused.sort()).toEqual(["autoresearch/8-b", "autoresearch/9-c"]);
    expect(git(server, "branch", "--list", "autoresearch/*").split("\n").map((s) => s.trim())).toEqual(["autoresearch/8-b"]);
  });

  it("refuses a path a commit cannot hold, and pushes nothing", async () => {
    for (const bad of ["../escape.py", ".git/config", "lib//a.py", "/abs.py", "lib"]) {
      await expect(wire.commit("autoresearch/12-x", main, { [bad]: "x\n" }, "bad")).rejects.toThrow(/not a file path a commit can hold|is a folder in the parent commit/);
    }
    // Nor a parent or a lease git could read as an option.
    await expect(wire.commit("autoresearch/12-x", "--upload-pack=touch /tmp/owned", { "train.py": "x\n" }, "bad")).rejects.toThrow(/not a commit id/);
    await expect(wire.deleteBranches([{ name: "autoresearch/12-x", sha: "-f" }])).rejects.toThrow(/not a commit id/);
    expect(git(server, "branch", "--list", "autoresearch/*")).toBe("");
  });

  it("a follower pushes nothing", async () => {
    const follower = new GitWire({ url: `file://${server}`, token: async () => "t", author: AUTHOR, mayWrite: () => false });
    await expect(follower.commit("autoresearch/10-x", main, { "train.py": "X\n" }, "x")).rejects.toBeInstanceOf(NotLeaderError);
    expect(git(server, "branch", "--list", "autoresearch/*")).toBe("");
  });

  it("an unreachable remote is an error naming the step and what git said, and loses nothing", async () => {
    const broken = new GitWire({ url: `file://${dir}/nowhere.git`, token: async () => "t", author: AUTHOR });
    await expect(broken.commit("autoresearch/11-x", main, { "train.py": "X\n" }, "x")).rejects.toThrow(/^GitHub git fetch [0-9a-f]{7} failed: git exited 128: .*nowhere\.git/);
  });

  it("the git address of a repository: github.com, GitHub Enterprise Server, a twin at its root", () => {
    expect(gitUrlFor("https://api.github.com", "alice", "research")).toBe("https://github.com/alice/research.git");
    expect(gitUrlFor("https://ghe.example.com/api/v3/", "acme", "nanochat")).toBe("https://ghe.example.com/acme/nanochat.git");
    expect(gitUrlFor("http://127.0.0.1:4321/api/v3", "a b", "r")).toBe("http://127.0.0.1:4321/a%20b/r.git");
  });
});

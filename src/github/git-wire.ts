// Experiment commits and branch deletions over git itself (smart HTTP), not the REST API.
//
// Why: GitHub's secondary limits allow 80 content-generating API requests a minute and 500 an
// hour, and through the API a commit on a new branch costs two of them (the branch, then the
// file) and deleting the branch a third. A `git push` is not an API request: it creates the
// branch with its commit in one go, and one push deletes any number of branches. This is how
// Renovate and most bots that push code do it.
//
// The bot keeps one small local repository per remote (a partial, shallow one: commits and trees
// only, no file contents), fetches the parent commit into it, builds the new blobs, trees and
// commit itself (src/github/git-objects.ts) and pushes. Nothing is checked out, and the files
// come from the proposal, not from disk.
//
// The token travels in an `Authorization` header set through GIT_CONFIG_* variables: never on a
// command line (where `ps` shows it) or in a URL (where git may print it).
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { deflateSync } from "node:zlib";
import { commitObjects, parseLsTree, type GitObject, type Trees } from "./git-objects.js";
import { NotLeaderError } from "../leader/elector.js";
import { GitHubError } from "./octokit.js";

/** A failed git step: like an API error, tried again on the next pass. */
export class GitWireError extends GitHubError {
  constructor(message: string) {
    super(message, null);
  }
}

export interface GitWireOptions {
  /** The repository's git address, e.g. https://github.com/owner/repo.git. */
  url: string;
  /** An installation token with contents: write on the repository (asked for before each push). */
  token(): Promise<string>;
  /** Who the commits are by (the app's bot user). */
  author: { name: string; email: string };
  /** How long one git command may take (default 120 s). */
  timeoutMs?: number;
  /** Whether this process may write (the leader): a push of a follower is refused like its API writes. */
  mayWrite?: () => boolean;
}

/** The longest a git command may take before it is killed and the step fails (the next pass retries). */
const DEFAULT_TIMEOUT_MS = 120_000;

/** The local repositories of this process, one per remote, in one folder removed on exit. */
let root: string | null = null;
function localRoot(): string {
  if (!root) {
    const dir = mkdtempSync(path.join(tmpdir(), "autoresearch-git-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    root = dir;
  }
  return root;
}

/** Per local repository: set up yet, the commits fetched into it, and the trees of the last few. */
interface Local {
  ready: Promise<void> | null;
  fetched: Set<string>;
  trees: Map<string, Trees>;
}
const locals = new Map<string, Local>();
const TREES_KEPT = 4;

/** One git command at a time per local repository (fetches write its shallow file and refs). */
const queues = new Map<string, Promise<unknown>>();
function serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const run = (queues.get(key) ?? Promise.resolve()).then(fn, fn);
  queues.set(key, run.catch(() => undefined));
  return run;
}

/** The git address of a repository, from the REST API's base address (github.com or GHES). */
export function gitUrlFor(apiBaseUrl: string, owner: string, repo: string): string {
  const u = new URL(apiBaseUrl);
  if (u.hostname === "api.github.com") u.hostname = "github.com";
  const base = u.pathname.replace(/\/+$/, "").replace(/\/api\/v3$/, "");
  return `${u.protocol}//${u.host}${base}/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}.git`;
}

/** A commit id as git's argument: 40 hex digits, never anything git could read as an option. */
function commitId(sha: string): string {
  if (!/^[0-9a-f]{40}$/.test(sha)) throw new GitWireError(`not a commit id: ${JSON.stringify(sha.slice(0, 80))}`);
  return sha;
}

/** What git said that matters: its fatal, error and remote lines (else its last ones), on one line. */
function gitSaid(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const key = lines.filter((l) => /^(fatal|error|remote|!)/.test(l));
  return (key.length ? key : lines).slice(-3).join(" / ").slice(0, 500);
}

export class GitWire {
  /** Its local repository (shared by every GitWire of the same remote in this process). */
  readonly dir: string;
  private readonly local: Local;

  constructor(private readonly o: GitWireOptions) {
    const id = createHash("sha256").update(o.url.toLowerCase()).digest("hex").slice(0, 16);
    this.dir = path.join(localRoot(), id);
    let local = locals.get(this.dir);
    if (!local) locals.set(this.dir, (local = { ready: null, fetched: new Set(), trees: new Map() }));
    this.local = local;
  }

  /**
   * Commit `files` (path → full text) on top of `parentSha` and point `branch` at the commit,
   * creating or moving it (the branch is the bot's own). Returns the commit's sha. Files equal to
   * the parent's give the parent's tree: with no change at all the commit is empty.
   */
  commit(branch: string, parentSha: string, files: Record<string, string>, message: string): Promise<string> {
    return serial(this.dir, async () => {
      await this.fetchCommit(commitId(parentSha));
      // The objects are built here, not by a git process per step (src/github/git-objects.ts),
      // and stored loose; git only pushes them.
      const objects = commitObjects({ parent: parentSha, trees: await this.treesOf(parentSha), files, message, author: this.o.author, at: new Date() });
      for (const obj of objects) await this.store(obj);
      const sha = objects[objects.length - 1]!.sha;
      await this.push(["--force", `${sha}:refs/heads/${branch}`], `push ${branch}`);
      return sha;
    });
  }

  /** The parent's trees (commits are mostly made on the same head: the last few are kept). */
  private async treesOf(parentSha: string): Promise<Trees> {
    const cached = this.local.trees.get(parentSha);
    if (cached) return cached;
    const trees = parseLsTree(await this.git(["ls-tree", "-z", "-r", "-t", parentSha]));
    this.local.trees.set(parentSha, trees);
    if (this.local.trees.size > TREES_KEPT) this.local.trees.delete(this.local.trees.keys().next().value!);
    return trees;
  }

  /** Store an object loose, as git does (zlib-compressed, under its sha; written whole, then renamed). */
  private async store(obj: GitObject): Promise<void> {
    const file = path.join(this.dir, "objects", obj.sha.slice(0, 2), obj.sha.slice(2));
    if (existsSync(file)) return;
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, deflateSync(obj.raw), { mode: 0o444 });
    await rename(tmp, file);
  }

  /**
   * Delete branches in one push, each only while it still points at the given commit (a branch
   * a person moved is left alone). Returns the branches that were not deleted because they had
   * moved or were already gone; the others are deleted all the same.
   */
  deleteBranches(branches: { name: string; sha: string }[]): Promise<string[]> {
    if (!branches.length) return Promise.resolve([]);
    return serial(this.dir, async () => {
      for (const b of branches) commitId(b.sha);
      await this.init();
      const leases = branches.map((b) => `--force-with-lease=refs/heads/${b.name}:${b.sha}`);
      const specs = branches.map((b) => `:refs/heads/${b.name}`);
      const out = await this.push([...leases, ...specs], `delete ${branches.length} branch(es)`, { tolerate: true });
      // --porcelain: one line per ref, "<flag>\t<from>:<to>\t<summary>"; "!" is a refusal
      // ("stale info": the branch is not at the commit it was expected at, or is gone).
      const refused: string[] = [];
      for (const line of out.split("\n")) {
        const m = /^!\t[^\t]*:refs\/heads\/([^\t]+)\t/.exec(line);
        if (m) refused.push(m[1]!);
      }
      return refused;
    });
  }

  private init(): Promise<void> {
    const local = this.local;
    local.ready ??= (async () => {
      mkdirSync(this.dir, { recursive: true });
      await this.git(["init", "--bare", "-q", "."]);
      // A partial clone from "origin": its file contents are fetched only if git ever needs one.
      for (const [k, v] of [
        ["core.repositoryformatversion", "1"],
        ["extensions.partialClone", "origin"],
        ["remote.origin.url", this.o.url],
        ["remote.origin.promisor", "true"],
        ["remote.origin.partialclonefilter", "blob:none"],
        ["gc.auto", "0"],
      ] as const) {
        await this.git(["config", k, v]);
      }
    })();
    return local.ready.catch((err: unknown) => {
      local.ready = null;
      throw err;
    });
  }

  private async fetchCommit(sha: string): Promise<void> {
    await this.init();
    if (this.local.fetched.has(sha)) return;
    await this.git(["fetch", "-q", "--depth=1", "--filter=blob:none", "--no-tags", "--no-write-fetch-head", "origin", sha], {
      auth: true,
      what: `fetch ${sha.slice(0, 7)}`,
    });
    this.local.fetched.add(sha);
  }

  private async push(args: string[], what: string, o: { tolerate?: boolean } = {}): Promise<string> {
    // Only the leader writes: a pass still running when its bot stepped down stops here.
    if (this.o.mayWrite && !this.o.mayWrite()) throw new NotLeaderError(`git ${what}`);
    return this.git(["push", "--porcelain", "--no-verify", "origin", ...args], { auth: true, what, tolerate: o.tolerate });
  }

  /** Run git in the local repository; its stdout, or a GitWireError naming the step and git's own words. */
  private async git(args: string[], o: { auth?: boolean; what?: string; tolerate?: boolean } = {}): Promise<string> {
    const auth = o.auth ? await this.authEnv() : {};
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: this.dir,
      // Nothing from the machine's or the user's git configuration, and never a prompt.
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_TERMINAL_PROMPT: "0",
      GIT_DIR: this.dir,
      LC_ALL: "C",
      ...auth,
    };
    const timeoutMs = this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise<string>((resolve, reject) => {
      const child = spawn("git", args, { cwd: this.dir, env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
      child.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new GitWireError(e.code === "ENOENT" ? "git is not installed: install git, or set AUTORESEARCH_GIT_PUSH=off to commit through the REST API" : `git ${args[0]} failed: ${e.message}`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        if (code === 0 || (o.tolerate && code === 1 && out)) return resolve(out);
        const why = signal ? `was stopped after ${Math.round(timeoutMs / 1000)} s` : `exited ${code}`;
        const said = gitSaid(err || out);
        reject(new GitWireError(`GitHub git ${o.what ?? args[0]} failed: git ${why}${said ? `: ${said}` : ""}`));
      });
    });
  }

  private async authEnv(): Promise<Record<string, string>> {
    const token = await this.o.token();
    const basic = Buffer.from(`x-access-token:${token}`).toString("base64");
    return {
      GIT_CONFIG_COUNT: "3",
      GIT_CONFIG_KEY_0: "http.extraHeader",
      GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
      // No stored credentials and no helper asking for them: the header is the only login.
      GIT_CONFIG_KEY_1: "credential.helper",
      GIT_CONFIG_VALUE_1: "",
      // The header goes to the address the API named and nowhere a redirect points.
      GIT_CONFIG_KEY_2: "http.followRedirects",
      GIT_CONFIG_VALUE_2: "false",
    };
  }
}

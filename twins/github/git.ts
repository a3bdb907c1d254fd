// A bare git repository driven with the git CLI. The GitHub twin keeps every repository's objects
// and branches here, so SHAs, trees, merges and tarballs are real git.
//
// Objects are written with plumbing (`hash-object -w`, `mktree`, `commit-tree`), refs moved with
// `update-ref` (atomic compare-and-swap), and read through one long-lived `git cat-file --batch`
// per repository. Commit-graph queries over fixed SHAs (ancestry, merge bases, diffs, merges) are
// pure, so their results are cached.

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

export const ZERO_SHA = "0000000000000000000000000000000000000000";
export const EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

export interface GitIdentity {
  name: string;
  email: string;
  /** ISO 8601 date. */
  date: string;
}

export interface CommitInfo {
  sha: string;
  tree: string;
  parents: string[];
  author: GitIdentity;
  committer: GitIdentity;
  message: string;
}

export interface TreeEntry {
  mode: string;
  type: "blob" | "tree" | "commit";
  sha: string;
  path: string;
  /** Blob size in bytes (blobs only). */
  size?: number;
}

/** A change to apply on a tree: a blob (or gitlink) at a path, or null to delete the path. */
export type TreeChange = { mode: string; sha: string } | null;

export interface DiffEntry {
  path: string;
  status: "added" | "removed" | "modified";
  oldSha: string | null;
  newSha: string | null;
  oldMode: string | null;
  newMode: string | null;
  additions: number;
  deletions: number;
  /** Unified diff hunks (from the first `@@`), undefined for binary files. */
  patch?: string;
}

export class GitError extends Error {
  constructor(
    message: string,
    readonly code: number,
    readonly stderr: string,
  ) {
    super(message);
  }
}

interface RunOptions {
  input?: Buffer | string;
  env?: Record<string, string>;
  /** Exit codes that are not errors (default [0]). */
  ok?: number[];
}

interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number;
}

const BASE_ENV: Record<string, string> = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_TERMINAL_PROMPT: "0",
  GIT_LITERAL_PATHSPECS: "1",
  LC_ALL: "C",
};

function gitEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of ["PATH", "HOME", "TMPDIR", "SYSTEMROOT"]) {
    const v = process.env[key];
    if (v !== undefined) env[key] = v;
  }
  return { ...env, ...BASE_ENV, ...extra };
}

// Every git process runGit starts is counted, so that tests can check that the queries answered
// in-process (ancestry, merge bases, rev-lists) start none.
let spawned = 0;

/** How many git processes runGit has started. */
export function gitSpawnCount(): number {
  return spawned;
}

export async function runGit(cwd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  spawned++;
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd, env: gitEnv(opts.env), stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => {
      const result = { stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString("utf8"), code: code ?? -1 };
      if ((opts.ok ?? [0]).includes(result.code)) resolve(result);
      else reject(new GitError(`git ${args.join(" ")} exited ${result.code}: ${result.stderr.trim()}`, result.code, result.stderr));
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

let cachedVersion: [number, number] | undefined;

/** The installed git's major and minor version. */
export async function gitVersion(): Promise<[number, number]> {
  if (!cachedVersion) {
    const { stdout } = await runGit(tmpdir(), ["--version"]);
    const m = /(\d+)\.(\d+)/.exec(stdout.toString());
    cachedVersion = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  }
  return cachedVersion;
}

function identityEnv(prefix: "AUTHOR" | "COMMITTER", id: GitIdentity): Record<string, string> {
  return {
    [`GIT_${prefix}_NAME`]: id.name,
    [`GIT_${prefix}_EMAIL`]: id.email,
    [`GIT_${prefix}_DATE`]: id.date,
  };
}

/** Parses `Name <email> 1700000000 +0100` into an identity with an ISO date (UTC). */
function parseIdentity(line: string): GitIdentity {
  const m = /^(.*) <([^>]*)> (\d+) ([+-]\d{4})$/.exec(line);
  if (!m) return { name: line, email: "", date: new Date(0).toISOString() };
  const date = new Date(Number(m[3]) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
  return { name: m[1] ?? "", email: m[2] ?? "", date };
}

const FULL_SHA = /^[0-9a-f]{40}$/;

/** A ref name safe to map onto the repository's files (no traversal, no odd characters). */
function safeRef(ref: string): boolean {
  return (
    ref.startsWith("refs/") &&
    !ref.includes("..") &&
    !ref.includes("//") &&
    !ref.endsWith("/") &&
    !ref.endsWith(".lock") &&
    !/[\0-\x20~^:?*[\\\x7f]/.test(ref) &&
    !ref.split("/").some((c) => c.startsWith("."))
  );
}

interface RawObject {
  sha: string;
  type: string;
  content: Buffer;
}

/** One `git cat-file --batch` process answering object reads in order. */
class CatFile {
  private child: ChildProcessWithoutNullStreams | null = null;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pending: Array<{ resolve: (o: RawObject | null) => void; reject: (e: Error) => void }> = [];

  constructor(private readonly dir: string) {}

  private start(): ChildProcessWithoutNullStreams {
    const child = spawn("git", ["cat-file", "--batch"], { cwd: this.dir, env: gitEnv(), stdio: ["pipe", "pipe", "pipe"] });
    child.stdout.on("data", (b: Buffer) => {
      this.buffer = this.buffer.length ? Buffer.concat([this.buffer, b]) : b;
      this.drain();
    });
    child.stderr.on("data", () => undefined);
    child.stdin.on("error", () => undefined);
    child.on("close", () => {
      if (this.child === child) this.child = null;
      const waiting = this.pending.splice(0);
      for (const p of waiting) p.reject(new Error("git cat-file exited"));
    });
    // The reader must not keep the process alive on its own.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr] as unknown as Array<{ unref?: () => void }>) s.unref?.();
    return child;
  }

  private drain(): void {
    for (;;) {
      const next = this.pending[0];
      if (!next) return;
      const nl = this.buffer.indexOf(10);
      if (nl === -1) return;
      const header = this.buffer.subarray(0, nl).toString("utf8");
      const parts = header.split(" ");
      if (parts.length === 2 && (parts[1] === "missing" || parts[1] === "ambiguous")) {
        this.buffer = this.buffer.subarray(nl + 1);
        this.pending.shift();
        next.resolve(null);
        continue;
      }
      const size = Number(parts[2]);
      if (this.buffer.length < nl + 1 + size + 1) return;
      const content = Buffer.from(this.buffer.subarray(nl + 1, nl + 1 + size));
      this.buffer = this.buffer.subarray(nl + 1 + size + 1);
      this.pending.shift();
      next.resolve({ sha: parts[0] ?? "", type: parts[1] ?? "", content });
    }
  }

  read(name: string): Promise<RawObject | null> {
    if (name.includes("\n")) return Promise.resolve(null);
    this.child ??= this.start();
    const child = this.child;
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      child.stdin.write(`${name}\n`);
    });
  }

  close(): void {
    this.child?.stdin.end();
    this.child = null;
  }
}

/** A bounded memo for results that depend only on object ids. */
class Memo<V> {
  private readonly map = new Map<string, Promise<V>>();
  constructor(private readonly max = 4000) {}
  get(key: string, compute: () => Promise<V>): Promise<V> {
    let v = this.map.get(key);
    if (!v) {
      if (this.map.size >= this.max) this.map.clear();
      v = compute();
      this.map.set(key, v);
      v.catch(() => this.map.delete(key));
    }
    return v;
  }
}

/** The parents named in a commit object's header. */
function commitParents(content: Buffer): string[] {
  const end = content.indexOf("\n\n");
  const header = content.subarray(0, end === -1 ? content.length : end).toString("utf8");
  const parents: string[] = [];
  for (const line of header.split("\n")) if (line.startsWith("parent ")) parents.push(line.slice(7));
  return parents;
}

/**
 * A commit in the twin's in-process commit graph: its parents and its generation number (one more
 * than its highest parent's; roots are 1). An ancestor's generation is always lower than its
 * descendants', which is what bounds the walks below.
 */
interface GraphNode {
  parents: string[];
  gen: number;
}

/** Commits to visit, highest generation first, so each commit is visited after all its children. */
class GenQueue {
  private readonly items: Array<{ sha: string; gen: number }> = [];

  push(sha: string, gen: number): void {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.items[mid]?.gen ?? 0) < gen) lo = mid + 1;
      else hi = mid;
    }
    this.items.splice(lo, 0, { sha, gen });
  }

  pop(): string | undefined {
    return this.items.pop()?.sha;
  }

  some(pred: (sha: string) => boolean): boolean {
    return this.items.some((i) => pred(i.sha));
  }
}

/**
 * git commands that never move a ref (they read objects, or write objects and temporary
 * indexes): the listing of refs outlives them. Any other command drops it.
 */
const READS_REFS_ONLY = new Set([
  "archive", "cat-file", "commit-tree", "diff-tree", "hash-object", "ls-files", "merge-base", "merge-file", "merge-tree",
  "mktree", "read-tree", "rev-list", "rev-parse", "update-index", "write-tree",
]);

/** Parsed commits kept per repository; far above the few thousand commits a twin repository holds. */
const GRAPH_MAX = 50_000;

export class GitRepo {
  private readonly cat: CatFile;
  private readonly memo = new Memo<unknown>();
  private readonly graph = new Map<string, GraphNode>();
  /**
   * Every ref with its SHA and object type, sorted, as read since the refs last moved (dropped
   * whenever they may have). A listing walks every loose ref file and asks cat-file for each
   * type: with hundreds of experiment branches that was most of a check run's or a push's time
   * in the twin.
   */
  private refsRead: Promise<Array<{ ref: string; sha: string; type: string }>> | null = null;
  /**
   * The last listing read, by ref, and the refs that may have moved since it was read (null:
   * any may have). The next listing reads only those again: a push or an update names the refs
   * it moves, and reading every ref after each one was most of what the twin's lock was held for
   * at many slots. Listings are read one after another, so that each starts from the last.
   */
  private lastListing: Map<string, { sha: string; type: string }> | null = null;
  private movedSince: Set<string> | null = null;
  /** While a listing is read: the refs it reads again (null: all of them); undefined when none is read. */
  private reading: Set<string> | null | undefined = undefined;
  private listingChain: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string) {
    this.cat = new CatFile(dir);
  }

  static async init(dir: string, defaultBranch: string): Promise<GitRepo> {
    await runGit(tmpdir(), ["init", "--bare", "-q", `--initial-branch=${defaultBranch}`, dir]);
    return new GitRepo(dir);
  }

  close(): void {
    this.cat.close();
  }

  /** Runs git on this repository; a command that may move refs drops the listing of them, before and after. */
  git(args: string[], opts?: RunOptions): Promise<RunResult> {
    if (READS_REFS_ONLY.has(args[0] ?? "")) return runGit(this.dir, args, opts);
    this.refsChanged();
    return runGit(this.dir, args, opts).finally(() => this.refsChanged());
  }

  /**
   * Refs may have moved (git wrote them, e.g. receive-pack for a push): the next listing reads
   * them again, only `refs` where the write names every ref it may move, else all. Called before
   * and after every such write, so that a listing read while it ran is not kept.
   */
  refsChanged(refs?: Iterable<string>): void {
    this.refsRead = null;
    if (!refs || !this.movedSince) this.movedSince = null;
    else for (const ref of refs) this.movedSince.add(ref);
  }

  private cached<V>(key: string, compute: () => Promise<V>): Promise<V> {
    return this.memo.get(key, compute) as Promise<V>;
  }

  // ---- objects -------------------------------------------------------------------------------

  async writeBlob(content: Buffer | string): Promise<string> {
    const { stdout } = await this.git(["hash-object", "-w", "--stdin"], { input: content });
    return stdout.toString().trim();
  }

  private async readObject(sha: string): Promise<RawObject | null> {
    if (!FULL_SHA.test(sha)) return null;
    return this.cat.read(sha);
  }

  /** `blob`, `tree`, `commit`, `tag`, or null when the object does not exist. */
  async objectType(sha: string): Promise<string | null> {
    if (/^[0-9a-f]{4,39}$/.test(sha)) {
      const full = await this.resolveAbbrev(sha);
      return full ? ((await this.readObject(full))?.type ?? null) : null;
    }
    return (await this.readObject(sha))?.type ?? null;
  }

  private async resolveAbbrev(sha: string): Promise<string | null> {
    const r = await this.git(["rev-parse", "--verify", "-q", "--end-of-options", sha], { ok: [0, 1, 128] });
    return r.code === 0 ? r.stdout.toString().trim() : null;
  }

  async readBlob(sha: string): Promise<Buffer> {
    const o = await this.readObject(sha);
    if (!o || o.type !== "blob") throw new GitError(`blob ${sha} not found`, 128, "");
    return o.content;
  }

  async readCommit(sha: string): Promise<CommitInfo> {
    let o = await this.readObject(sha);
    while (o && o.type === "tag") {
      const target = /^object ([0-9a-f]{40})$/m.exec(o.content.toString("utf8"))?.[1];
      o = target ? await this.readObject(target) : null;
    }
    if (!o || o.type !== "commit") throw new GitError(`commit ${sha} not found`, 128, "");
    const raw = o.content.toString("utf8");
    const split = raw.indexOf("\n\n");
    const header = split === -1 ? raw : raw.slice(0, split);
    const info: CommitInfo = {
      sha: o.sha,
      tree: "",
      parents: [],
      author: parseIdentity(""),
      committer: parseIdentity(""),
      message: split === -1 ? "" : raw.slice(split + 2),
    };
    for (const line of header.split("\n")) {
      const sp = line.indexOf(" ");
      const key = line.slice(0, sp);
      const value = line.slice(sp + 1);
      if (key === "tree") info.tree = value;
      else if (key === "parent") info.parents.push(value);
      else if (key === "author") info.author = parseIdentity(value);
      else if (key === "committer") info.committer = parseIdentity(value);
    }
    return info;
  }

  async commitTree(tree: string, parents: string[], message: string, author: GitIdentity, committer: GitIdentity): Promise<string> {
    const args = ["commit-tree", tree];
    for (const p of parents) args.push("-p", p);
    args.push("-F", "-");
    const { stdout } = await this.git(args, {
      input: message,
      env: { ...identityEnv("AUTHOR", author), ...identityEnv("COMMITTER", committer) },
    });
    return stdout.toString().trim();
  }

  /** The direct entries of a tree object (name, mode, type, sha). */
  async readTree(sha: string): Promise<TreeEntry[]> {
    const o = await this.readObject(sha);
    if (!o || o.type !== "tree") throw new GitError(`tree ${sha} not found`, 128, "");
    const entries: TreeEntry[] = [];
    const buf = o.content;
    let i = 0;
    while (i < buf.length) {
      const sp = buf.indexOf(32, i);
      const nul = buf.indexOf(0, sp);
      const mode = buf.subarray(i, sp).toString("ascii").padStart(6, "0");
      const path = buf.subarray(sp + 1, nul).toString("utf8");
      const oid = buf.subarray(nul + 1, nul + 21).toString("hex");
      const type = mode === "040000" ? "tree" : mode === "160000" ? "commit" : "blob";
      entries.push({ mode, type, sha: oid, path });
      i = nul + 21;
    }
    return entries;
  }

  /** Entries of a tree (or a commit's tree); recursive lists blobs and subtrees at every depth. */
  async listTree(treeish: string, recursive: boolean, withSizes = true): Promise<TreeEntry[]> {
    const tree = await this.treeOf(treeish);
    if (!tree) throw new GitError(`no tree for ${treeish}`, 128, "");
    const out: TreeEntry[] = [];
    const walk = async (sha: string, prefix: string) => {
      for (const e of await this.readTree(sha)) {
        const entry = { ...e, path: prefix + e.path };
        if (entry.type === "blob" && withSizes) entry.size = (await this.readObject(entry.sha))?.content.length ?? 0;
        out.push(entry);
        if (recursive && entry.type === "tree") await walk(entry.sha, `${entry.path}/`);
      }
    };
    await walk(tree, "");
    return out;
  }

  /** The tree of a tree-ish (tree or commit SHA). */
  async treeOf(treeish: string): Promise<string | null> {
    const o = await this.readObject(treeish);
    if (!o) return null;
    if (o.type === "tree") return o.sha;
    if (o.type === "commit" || o.type === "tag") return (await this.readCommit(o.sha)).tree;
    return null;
  }

  /** The entry at `path` in a commit's (or tree's) tree, or null. */
  async entryAt(treeish: string, path: string): Promise<TreeEntry | null> {
    const tree = await this.treeOf(treeish);
    if (!tree) return null;
    const parts = path.split("/").filter(Boolean);
    let entry: TreeEntry = { mode: "040000", type: "tree", sha: tree, path: "" };
    for (const [i, name] of parts.entries()) {
      if (entry.type !== "tree") return null;
      const next = (await this.readTree(entry.sha)).find((e) => e.path === name);
      if (!next) return null;
      entry = { ...next, path: parts.slice(0, i + 1).join("/") };
    }
    if (entry.type === "blob") entry.size = (await this.readObject(entry.sha))?.content.length ?? 0;
    return entry;
  }

  /**
   * Builds a tree from an optional base tree plus changes (nested paths allowed; null deletes a
   * file or a whole directory) with one `git mktree` per changed directory.
   */
  async buildTree(baseTree: string | null, changes: Map<string, TreeChange>): Promise<string> {
    const normalized = new Map<string, TreeChange>();
    for (const [p, c] of changes) normalized.set(p.split("/").filter(Boolean).join("/"), c);
    const sha = await this.buildLevel(baseTree, [...normalized]);
    return sha ?? (await this.mktree([]));
  }

  private async buildLevel(tree: string | null, changes: Array<[string, TreeChange]>): Promise<string | null> {
    const entries = new Map<string, TreeEntry>();
    if (tree) for (const e of await this.readTree(tree)) entries.set(e.path, e);
    const nested = new Map<string, Array<[string, TreeChange]>>();
    for (const [path, change] of changes) {
      const slash = path.indexOf("/");
      if (slash === -1) {
        if (change === null) entries.delete(path);
        else entries.set(path, { path, mode: change.mode, type: change.mode === "160000" ? "commit" : "blob", sha: change.sha });
      } else {
        const head = path.slice(0, slash);
        if (!nested.has(head)) nested.set(head, []);
        nested.get(head)?.push([path.slice(slash + 1), change]);
      }
    }
    for (const [name, sub] of nested) {
      const current = entries.get(name);
      const subSha = await this.buildLevel(current?.type === "tree" ? current.sha : null, sub);
      if (subSha === null) entries.delete(name);
      else entries.set(name, { path: name, mode: "040000", type: "tree", sha: subSha });
    }
    if (entries.size === 0) return null;
    return this.mktree([...entries.values()]);
  }

  private async mktree(entries: TreeEntry[]): Promise<string> {
    const input = entries.map((e) => `${e.mode} ${e.type} ${e.sha}\t${e.path}\0`).join("");
    const { stdout } = await this.git(["mktree", "-z"], { input });
    return stdout.toString().trim();
  }

  // ---- refs ----------------------------------------------------------------------------------

  private async packedRefs(): Promise<Map<string, string>> {
    const refs = new Map<string, string>();
    try {
      for (const line of (await readFile(join(this.dir, "packed-refs"), "utf8")).split("\n")) {
        const m = /^([0-9a-f]{40}) (refs\/\S+)$/.exec(line);
        if (m?.[1] && m[2]) refs.set(m[2], m[1]);
      }
    } catch {
      // no packed refs
    }
    return refs;
  }

  /**
   * The SHA a full ref (refs/heads/x) points to, or null. Answered from the last listing when the
   * ref has not moved since it was read (nor is being read again), else from git's files.
   */
  async refSha(ref: string): Promise<string | null> {
    if (!safeRef(ref)) return null;
    const listed = this.lastListing;
    const unmoved = listed && this.movedSince && !this.movedSince.has(ref) && (this.reading === undefined || (this.reading !== null && !this.reading.has(ref)));
    if (unmoved) return listed.get(ref)?.sha ?? null;
    return this.readRef(ref);
  }

  /** The SHA a full ref points to, read from its loose file or packed-refs. */
  private async readRef(ref: string): Promise<string | null> {
    try {
      const content = (await readFile(join(this.dir, ref), "utf8")).trim();
      if (FULL_SHA.test(content)) return content;
      const sym = /^ref: (refs\/\S+)$/.exec(content)?.[1];
      return sym && sym !== ref && safeRef(sym) ? this.readRef(sym) : null;
    } catch {
      return (await this.packedRefs()).get(ref) ?? null;
    }
  }

  /** All refs under a prefix (e.g. refs/heads/) with their SHAs and object types, sorted by name. */
  async listRefs(prefix = "refs/"): Promise<Array<{ ref: string; sha: string; type: string }>> {
    let read = this.refsRead;
    if (!read) {
      const refs = this.readRefs();
      read = refs;
      this.refsRead = refs;
      refs.catch(() => {
        if (this.refsRead === refs) this.refsRead = null;
      });
    }
    return (await read).filter((r) => r.ref.startsWith(prefix)).map((r) => ({ ...r }));
  }

  private readRefs(): Promise<Array<{ ref: string; sha: string; type: string }>> {
    const read = this.listingChain.then(() => this.readRefsAfterLast());
    this.listingChain = read.catch(() => undefined);
    return read;
  }

  /** A listing from the last one, with the refs that moved since read again (all of them when that is not known). */
  private async readRefsAfterLast(): Promise<Array<{ ref: string; sha: string; type: string }>> {
    const last = this.lastListing;
    const moved = last ? this.movedSince : null;
    // Refs that move from here on are read again by the next listing (whether or not this one saw them move).
    this.movedSince = new Set();
    this.reading = moved;
    let found: Map<string, { sha: string; type: string }>;
    try {
      if (last && moved) {
        found = new Map(last);
        for (const ref of moved) {
          const sha = await this.readRef(ref);
          if (sha) found.set(ref, { sha, type: (await this.objectType(sha)) ?? "commit" });
          else found.delete(ref);
        }
      } else {
        found = await this.readAllRefs();
      }
    } catch (err) {
      this.movedSince = null;
      throw err;
    } finally {
      this.reading = undefined;
    }
    this.lastListing = found;
    return [...found]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([ref, { sha, type }]) => ({ ref, sha, type }));
  }

  /** Every ref, from packed-refs and the loose ref files. */
  private async readAllRefs(): Promise<Map<string, { sha: string; type: string }>> {
    const shas = await this.packedRefs();
    const walk = async (rel: string) => {
      let dirents;
      try {
        dirents = await readdir(join(this.dir, rel), { withFileTypes: true });
      } catch {
        return;
      }
      for (const d of dirents) {
        const name = `${rel}/${d.name}`;
        if (d.isDirectory()) await walk(name);
        else if (d.isFile() && !d.name.endsWith(".lock")) {
          const sha = await this.readRef(name);
          if (sha) shas.set(name, sha);
        }
      }
    };
    await walk("refs");
    const found = new Map<string, { sha: string; type: string }>();
    for (const [ref, sha] of shas) found.set(ref, { sha, type: (await this.objectType(sha)) ?? "commit" });
    return found;
  }

  /** Resolves a branch or tag name, full ref or (abbreviated) SHA to a commit SHA; null if none. */
  async resolveCommit(rev: string): Promise<string | null> {
    if (!rev || rev.startsWith("-") || rev.includes("..") || rev.includes("\n")) return null;
    let sha: string | null = null;
    if (FULL_SHA.test(rev)) sha = rev;
    else if (rev.startsWith("refs/")) sha = await this.refSha(rev);
    else sha = (await this.refSha(`refs/heads/${rev}`)) ?? (await this.refSha(`refs/tags/${rev}`));
    if (!sha && /^[0-9a-f]{4,39}$/.test(rev)) sha = await this.resolveAbbrev(rev);
    if (!sha) return null;
    try {
      return (await this.readCommit(sha)).sha;
    } catch {
      return null;
    }
  }

  /** `git check-ref-format` rules (checked here; they are pure string rules). */
  validRefName(ref: string): boolean {
    return safeRef(ref) && !ref.includes("@{") && !ref.endsWith(".") && ref !== "@" && ref.split("/").length >= 2;
  }

  /** Atomically moves a ref; with `oldSha` the update fails unless the ref is there (ZERO_SHA: absent). */
  async updateRef(ref: string, newSha: string, oldSha?: string): Promise<boolean> {
    const args = ["update-ref", ref, newSha];
    if (oldSha !== undefined) args.push(oldSha);
    return this.moveRef(ref, args);
  }

  async deleteRef(ref: string, oldSha?: string): Promise<boolean> {
    const args = ["update-ref", "-d", ref];
    if (oldSha !== undefined) args.push(oldSha);
    return this.moveRef(ref, args);
  }

  /** `git update-ref` on one ref: only that ref is read again for the next listing. */
  private async moveRef(ref: string, args: string[]): Promise<boolean> {
    const moved = safeRef(ref) ? [ref] : undefined;
    this.refsChanged(moved);
    try {
      return (await runGit(this.dir, args, { ok: [0, 1, 128] })).code === 0;
    } finally {
      this.refsChanged(moved);
    }
  }

  // ---- commit graph (cached: results depend only on the SHAs) ----------------------------------
  //
  // Ancestry, merge bases and rev-lists are answered from commits read through cat-file: starting a
  // git process costs milliseconds of CPU, a walk over parsed commits microseconds. What is not
  // answered here exactly (a missing object, several best merge bases, a rev-list whose order git
  // picks among branches) is asked of git, which also keeps git's errors for unknown objects.

  isAncestor(ancestor: string, descendant: string): Promise<boolean> {
    return this.cached(`anc:${ancestor}:${descendant}`, async () => {
      if (ancestor === descendant) return true;
      const known = await this.reaches(descendant, ancestor);
      if (known !== undefined) return known;
      const r = await this.git(["merge-base", "--is-ancestor", ancestor, descendant], { ok: [0, 1] });
      return r.code === 0;
    });
  }

  mergeBase(a: string, b: string): Promise<string | null> {
    return this.cached(`mb:${a}:${b}`, async () => {
      if (a === b) return a;
      const known = await this.soleMergeBase(a, b);
      if (known !== undefined) return known;
      const r = await this.git(["merge-base", a, b], { ok: [0, 1] });
      return r.code === 0 ? r.stdout.toString().trim() : null;
    });
  }

  /** Commits reachable from `head` and not from any of `exclude`, oldest first. */
  revList(head: string, exclude: string[], limit?: number): Promise<string[]> {
    const ex = [...new Set(exclude)].sort();
    return this.cached(`rl:${head}:${ex.join(",")}:${limit ?? ""}`, async () => {
      if (ex.includes(head)) return [];
      const known = await this.linearRevList(head, ex, limit);
      if (known !== undefined) return known;
      const args = ["rev-list", "--topo-order"];
      if (limit !== undefined) args.push(`--max-count=${limit}`);
      args.push(head);
      for (const e of ex) args.push(`^${e}`);
      args.push("--");
      const { stdout } = await this.git(args);
      return stdout.toString().split("\n").filter(Boolean).reverse();
    });
  }

  /**
   * The commit a full SHA names (tags peeled), once it and all its ancestors are in the graph with
   * their generations; null when it, or any commit in its history, is missing or not a commit.
   */
  private async graphCommit(name: string): Promise<string | null> {
    if (this.graph.has(name)) return name;
    if (this.graph.size >= GRAPH_MAX) this.graph.clear();
    let o = await this.readObject(name);
    while (o?.type === "tag") {
      const target = /^object ([0-9a-f]{40})$/m.exec(o.content.toString("utf8"))?.[1];
      o = target ? await this.readObject(target) : null;
    }
    if (!o || o.type !== "commit") return null;
    const read = new Map<string, string[]>([[o.sha, commitParents(o.content)]]);
    // Depth-first without recursion (histories are deeper than the stack): a commit is numbered
    // once all its parents are; parents not yet read are read together, pipelined through cat-file.
    const stack = [o.sha];
    for (let sha = stack.at(-1); sha !== undefined; sha = stack.at(-1)) {
      const parents = read.get(sha) ?? [];
      const unnumbered = parents.filter((p) => !this.graph.has(p));
      if (this.graph.has(sha) || unnumbered.length === 0) {
        const gen = 1 + Math.max(0, ...parents.map((p) => this.graph.get(p)?.gen ?? 0));
        if (!this.graph.has(sha)) this.graph.set(sha, { parents, gen });
        stack.pop();
        continue;
      }
      const unread = unnumbered.filter((p) => !read.has(p));
      const objects = await Promise.all(unread.map((p) => this.readObject(p)));
      for (const [i, p] of unread.entries()) {
        const parent = objects[i];
        if (parent?.type !== "commit") return null;
        read.set(p, commitParents(parent.content));
      }
      stack.push(...unnumbered);
    }
    return this.graph.has(o.sha) ? o.sha : null;
  }

  /** Whether `ancestor` is reachable from `descendant`; undefined when git must answer. */
  private async reaches(descendant: string, ancestor: string): Promise<boolean | undefined> {
    const from = await this.graphCommit(descendant);
    const to = await this.graphCommit(ancestor);
    const target = to === null ? undefined : this.graph.get(to);
    if (from === null || to === null || !target) return undefined;
    if (from === to) return true;
    // Only commits of a higher generation than the ancestor can lead to it.
    const seen = new Set([from]);
    const todo = [from];
    for (let sha = todo.pop(); sha !== undefined; sha = todo.pop()) {
      const node = this.graph.get(sha);
      if (!node) return undefined;
      for (const p of node.parents) {
        if (p === to) return true;
        const gen = this.graph.get(p)?.gen;
        if (gen === undefined) return undefined;
        if (gen > target.gen && !seen.has(p)) {
          seen.add(p);
          todo.push(p);
        }
      }
    }
    return false;
  }

  /**
   * The best common ancestor of two commits when there is exactly one (null when there is none);
   * undefined when git must answer. Both sides' ancestors are painted highest generation first, so a
   * commit's marks are complete when it is visited: one carrying both sides' marks is a common
   * ancestor, and marks its own ancestors stale (not best). The walk ends when only stale commits are
   * left to visit.
   */
  private async soleMergeBase(a: string, b: string): Promise<string | null | undefined> {
    const ca = await this.graphCommit(a);
    const cb = await this.graphCommit(b);
    if (ca === null || cb === null) return undefined;
    if (ca === cb) return ca;
    const A = 1;
    const B = 2;
    const STALE = 4;
    const marks = new Map([
      [ca, A],
      [cb, B],
    ]);
    const queue = new GenQueue();
    for (const sha of [ca, cb]) {
      const gen = this.graph.get(sha)?.gen;
      if (gen === undefined) return undefined;
      queue.push(sha, gen);
    }
    const bases: string[] = [];
    while (queue.some((sha) => ((marks.get(sha) ?? 0) & STALE) === 0)) {
      const sha = queue.pop();
      const node = sha === undefined ? undefined : this.graph.get(sha);
      if (sha === undefined || !node) return undefined;
      let m = marks.get(sha) ?? 0;
      if ((m & (A | B)) === (A | B)) {
        if ((m & STALE) === 0) bases.push(sha);
        m |= STALE;
      }
      for (const p of node.parents) {
        const pm = marks.get(p) ?? 0;
        if ((pm | m) === pm) continue;
        marks.set(p, pm | m);
        // A parent's generation is lower than every commit visited so far, so one already marked
        // is still waiting in the queue.
        if (pm !== 0) continue;
        const gen = this.graph.get(p)?.gen;
        if (gen === undefined) return undefined;
        queue.push(p, gen);
      }
    }
    if (bases.length > 1) return undefined;
    return bases[0] ?? null;
  }

  /**
   * `revList` when its answer is a single line of commits (each one's only parent in the list is the
   * one before it), whose order is then the only topological one; undefined when git must answer.
   * The walk visits commits highest generation first, so whether a commit is reachable from an
   * excluded one is settled when it is visited; it ends when only excluded commits are left.
   */
  private async linearRevList(head: string, exclude: string[], limit?: number): Promise<string[] | undefined> {
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) return undefined;
    const tip = await this.graphCommit(head);
    if (tip === null) return undefined;
    const excluded = new Map<string, boolean>([[tip, false]]);
    for (const e of exclude) {
      const c = await this.graphCommit(e);
      if (c === null) return undefined;
      excluded.set(c, true);
    }
    const queue = new GenQueue();
    for (const sha of excluded.keys()) {
      const gen = this.graph.get(sha)?.gen;
      if (gen === undefined) return undefined;
      queue.push(sha, gen);
    }
    const listed = new Set<string>();
    while (queue.some((sha) => !excluded.get(sha))) {
      const sha = queue.pop();
      const node = sha === undefined ? undefined : this.graph.get(sha);
      if (sha === undefined || !node) return undefined;
      const ex = excluded.get(sha) ?? false;
      if (!ex) listed.add(sha);
      for (const p of node.parents) {
        const was = excluded.get(p);
        if (was === true || was === ex) continue;
        excluded.set(p, ex);
        if (was !== undefined) continue; // already queued; now excluded
        const gen = this.graph.get(p)?.gen;
        if (gen === undefined) return undefined;
        queue.push(p, gen);
      }
    }
    const line: string[] = [];
    for (let sha: string | undefined = listed.has(tip) ? tip : undefined; sha !== undefined; ) {
      line.push(sha);
      const inList = (this.graph.get(sha)?.parents ?? []).filter((p) => listed.has(p));
      if (inList.length > 1) return undefined;
      sha = inList[0];
    }
    if (line.length !== listed.size) return undefined;
    // Like --max-count: the newest `limit` commits, then oldest first.
    return (limit === undefined ? line : line.slice(0, limit)).reverse();
  }

  /** Commits reachable from `head`, newest first, optionally only those touching `path`. */
  history(head: string, opts: { path?: string; limit?: number } = {}): Promise<string[]> {
    return this.cached(`hist:${head}:${opts.path ?? ""}:${opts.limit ?? ""}`, async () => {
      const args = ["rev-list"];
      if (opts.limit !== undefined) args.push(`--max-count=${opts.limit}`);
      args.push(head, "--");
      if (opts.path) args.push(opts.path);
      const { stdout } = await this.git(args);
      return stdout.toString().split("\n").filter(Boolean);
    });
  }

  /**
   * A real three-way merge of `theirs` into `ours` (merge base computed by git): the merged tree,
   * or null when it conflicts. Uses `git merge-tree --write-tree` (git ≥ 2.38), else read-tree.
   */
  mergeTrees(ours: string, theirs: string): Promise<string | null> {
    return this.cached(`merge:${ours}:${theirs}`, async () => {
      const [major, minor] = await gitVersion();
      if (major > 2 || (major === 2 && minor >= 38)) {
        const r = await this.git(["merge-tree", "--write-tree", "--no-messages", "--name-only", ours, theirs], { ok: [0, 1] });
        if (r.code !== 0) return null;
        return r.stdout.toString().split("\n")[0]?.trim() ?? null;
      }
      return this.mergeWithBase(await this.mergeBase(ours, theirs), ours, theirs);
    });
  }

  /**
   * Three-way merge with an explicit base (any tree-ish; null = empty tree): `git read-tree -m`
   * into a throwaway index, then `git merge-file` for paths changed on both sides.
   */
  mergeWithBase(base: string | null, ours: string, theirs: string): Promise<string | null> {
    return this.cached(`merge3:${base ?? ""}:${ours}:${theirs}`, () => this.mergeWithBaseUncached(base, ours, theirs));
  }

  private async mergeWithBaseUncached(base: string | null, ours: string, theirs: string): Promise<string | null> {
    const index = join(this.dir, `twin-index-${randomBytes(6).toString("hex")}`);
    const env = { GIT_INDEX_FILE: index };
    const scratch = await mkdtemp(join(tmpdir(), "twin-merge-"));
    try {
      const baseTree = base ?? (await this.mktree([]));
      await this.git(["read-tree", "-i", "-m", "--aggressive", baseTree, ours, theirs], { env });
      const { stdout } = await this.git(["ls-files", "-u", "-z"], { env });
      const stages = new Map<string, Map<number, { mode: string; sha: string }>>();
      for (const rec of stdout.toString("utf8").split("\0")) {
        if (!rec) continue;
        const tab = rec.indexOf("\t");
        const [mode = "", sha = "", stage = "0"] = rec.slice(0, tab).split(" ");
        const path = rec.slice(tab + 1);
        if (!stages.has(path)) stages.set(path, new Map());
        stages.get(path)?.set(Number(stage), { mode, sha });
      }
      const lines: string[] = [];
      for (const [path, s] of stages) {
        const o = s.get(2);
        const t = s.get(3);
        const b = s.get(1);
        if (!o || !t || o.mode !== t.mode) return null; // delete/modify or mode conflict
        const files = [join(scratch, "ours"), join(scratch, "base"), join(scratch, "theirs")] as const;
        await writeFile(files[0], await this.readBlob(o.sha));
        await writeFile(files[1], b ? await this.readBlob(b.sha) : "");
        await writeFile(files[2], await this.readBlob(t.sha));
        const merged = await this.git(["merge-file", "-p", ...files], { ok: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] });
        if (merged.code !== 0) return null;
        const sha = await this.writeBlob(merged.stdout);
        lines.push(`0 ${ZERO_SHA}\t${path}`, `${o.mode} ${sha}\t${path}`);
      }
      if (lines.length > 0) await this.git(["update-index", "--index-info"], { env, input: lines.join("\n") + "\n" });
      return (await this.git(["write-tree"], { env })).stdout.toString().trim();
    } finally {
      await rm(index, { force: true });
      await rm(scratch, { recursive: true, force: true });
    }
  }

  /** Files that differ between two tree-ishes (from → to; null = empty tree), with line counts and patches. */
  diff(from: string | null, to: string): Promise<DiffEntry[]> {
    return this.cached(`diff:${from ?? ""}:${to}`, () => this.diffUncached(from, to));
  }

  private async diffUncached(from: string | null, to: string): Promise<DiffEntry[]> {
    const fromTree = from ? await this.treeOf(from) : EMPTY_TREE;
    const toTree = await this.treeOf(to);
    if (!fromTree || !toTree) throw new GitError(`cannot diff ${from ?? "(empty)"}..${to}`, 128, "");
    if (fromTree === toTree) return [];
    // One git process: the raw listing (NUL-separated records, then one more NUL) and, after
    // it, one patch for all files, whose sections come in the listing's order.
    const out = (await this.git(["diff-tree", "-r", "-z", "--no-renames", "--raw", "-p", "--no-color", "--full-index", fromTree, toTree])).stdout;
    const entries: DiffEntry[] = [];
    let at = 0;
    while (out[at] === 0x3a /* ":" */) {
      const metaEnd = out.indexOf(0, at);
      const pathEnd = metaEnd < 0 ? -1 : out.indexOf(0, metaEnd + 1);
      if (pathEnd < 0) break;
      const [oldMode = "", newMode = "", oldSha = "", newSha = "", status = ""] = out.subarray(at + 1, metaEnd).toString("utf8").split(" ");
      entries.push({
        path: out.subarray(metaEnd + 1, pathEnd).toString("utf8"),
        status: status === "A" ? "added" : status === "D" ? "removed" : "modified",
        oldSha: oldSha === ZERO_SHA ? null : oldSha,
        newSha: newSha === ZERO_SHA ? null : newSha,
        oldMode: oldMode === "000000" ? null : oldMode,
        newMode: newMode === "000000" ? null : newMode,
        additions: 0,
        deletions: 0,
      });
      at = pathEnd + 1;
    }
    if (entries.length === 0) return entries;
    if (out[at] === 0) at += 1;
    const patch = out.subarray(at).toString("utf8");
    const sections = patch.split(/^diff --git /m).slice(1);
    sections.forEach((section, i) => {
      const e = entries[i];
      if (!e) return;
      const at = section.indexOf("\n@@");
      if (at === -1) return; // binary or mode-only change
      const body = section.slice(at + 1).replace(/\n$/, "");
      e.patch = body;
      for (const line of body.split("\n")) {
        if (line.startsWith("+")) e.additions++;
        else if (line.startsWith("-")) e.deletions++;
      }
    });
    return entries;
  }

  /** `git diff` text between two tree-ishes (null = empty tree), as GitHub's diff media type serves it. */
  async unifiedDiff(from: string | null, to: string): Promise<string> {
    const fromTree = from ? await this.treeOf(from) : EMPTY_TREE;
    const toTree = await this.treeOf(to);
    if (!fromTree || !toTree) throw new GitError(`cannot diff ${from ?? "(empty)"}..${to}`, 128, "");
    return (await this.git(["diff-tree", "-r", "-p", "--no-renames", "--no-color", fromTree, toTree])).stdout.toString("utf8");
  }

  /** `git archive --format=tar.gz` of a commit with a directory prefix. */
  async archive(commit: string, prefix: string): Promise<Buffer> {
    return (await this.git(["archive", "--format=tar.gz", `--prefix=${prefix}`, commit])).stdout;
  }
}

// Experiment commits and branch deletions over git itself (smart HTTP), not the REST API.
//
// Why: GitHub's secondary limits allow 80 content-generating API requests a minute and 500 an
// hour, and through the API a commit on a new branch costs two of them (the branch, then the
// file) and deleting the branch a third. A push is not an API request: it creates the branch
// with its commit in one go, and one push deletes any number of branches. This is how Renovate
// and most bots that push code do it.
//
// The push is spoken from this process (src/github/git-protocol.ts), with no git program: a git
// process per push cost more CPU than the rest of an experiment's bookkeeping. The bot builds
// the new blobs, trees and commit itself (src/github/git-objects.ts) on the parent's trees, read
// through the REST API (`readTree`) along the changed paths only and kept, so that the usual
// commit (one file, on the head the last one was on) reads nothing. A push is then two requests:
// the refs advertisement, which says where the branch is now, and the commands with the
// packfile. Nothing is checked out and nothing is written to disk.
//
// The token travels in an `Authorization` header only, never in a URL, and never to where a
// redirect points; errors say what the server said, never the token.
import { z } from "zod";
import { commitObjects, pathParts, type GitObject, type TreeEntry, type Trees } from "./git-objects.js";
import {
  GitProtocolError,
  parseAdvertisement,
  parseReportStatus,
  receivePackRequest,
  said,
  validRef,
  ZERO_SHA,
  MAX_COMMANDS,
  type Advertisement,
  type Command,
  type ReportStatus,
} from "./git-protocol.js";
import { NotLeaderError } from "../leader/elector.js";
import { GitHubError } from "./octokit.js";

/** A failed git step: like an API error, tried again on the next pass. */
export class GitWireError extends GitHubError {
  constructor(message: string, status: number | null = null) {
    super(message, status);
  }
}

/** A tree as `readTree` gives it: its sha and its direct entries. */
export interface ReadTree {
  sha: string;
  entries: TreeEntry[];
}

export interface GitWireOptions {
  /** The repository's git address, e.g. https://github.com/owner/repo.git. */
  url: string;
  /** An installation token with contents: write on the repository (asked for before each request). */
  token(): Promise<string>;
  /** Who the commits are by (the app's bot user). */
  author: { name: string; email: string };
  /**
   * The direct entries of a tree, given its sha or a commit's (then the commit's root tree), and
   * the tree's sha: the REST API's git/trees (src/app.ts, parsed by `treeFromApi`).
   */
  readTree(treeish: string): Promise<ReadTree>;
  /** How long one HTTP request may take, its answer included (default 120 s). */
  timeoutMs?: number;
  /** Whether this process may write (the leader): a push of a follower is refused like its API writes. */
  mayWrite?: () => boolean;
}

/** The longest a request may take before it is given up and the step fails (the next pass retries). */
const DEFAULT_TIMEOUT_MS = 120_000;
/** Servers recognise git clients by a User-Agent starting with "git/". */
const AGENT = "git/autoresearch-bot";
/** The largest refs advertisement read (a repository with about 200,000 branches). */
const MAX_ADVERTISEMENT_BYTES = 16 * 1024 * 1024;
/** The largest report-status read: a line per command. */
const MAX_REPORT_BYTES = 1024 * 1024;
/** How much of a failed request's text is read for its error. */
const MAX_ERROR_BYTES = 4096;
/** Trees and commits' root trees kept per remote (immutable: a sha names one content forever). */
const TREES_KEPT = 256;
const ROOTS_KEPT = 64;

/** What is kept per remote: the trees read from it. */
interface Remote {
  trees: Map<string, TreeEntry[]>;
  /** Commit sha → its root tree's sha. */
  roots: Map<string, string>;
}
const remotes = new Map<string, Remote>();

/** Keep `value` under `key`, dropping the oldest entry past `max`. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}

/** The git address of a repository, from the REST API's base address (github.com or GHES). */
export function gitUrlFor(apiBaseUrl: string, owner: string, repo: string): string {
  const u = new URL(apiBaseUrl);
  if (u.hostname === "api.github.com") u.hostname = "github.com";
  const base = u.pathname.replace(/\/+$/, "").replace(/\/api\/v3$/, "");
  return `${u.protocol}//${u.host}${base}/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}.git`;
}

/** A commit id: 40 hex digits, nothing else. */
function commitId(sha: string): string {
  if (!/^[0-9a-f]{40}$/.test(sha)) throw new GitWireError(`not a commit id: ${JSON.stringify(sha.slice(0, 80))}`);
  return sha;
}

/** A branch's full ref name, refused when git would not take it (it goes into a protocol line). */
function branchRef(branch: string): string {
  const ref = `refs/heads/${branch}`;
  if (!validRef(ref)) throw new GitWireError(`not a branch name git accepts: ${JSON.stringify(branch.slice(0, 120))}`);
  return ref;
}

// The REST API's answer for GET /repos/{owner}/{repo}/git/trees/{tree_sha}, non-recursive: only
// what is used, each entry a direct child (a name, not a path).
const SHA = z.string().regex(/^[0-9a-f]{40}$/, "not a 40-digit sha");
const apiTree = z.object({
  sha: SHA,
  truncated: z.boolean().optional(),
  tree: z
    .array(
      z.object({
        path: z.string().min(1).max(4096).regex(/^[^/\0]+$/, "not a name inside one folder"),
        mode: z.string().regex(/^[0-7]{5,6}$/, "not a git file mode"),
        type: z.enum(["blob", "tree", "commit"]),
        sha: SHA,
      }),
    )
    .max(1_000_000),
});

/** A tree from the REST API's git/trees answer, checked; a truncated one is an error. */
export function treeFromApi(data: unknown, treeish: string): ReadTree {
  const r = apiTree.safeParse(data);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new GitWireError(`GitHub's tree of ${treeish.slice(0, 12)} is not what its API documents: ${issue.path.join(".") || "the answer"}: ${issue.message}`);
  }
  if (r.data.truncated) throw new GitWireError(`GitHub's tree of ${treeish.slice(0, 12)} came truncated: a folder too large to read through the API`);
  return {
    sha: r.data.sha,
    // A subtree's mode inside a tree object is 40000 (the API writes 040000).
    entries: r.data.tree.map((e) => ({ mode: e.type === "tree" ? "40000" : e.mode.replace(/^0+/, ""), name: e.path, sha: e.sha })),
  };
}

export class GitWire {
  private readonly remote: Remote;
  private readonly timeoutMs: number;

  constructor(private readonly o: GitWireOptions) {
    const key = o.url.toLowerCase();
    let remote = remotes.get(key);
    if (!remote) remotes.set(key, (remote = { trees: new Map(), roots: new Map() }));
    this.remote = remote;
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Commit `files` (path → full text) on top of `parentSha` and point `branch` at the commit,
   * creating or moving it wherever it is (the branch is the bot's own). Returns the commit's sha.
   * Files equal to the parent's give the parent's tree: with no change at all the commit is empty.
   */
  async commit(branch: string, parentSha: string, files: Record<string, string>, message: string): Promise<string> {
    const what = `push ${branch}`;
    commitId(parentSha);
    const ref = branchRef(branch);
    for (const p of Object.keys(files)) pathParts(p);
    // Pushes run side by side, as several git clients' do: each names its branch's old sha from
    // its own advertisement, so the server refuses (and the next pass retries) a push whose
    // branch another one moved in between.
    this.mustLead(what);
    const trees = await this.treesAlong(parentSha, Object.keys(files));
    const objects = commitObjects({ parent: parentSha, trees, files, message, author: this.o.author, at: new Date() });
    const sha = objects[objects.length - 1]!.sha;
    const old = (await this.advertisement(what)).refs.get(ref) ?? ZERO_SHA;
    if (old === sha) return sha;
    const report = await this.receivePack([{ old, new: sha, ref }], objects, what);
    const refused = report.refs.get(ref);
    if (refused !== null) throw new GitWireError(`GitHub git ${what} failed: the server did not update the branch: ${refused ?? "it gave no status for it"}`);
    return sha;
  }

  /**
   * Delete branches, each only while it still points at the given commit (a branch a person
   * moved is left alone), in one push. Returns the branches that were not deleted because they
   * had moved or were already gone; the others are deleted all the same.
   */
  async deleteBranches(branches: { name: string; sha: string }[]): Promise<string[]> {
    if (!branches.length) return [];
    for (const b of branches) {
      commitId(b.sha);
      branchRef(b.name);
    }
    const what = `delete ${branches.length} branch(es)`;
    this.mustLead(what);
    const adv = await this.advertisement(what);
    const refused: string[] = [];
    const commands: Command[] = [];
    const names = new Map<string, string>();
    for (const b of branches) {
      const ref = branchRef(b.name);
      // Sent only for a branch at its lease, with the lease as its old sha: the server refuses
      // it too if the branch moved since the advertisement.
      if (adv.refs.get(ref) !== b.sha || names.has(ref)) refused.push(b.name);
      else {
        names.set(ref, b.name);
        commands.push({ old: b.sha, new: ZERO_SHA, ref });
      }
    }
    if (!commands.length) return refused;
    if (!adv.capabilities.has("delete-refs")) throw new GitWireError(`GitHub git ${what} failed: the server does not take deletions (no delete-refs capability)`);
    for (let i = 0; i < commands.length; i += MAX_COMMANDS) {
      const batch = commands.slice(i, i + MAX_COMMANDS);
      const report = await this.receivePack(batch, [], what);
      for (const c of batch) if (report.refs.get(c.ref) !== null) refused.push(names.get(c.ref)!);
    }
    return refused;
  }

  /** Only the leader writes: a pass still running when its bot stepped down stops here. */
  private mustLead(what: string): void {
    if (this.o.mayWrite && !this.o.mayWrite()) throw new NotLeaderError(`git ${what}`);
  }

  /**
   * The parent's trees along `paths`: its root and every folder on a changed file's path that it
   * has. Trees are immutable, so those read before are not read again.
   */
  private async treesAlong(parentSha: string, paths: string[]): Promise<Trees> {
    let root = this.remote.roots.get(parentSha);
    if (root === undefined) {
      const t = await this.readTree(parentSha, null);
      root = t.sha;
      remember(this.remote.roots, parentSha, root, ROOTS_KEPT);
      remember(this.remote.trees, root, t.entries, TREES_KEPT);
    }
    const trees: Trees = new Map([["", await this.tree(root)]]);
    for (const p of paths) {
      const parts = pathParts(p);
      let dir = "";
      for (const name of parts.slice(0, -1)) {
        const sub = dir ? `${dir}/${name}` : name;
        if (!trees.has(sub)) {
          const entry = trees.get(dir)!.find((e) => e.name === name);
          // A folder the parent does not have is a new one (commitObjects makes it).
          if (!entry || entry.mode !== "40000") break;
          trees.set(sub, await this.tree(entry.sha));
        }
        dir = sub;
      }
    }
    return trees;
  }

  private async tree(sha: string): Promise<TreeEntry[]> {
    const kept = this.remote.trees.get(sha);
    if (kept) return kept;
    const t = await this.readTree(sha, sha);
    remember(this.remote.trees, sha, t.entries, TREES_KEPT);
    return t.entries;
  }

  /** `readTree`, with what it answers checked; `expect`: the sha it must answer with (a tree's own). */
  private async readTree(treeish: string, expect: string | null): Promise<ReadTree> {
    let t: ReadTree;
    try {
      t = await this.o.readTree(treeish);
    } catch (err) {
      if (err instanceof GitHubError || err instanceof NotLeaderError) throw err;
      const status = (err as { status?: unknown })?.status;
      const code = typeof status === "number" ? status : null;
      const msg = err instanceof Error ? err.message : String(err);
      throw new GitWireError(`GitHub read the tree of ${treeish.slice(0, 7)} failed${code ? ` (HTTP ${code})` : ""}: ${said(msg.split("\n")[0] ?? "")}`, code);
    }
    if (expect !== null && t.sha !== expect) throw new GitWireError(`GitHub answered tree ${t.sha.slice(0, 7)} when asked for tree ${expect.slice(0, 7)}`);
    return t;
  }

  /** Where the repository's refs are, and what its receive-pack can do. */
  private async advertisement(what: string): Promise<Advertisement> {
    const body = await this.request("GET", "info/refs?service=git-receive-pack", null, what, {
      type: "application/x-git-receive-pack-advertisement",
      max: MAX_ADVERTISEMENT_BYTES,
    });
    const adv = this.parsed(what, () => parseAdvertisement(body));
    if (!adv.capabilities.has("report-status")) throw new GitWireError(`GitHub git ${what} failed: the server does not report each ref's status (no report-status capability)`);
    return adv;
  }

  /** Send `commands` (and the objects' packfile) and read the server's status of each ref. */
  private async receivePack(commands: Command[], objects: GitObject[], what: string): Promise<ReportStatus> {
    // No side-band: the answer is report-status's own pkt-lines; git's progress is not wanted.
    const request = this.parsed(what, () => receivePackRequest(commands, ["report-status", `agent=${AGENT}`], objects));
    this.mustLead(what);
    const body = await this.request("POST", "git-receive-pack", request, what, { type: "application/x-git-receive-pack-result", max: MAX_REPORT_BYTES });
    const report = this.parsed(what, () => parseReportStatus(body));
    if (report.unpack !== "ok") throw new GitWireError(`GitHub git ${what} failed: the server could not unpack the objects: ${report.unpack}`);
    return report;
  }

  /** A protocol step whose failure is the server's (or the request's) fault, as a GitWireError. */
  private parsed<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof GitProtocolError) throw new GitWireError(`GitHub git ${what} failed: ${err.message}`);
      throw err;
    }
  }

  /**
   * One smart-HTTP request to the remote, with the token and no redirect followed; the answer's
   * body when it is 200 with the content type git expects, within `max` bytes.
   */
  private async request(method: "GET" | "POST", tail: string, body: Buffer | null, what: string, expect: { type: string; max: number }): Promise<Buffer> {
    const url = `${this.o.url.replace(/\/+$/, "")}/${tail}`;
    const token = await this.o.token();
    const basic = Buffer.from(`x-access-token:${token}`).toString("base64");
    // Scrubbed before it is shortened: a server could echo a credential back.
    const clean = (s: string, max?: number) => said(scrub(s, [token, basic]), max);
    const fail = (why: string, status: number | null = null): GitWireError => new GitWireError(`GitHub git ${what} failed: ${clean(why, 1000)}`, status);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Basic ${basic}`,
          "user-agent": AGENT,
          accept: expect.type,
          ...(body ? { "content-type": "application/x-git-receive-pack-request" } : {}),
        },
        body: body ? new Uint8Array(body) : null,
        // The token goes to the address the API named and nowhere a redirect points.
        redirect: "manual",
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw fail(`${method} ${url}: ${this.reason(err)}`);
    }
    try {
      if (res.status >= 300 && res.status < 400) {
        const to = res.headers.get("location");
        throw fail(`${method} ${url} answered HTTP ${res.status}, a redirect${to ? ` to ${said(to, 200)}` : ""}: not followed with the token; check the repository's address (was it renamed or moved?)`, res.status);
      }
      if (res.status !== 200) {
        const text = (await readBody(res, MAX_ERROR_BYTES, true)).toString("utf8");
        throw fail(`${method} ${url} answered HTTP ${res.status}${text.trim() ? `: ${clean(text)}` : ""}${hint(res.status)}`, res.status);
      }
      const type = res.headers.get("content-type") ?? "";
      if (type.split(";")[0]!.trim().toLowerCase() !== expect.type) {
        throw fail(`${method} ${url} answered ${JSON.stringify(said(type, 100))}, not ${expect.type}: not a smart HTTP git server at this address`);
      }
      const out = await readBody(res, expect.max, false);
      if (out === null) throw fail(`${method} ${url} answered more than ${expect.max} bytes`);
      return out;
    } catch (err) {
      if (err instanceof GitWireError) throw err;
      throw fail(`${method} ${url}: reading the answer: ${this.reason(err)}`);
    } finally {
      // An answer not read to its end would hold its connection.
      if (!res.bodyUsed) await res.body?.cancel().catch(() => undefined);
    }
  }

  /** Why a request failed, in words: a timeout, or the network's reason (fetch hides it in `cause`). */
  private reason(err: unknown): string {
    const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
    if (e?.name === "TimeoutError") return `no answer within ${Math.round(this.timeoutMs / 1000)} s`;
    const cause = e?.cause?.code ?? e?.cause?.message;
    return said(`${e?.message ?? String(err)}${cause ? ` (${cause})` : ""}`);
  }
}

/** A failed request's advice, by status. */
function hint(status: number): string {
  if (status === 401) return " (the installation token was refused: it may have expired or been revoked)";
  if (status === 403) return " (the app needs the contents: write permission on this repository)";
  if (status === 404) return " (no such repository, or the app is not installed on it)";
  return "";
}

/** `text` without any of `secrets`. */
function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join("[token]");
  return out;
}

/**
 * An answer's body, at most `max` bytes: null past that, or (`cut`) the first `max` bytes. Read
 * as it comes, so an endless answer is not held in memory.
 */
async function readBody(res: Response, max: number, cut: true): Promise<Buffer>;
async function readBody(res: Response, max: number, cut: false): Promise<Buffer | null>;
async function readBody(res: Response, max: number, cut: boolean): Promise<Buffer | null> {
  if (!res.body) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(Buffer.from(value));
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      if (!cut) return null;
      return Buffer.concat(chunks).subarray(0, max);
    }
  }
  return Buffer.concat(chunks);
}

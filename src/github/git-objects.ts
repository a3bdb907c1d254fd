// Git objects built in the bot's own process: a commit that changes a few files of its parent's
// tree, as blobs, trees and a commit, each with its sha. Starting a git process for each of
// these steps cost more CPU than the rest of an experiment's bookkeeping together; building the
// objects is a few hashes. src/github/git-wire.ts sends them in a packfile
// (src/github/git-protocol.ts).
//
// The formats are git's: an object is "<type> <size>\0<body>" hashed with SHA-1; a tree's body
// is its entries sorted by name (a subtree's name compared as if it ended in "/"), each
// "<mode> <name>\0<20-byte sha>"; a commit's body is its headers, a blank line and the message.
import { createHash } from "node:crypto";

export interface TreeEntry {
  /** As git writes it in a tree: 100644, 100755, 120000, 160000, or 40000 for a subtree. */
  mode: string;
  name: string;
  sha: string;
}

/**
 * Directory path ("" is the root) → its entries, as read from the parent commit: those of every
 * folder on a changed file's path that the parent has. A folder not in it is a new one.
 */
export type Trees = Map<string, TreeEntry[]>;

export interface GitObject {
  type: "blob" | "tree" | "commit";
  sha: string;
  /** "<type> <size>\0<body>": what the sha is of (a packfile holds the body, compressed). */
  raw: Buffer;
}

export function gitObject(type: GitObject["type"], body: Buffer): GitObject {
  const raw = Buffer.concat([Buffer.from(`${type} ${body.length}\0`), body]);
  return { type, sha: createHash("sha1").update(raw).digest("hex"), raw };
}

const isTree = (e: TreeEntry) => e.mode === "40000";

/** Git's order of tree entries: by bytes, a subtree's name with a "/" after it. */
function entryOrder(a: TreeEntry, b: TreeEntry): number {
  return Buffer.compare(Buffer.from(isTree(a) ? `${a.name}/` : a.name), Buffer.from(isTree(b) ? `${b.name}/` : b.name));
}

export function treeObject(entries: TreeEntry[]): GitObject {
  const parts = [...entries].sort(entryOrder).flatMap((e) => [Buffer.from(`${e.mode} ${e.name}\0`), Buffer.from(e.sha, "hex")]);
  return gitObject("tree", Buffer.concat(parts));
}

/** A file's path as its folders and name; one no commit can hold (empty parts, "..", ".git") is an error. */
export function pathParts(p: string): string[] {
  const parts = p.split("/");
  if (parts.some((s) => s === "" || s === "." || s === ".." || s === ".git")) throw new Error(`not a file path a commit can hold: ${JSON.stringify(p)}`);
  return parts;
}

/**
 * The objects of a commit that sets `files` (path → text) on top of `parent`, whose trees are
 * `trees`. A file keeps the executable bit it had; a new file is a regular one. The commit is
 * the last object.
 */
export function commitObjects(o: {
  parent: string;
  trees: Trees;
  files: Record<string, string>;
  message: string;
  author: { name: string; email: string };
  at: Date;
}): GitObject[] {
  const out: GitObject[] = [];
  const dirs = new Map<string, Map<string, TreeEntry>>();
  const dirOf = (d: string) => {
    let m = dirs.get(d);
    if (!m) dirs.set(d, (m = new Map((o.trees.get(d) ?? []).map((e) => [e.name, { ...e }]))));
    return m;
  };
  for (const [p, text] of Object.entries(o.files)) {
    const parts = pathParts(p);
    const blob = gitObject("blob", Buffer.from(text, "utf8"));
    out.push(blob);
    const dir = parts.slice(0, -1).join("/");
    const name = parts[parts.length - 1]!;
    const old = dirOf(dir).get(name);
    if (old && isTree(old)) throw new Error(`${p} is a folder in the parent commit`);
    dirOf(dir).set(name, { mode: old?.mode === "100755" ? "100755" : "100644", name, sha: blob.sha });
    // Every folder on the way is rewritten (and made, when it is new).
    for (let i = parts.length - 2; i >= 0; i--) dirOf(parts.slice(0, i).join("/"));
  }
  dirOf("");
  // The deepest folders first: a folder's sha goes into its parent's entry.
  for (const d of [...dirs.keys()].sort((a, b) => depth(b) - depth(a))) {
    const tree = treeObject([...dirs.get(d)!.values()]);
    out.push(tree);
    if (d === "") continue;
    const slash = d.lastIndexOf("/");
    dirOf(slash < 0 ? "" : d.slice(0, slash)).set(d.slice(slash + 1), { mode: "40000", name: d.slice(slash + 1), sha: tree.sha });
  }
  const root = out[out.length - 1]!.sha;
  const who = `${clean(o.author.name)} <${clean(o.author.email)}> ${Math.floor(o.at.getTime() / 1000)} +0000`;
  const message = o.message.endsWith("\n") ? o.message : `${o.message}\n`;
  out.push(gitObject("commit", Buffer.from(`tree ${root}\nparent ${o.parent}\nauthor ${who}\ncommitter ${who}\n\n${message}`, "utf8")));
  return out;
}

const depth = (d: string) => (d === "" ? 0 : d.split("/").length);

/** A name or address cannot hold what delimits it in a commit header. */
function clean(s: string): string {
  return s.replace(/[<>\n\r\0]/g, "").trim();
}

// The identity of a set of editable files, independent of commits: what was tried, and which
// baseline measured which tree.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

const bytes = (s: string) => Buffer.byteLength(s, "utf8");

/**
 * sha256 over the files (path → text), independent of key order. Paths and contents are
 * length-prefixed so that no two different file sets can produce the same byte stream.
 * Callers hash the editable files only, with paths as in `Config.editable`.
 */
export function treeHash(files: Record<string, string>): string {
  const h = createHash("sha256");
  for (const path of Object.keys(files).sort()) {
    const content = files[path]!;
    h.update(`${bytes(path)}:${path}\n${bytes(content)}:`);
    h.update(content, "utf8");
    h.update("\n");
  }
  return h.digest("hex");
}

// Edits are SEARCH/REPLACE pairs: the proposer quotes the exact text to change and what to put
// there. That format survives an LLM's imprecision better than line numbers or patches, and it
// can be re-applied on a moved default branch. This module applies edits under the rules that
// keep experiments honest (only editable files, each search matching exactly once), parses the
// plain-text block format for models without structured output, and renders unified diffs.

import { diffLines as jsdiffLines } from "diff";
import { fenceFor } from "./markdown.js";
import type { Edit } from "./types.js";

export { fenceFor };

export type ApplyResult = { ok: true; files: Record<string, string> } | { ok: false; error: string };

const normPath = (p: string): string => p.replace(/^(\.\/)+/, "");

// ------------------------------------------------------------------ applying edits

interface WorkFile {
  key: string;
  text: string;
  /** The file used CRLF throughout; it is edited with LF and converted back. */
  crlf: boolean;
  /** The file had no final newline; one was added so whole-line searches match the last line. */
  addedNewline: boolean;
  edited: boolean;
}

function openFile(key: string, original: string): WorkFile {
  const crlf = original.includes("\r\n") && !/(^|[^\r])\n/.test(original);
  let text = crlf ? original.replace(/\r\n/g, "\n") : original;
  const addedNewline = text !== "" && !text.endsWith("\n");
  if (addedNewline) text += "\n";
  return { key, text, crlf, addedNewline, edited: false };
}

function closeFile(f: WorkFile): string {
  let text = f.text;
  if (f.addedNewline && text.endsWith("\n")) text = text.slice(0, -1);
  return f.crlf ? text.replace(/\n/g, "\r\n") : text;
}

function occurrences(text: string, search: string, limit = 100): number[] {
  const found: number[] = [];
  // Overlapping matches count too: "aa" in "aaa" is ambiguous.
  for (let i = text.indexOf(search); i !== -1 && found.length < limit; i = text.indexOf(search, i + 1)) found.push(i);
  return found;
}

function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

function listNumbers(xs: number[]): string {
  if (xs.length === 1) return String(xs[0]);
  return `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`;
}

function listPaths(paths: string[]): string {
  return `[${paths.join(", ")}]`;
}

/**
 * Apply `edits` in order to `files` (path → text). Every edit must target an editable path and
 * its search text must occur exactly once in the file as it is after the earlier edits. A file
 * with CRLF line endings accepts LF searches (and keeps its CRLF). Returns every input file,
 * edited or not, or one error that says which edit failed and why, worded for the proposer.
 */
export function applyEdits(files: Record<string, string>, edits: Edit[], editable: string[]): ApplyResult {
  if (edits.length === 0) return { ok: false, error: "there are no edits" };
  const allowed = editable.map(normPath);
  const keyOf = new Map(Object.keys(files).map((k) => [normPath(k), k] as const));
  const open = new Map<string, WorkFile>();

  for (const [i, edit] of edits.entries()) {
    const name = `edit ${i + 1}`;
    const path = normPath(edit.path);
    if (!allowed.includes(path)) {
      return { ok: false, error: `${name} touches ${edit.path}, but only ${listPaths(editable)} may change` };
    }
    const key = keyOf.get(path);
    if (key === undefined) return { ok: false, error: `${name} touches ${edit.path}, which does not exist` };
    if (edit.search.trim() === "") {
      return { ok: false, error: `${name} has an empty search text; it must quote the exact lines of ${path} to change` };
    }
    if (edit.search === edit.replace) {
      return { ok: false, error: `${name} changes nothing: its search and replace texts are identical` };
    }
    let file = open.get(path);
    if (!file) {
      file = openFile(key, files[key]!);
      open.set(path, file);
    }
    const search = edit.search.replace(/\r\n/g, "\n");
    const replace = edit.replace.replace(/\r\n/g, "\n");
    const after = file.edited ? " (after the earlier edits)" : "";
    const found = occurrences(file.text, search);
    if (found.length === 0) {
      return { ok: false, error: `${name}: the search text was not found in ${path}${after}. ${closestHint(file.text, search)}` };
    }
    if (found.length > 1) {
      const lines = found.slice(0, 10).map((at) => lineAt(file.text, at));
      const more = found.length > 10 ? " and more" : "";
      return {
        ok: false,
        error:
          `${name}: the search text occurs ${found.length}${found.length === 100 ? "+" : ""} times in ${path}${after} ` +
          `(at lines ${listNumbers(lines)}${more}); include more surrounding lines so that it matches exactly once`,
      };
    }
    const at = found[0]!;
    // Slicing, not String.replace: `$&` and friends in the replacement must stay literal.
    file.text = file.text.slice(0, at) + replace + file.text.slice(at + search.length);
    file.edited = true;
  }

  const out = { ...files };
  let changed = false;
  for (const f of open.values()) {
    const text = closeFile(f);
    if (text !== files[f.key]) changed = true;
    out[f.key] = text;
  }
  if (!changed) return { ok: false, error: "the edits change nothing" };
  return { ok: true, files: out };
}

// A small fuzzy search so that a failed edit tells the proposer what the file really says there.

function tokens(line: string): string[] {
  return line.match(/[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\S/g) ?? [];
}

function lineSimilarity(a: string, b: string, ta: string[], tb: string[]): number {
  const x = a.trim();
  const y = b.trim();
  if (x === y) return x === "" ? 0.5 : 1;
  if (ta.length + tb.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const t of ta) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of tb) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      common++;
      counts.set(t, c - 1);
    }
  }
  let prefix = 0;
  while (prefix < x.length && prefix < y.length && x[prefix] === y[prefix]) prefix++;
  const dice = (2 * common) / (ta.length + tb.length);
  return 0.85 * dice + 0.15 * (prefix / Math.max(x.length, y.length, 1));
}

const squash = (s: string) => s.replace(/\s+/g, "");

function closestHint(text: string, search: string): string {
  const fileLines = text.split("\n");
  if (fileLines[fileLines.length - 1] === "") fileLines.pop();
  const wanted = search.split("\n");
  if (wanted.length > 1 && wanted[wanted.length - 1] === "") wanted.pop();
  const k = wanted.length;
  if (fileLines.length === 0) return "The file is empty.";
  const fileTokens = fileLines.map(tokens);
  // Score at most 30 search lines per window: enough to locate the region, cheap on big files.
  const probe = wanted.map((l, j) => ({ l, j, t: tokens(l) })).filter((_, j) => j < 15 || j >= k - 15);
  let best = -1;
  let bestStart = 0;
  const lastStart = Math.max(0, fileLines.length - k);
  for (let s = 0; s <= lastStart; s++) {
    let score = 0;
    for (const p of probe) {
      const fl = fileLines[s + p.j];
      if (fl !== undefined) score += lineSimilarity(p.l, fl, p.t, fileTokens[s + p.j]!);
    }
    score /= probe.length;
    if (score > best) {
      best = score;
      bestStart = s;
    }
  }
  if (best < 0.3) return "Nothing similar was found; quote lines exactly as they appear in the file.";
  const region = fileLines.slice(bestStart, bestStart + k);
  const from = bestStart + 1;
  const to = bestStart + region.length;
  const where = from === to ? `line ${from}` : `lines ${from}-${to}`;
  const whitespace =
    squash(region.join("\n")) === squash(wanted.join("\n")) ? " It differs from the search text only in whitespace." : "";
  const fence = fenceFor(region.join("\n"));
  return `The closest text is at ${where}:${whitespace}\n${fence}\n${region.join("\n")}\n${fence}`;
}

// ------------------------------------------------------------------ plain-text SEARCH/REPLACE blocks

export const SEARCH_REPLACE_FORMAT_HELP = `Reply in this plain-text format and nothing else:

TITLE: <a short title of the change, under 70 characters>
HYPOTHESIS: <one or two sentences: what you change and why it should lower val_bpb>
FILE: <path of the file to change; may be left out for the default file>
<<<<<<< SEARCH
<the exact lines to replace, copied verbatim from the file, including indentation>
=======
<the new lines>
>>>>>>> REPLACE

Rules:
- The SEARCH text must match the current file exactly (every character and space) and occur exactly once; include a few surrounding lines if a line is not unique.
- Use several SEARCH/REPLACE blocks for changes in several places; they are applied in order.
- An empty REPLACE section deletes the searched lines.
- Change only what the hypothesis needs.`;

export type ParsedBlocks =
  | { ok: true; title: string; hypothesis: string; edits: Edit[] }
  | { ok: false; error: string };

const SEARCH_RE = /^\s*<{5,9}\s*SEARCH\s*$/;
const DIVIDER_RE = /^\s*={5,9}\s*$/;
const REPLACE_RE = /^\s*>{5,9}\s*REPLACE\s*$/;
const FENCE_RE = /^\s*```/;
// Models decorate keys with markdown ("**TITLE:**", "## Hypothesis:"); the decoration is dropped.
const keyRe = (key: string) => new RegExp(`^[\\s#>*_]*${key}[*_]*\\s*:[*_]*\\s*(.*)$`, "i");
const TITLE_RE = keyRe("TITLE");
const HYPOTHESIS_RE = keyRe("HYPOTHESIS");
const FILE_RE = keyRe("FILE");

/**
 * Parse the plain-text reply described by SEARCH_REPLACE_FORMAT_HELP. Text outside the keys and
 * blocks (explanations, code fences) is ignored. Each section's lines become the search or
 * replace text with a newline after every line, so edits work on whole lines.
 */
export function parseSearchReplaceBlocks(text: string, defaultPath: string): ParsedBlocks {
  const lines = text.split(/\r?\n/);
  let title: string | null = null;
  let hypothesis: string | null = null;
  let inHypothesis = false;
  let path = defaultPath;
  const edits: Edit[] = [];
  let state: "outside" | "search" | "replace" = "outside";
  let search: string[] = [];
  let replace: string[] = [];
  let blockLine = 0;
  const fail = (error: string): ParsedBlocks => ({ ok: false, error });
  const joined = (ls: string[]) => (ls.length === 0 ? "" : ls.join("\n") + "\n");

  for (const [i, line] of lines.entries()) {
    const n = i + 1;
    const block = `block ${edits.length + 1} (starting at line ${blockLine})`;
    if (state === "search") {
      if (DIVIDER_RE.test(line)) state = "replace";
      else if (REPLACE_RE.test(line)) return fail(`${block}: the ======= line between SEARCH and REPLACE is missing`);
      else if (SEARCH_RE.test(line)) return fail(`${block}: a new <<<<<<< SEARCH starts at line ${n} before the ======= line`);
      else search.push(line);
      continue;
    }
    if (state === "replace") {
      if (REPLACE_RE.test(line)) {
        if (search.join("").trim() === "") return fail(`${block}: the SEARCH section is empty; quote the lines to change`);
        edits.push({ path, search: joined(search), replace: joined(replace) });
        state = "outside";
      } else if (SEARCH_RE.test(line)) {
        return fail(`${block}: the >>>>>>> REPLACE line is missing before the next <<<<<<< SEARCH at line ${n}`);
      } else if (DIVIDER_RE.test(line)) {
        return fail(`${block}: a second ======= line at line ${n}; each block has exactly one`);
      } else replace.push(line);
      continue;
    }
    // outside a block
    if (SEARCH_RE.test(line)) {
      state = "search";
      search = [];
      replace = [];
      blockLine = n;
      inHypothesis = false;
      continue;
    }
    if (DIVIDER_RE.test(line) || REPLACE_RE.test(line)) {
      return fail(`line ${n}: "${line.trim()}" outside a SEARCH/REPLACE block; each block starts with <<<<<<< SEARCH`);
    }
    let m: RegExpExecArray | null;
    if ((m = TITLE_RE.exec(line))) {
      title ??= m[1]!.trim();
      inHypothesis = false;
    } else if ((m = HYPOTHESIS_RE.exec(line))) {
      hypothesis ??= m[1]!.trim();
      inHypothesis = true;
    } else if ((m = FILE_RE.exec(line))) {
      path = m[1]!.trim().replace(/^[`'"]+|[`'"]+$/g, "").trim() || defaultPath;
      inHypothesis = false;
    } else if (inHypothesis && line.trim() !== "" && !FENCE_RE.test(line) && hypothesis !== null) {
      // A hypothesis may run on over the following lines, up to a blank line.
      hypothesis = `${hypothesis} ${line.trim()}`.trim();
    } else {
      inHypothesis = false;
    }
  }
  if (state !== "outside") {
    const block = `block ${edits.length + 1} (starting at line ${blockLine})`;
    return fail(
      state === "search"
        ? `${block}: the text ends inside the SEARCH section; the ======= and >>>>>>> REPLACE lines are missing`
        : `${block}: the text ends before the >>>>>>> REPLACE line`,
    );
  }
  if (edits.length === 0) return fail("no SEARCH/REPLACE blocks were found; each change must be a <<<<<<< SEARCH ... ======= ... >>>>>>> REPLACE block");
  if (!title) return fail("the TITLE: line is missing or empty");
  if (!hypothesis) return fail("the HYPOTHESIS: line is missing or empty");
  return { ok: true, title, hypothesis, edits };
}

// ------------------------------------------------------------------ diffs

export interface DiffOp {
  op: " " | "-" | "+";
  /** The line with its "\n" (the last line of a file may have none). */
  line: string;
}

/** Lines with their terminators, so that a missing final newline is a difference too. */
export function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) {
    out.push(text.slice(start, i + 1));
    start = i + 1;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

// Past this many differences the exact shortest script is not worth its time; the texts are then
// shown as removed and re-added, which is still a correct diff.
const MAX_EDIT_LENGTH = 2000;

/** A shortest line diff of two texts (jsdiff's Myers diff; each op keeps its line terminator). */
export function diffLines(before: string, after: string): DiffOp[] {
  const changes = jsdiffLines(before, after, { maxEditLength: MAX_EDIT_LENGTH });
  if (!changes) {
    return [...splitLines(before).map((line) => ({ op: "-" as const, line })), ...splitLines(after).map((line) => ({ op: "+" as const, line }))];
  }
  return changes.flatMap((c) => splitLines(c.value).map((line) => ({ op: c.added ? ("+" as const) : c.removed ? ("-" as const) : (" " as const), line })));
}

function renderOp(o: DiffOp): string {
  if (o.line.endsWith("\n")) return o.op + o.line;
  return `${o.op}${o.line}\n\\ No newline at end of file\n`;
}

/**
 * The edits themselves as a diff, for when the whole files are not at hand: each edit is one
 * hunk with the search text as the old side and the replacement as the new side. Hunk headers
 * name the edit instead of line numbers, which an edit does not have.
 */
export function editsAsDiff(edits: Edit[]): string {
  return edits
    .map((e, i) => {
      const body = diffLines(e.search, e.replace).map(renderOp).join("");
      return `--- a/${e.path}\n+++ b/${e.path}\n@@ edit ${i + 1} of ${edits.length} @@\n${body}`;
    })
    .join("");
}

// Builds the chat messages sent to an LLM proposer: a system message with the role, the rules
// and the reply format, and one user message with the research guidance (program.md), notes
// from maintainers, a compact experiment history and the current editable files in full.
//
// The prompt is bounded: however long the history or program.md, the total number of
// characters stays within `maxChars`. Reductions happen in this order:
//   1. the "already tried" titles of the oldest experiments, then older crashes, then the
//      detailed lines of recent experiments (oldest first) down to a floor of the newest few;
//      everything not listed in detail is summarized as counts per outcome;
//   2. program.md is cut (its beginning is kept) with a visible marker;
//   3. maintainer notes are dropped (oldest first);
//   4. the remaining detailed history lines are dropped (oldest first).
// The editable files are never cut: if they alone do not fit, buildMessages throws.

import type { HistoryEntry, ProposalRequest } from "./types.js";
import { SEARCH_REPLACE_FORMAT_HELP } from "./edits.js";
import { fenceFor } from "./markdown.js";

export interface ChatMessage {
  role: "system" | "user";
  content: string;
}

export interface BuildMessagesOptions {
  /** Upper bound on the total characters of all messages (default 60 000). */
  maxChars?: number;
  /** Comments from maintainers (users with write access), oldest first. */
  reviewerNotes?: string[];
  /** true: the reply is the JSON object of the structured format; false: SEARCH/REPLACE text. */
  structured: boolean;
  /** How many of the newest experiments are listed in detail at most (default 30). */
  recent?: number;
}

export const DEFAULT_MAX_PROMPT_CHARS = 60_000;
/** Longest title accepted from a proposer. */
export const MAX_TITLE_CHARS = 80;

const DEFAULT_RECENT = 30;
/** Newest experiments kept in detail before program.md is cut. */
const HISTORY_FLOOR = 8;
/** At most this many older crashes are listed with their reasons. */
const MAX_OLDER_CRASHES = 20;
const MAX_NOTE_CHARS = 2_000;
const MAX_NOTES_TOTAL = 8_000;
const MAX_TITLE_SHOWN = 100;
const MAX_REASON_SHOWN = 200;

export function buildMessages(req: ProposalRequest, opts: BuildMessagesOptions): ChatMessage[] {
  const maxChars = opts.maxChars ?? DEFAULT_MAX_PROMPT_CHARS;
  if (!Number.isFinite(maxChars) || maxChars <= 0) throw new Error(`buildMessages: maxChars must be a positive number, got ${maxChars}`);

  const system = systemPrompt(req.editablePaths, opts.structured);
  const files = renderFiles(req);
  const task = renderTask(req.editablePaths, opts.structured);
  const history = new HistoryRenderer(req.history, req.bestBpb, opts.recent ?? DEFAULT_RECENT);
  const givenNotes = (opts.reviewerNotes ?? []).map((n) => n.trim()).filter((n) => n !== "");
  const allNotes = boundNotes(givenNotes, Math.min(MAX_NOTES_TOTAL, Math.floor(maxChars * 0.15)));
  const guidance = req.guidance.trim();

  const user = (g: string, notes: string[], omittedNotes: number, level: number): string =>
    [
      section("Research guidance (program.md)", g === "" ? "(program.md is empty)" : g),
      notes.length > 0 || omittedNotes > 0 ? renderNotes(notes, omittedNotes) : "",
      history.render(level),
      files,
      task,
    ]
      .filter((s) => s !== "")
      .join("\n\n");
  const size = (u: string): number => system.length + u.length;
  const done = (u: string): ChatMessage[] => [
    { role: "system", content: system },
    { role: "user", content: u },
  ];

  const nNotes = allNotes.length;
  const fullNotesOmitted = givenNotes.length - nNotes;

  // The smallest prompt possible: no guidance text, no notes, history summarized.
  const minimal = user(cutGuidance(guidance, 0), [], givenNotes.length, 0);
  if (size(minimal) > maxChars) {
    const sizes = Object.entries(req.files)
      .map(([p, t]) => `${p}: ${t.length} chars`)
      .join(", ");
    throw new Error(
      `prompt bound exceeded: the current editable files alone (${sizes}) need ${size(minimal)} characters ` +
        `with the instructions, more than the prompt bound of ${maxChars}; raise the bound or shrink the files`,
    );
  }

  // 1. Full guidance and notes; shrink the history down to its floor.
  const floor = history.floorLevel(HISTORY_FLOOR);
  if (size(user(guidance, allNotes, fullNotesOmitted, floor)) <= maxChars) {
    const level = largestFitting(floor, history.maxLevel, (l) => size(user(guidance, allNotes, fullNotesOmitted, l)) <= maxChars);
    return done(user(guidance, allNotes, fullNotesOmitted, level));
  }

  // 2. Cut program.md.
  const withoutGuidance = size(user("", allNotes, fullNotesOmitted, floor));
  let keep = guidance.length - (size(user(guidance, allNotes, fullNotesOmitted, floor)) - maxChars) - markerLength(guidance.length);
  keep = Math.min(keep, guidance.length);
  if (withoutGuidance <= maxChars && keep >= 0) {
    for (let k = keep; k >= 0; ) {
      const u = user(cutGuidance(guidance, k), allNotes, fullNotesOmitted, floor);
      const over = size(u) - maxChars;
      if (over <= 0) return done(u);
      k = k === 0 ? -1 : Math.max(0, k - over);
    }
  }
  const cut = cutGuidance(guidance, 0);

  // 3. Drop maintainer notes, oldest first.
  for (let drop = 1; drop <= nNotes; drop++) {
    const u = user(cut, allNotes.slice(drop), fullNotesOmitted + drop, floor);
    if (size(u) <= maxChars) return done(u);
  }

  // 4. Drop the remaining detailed history lines.
  const omitted = givenNotes.length;
  const level = largestFitting(0, floor, (l) => size(user(cut, [], omitted, l)) <= maxChars);
  return done(user(cut, [], omitted, level));
}

// ---------------------------------------------------------------- system prompt

function systemPrompt(editablePaths: string[], structured: boolean): string {
  const paths = editablePaths.map((p) => `\`${p}\``).join(", ");
  const format = structured
    ? [
        "Reply with one JSON object and nothing else:",
        "{",
        `  "title": short imperative summary of the change (at most ${MAX_TITLE_CHARS} characters),`,
        '  "hypothesis": why this change should lower val_bpb (mechanism and expected effect),',
        '  "edits": [ { "path": one of the editable paths, "search": text copied exactly from the current file, "replace": its new text } ]',
        "}",
        "Each `search` must occur exactly once in the current file: copy it character for character,",
        "indentation included, with enough surrounding lines to be unique. Keep edits small; several",
        "edits may be given, they are applied in order.",
      ].join("\n")
    : SEARCH_REPLACE_FORMAT_HELP;
  return [
    "You are a machine learning researcher running the autoresearch loop: each experiment changes",
    `the training code, trains a small language model for a FIXED wall-clock time budget, and is`,
    "measured by val_bpb (validation bits per byte; lower is better). An experiment is kept only if",
    "it lowers val_bpb by more than the noise threshold; everything else is discarded.",
    "",
    "Your job: propose exactly ONE focused change that you expect to lower val_bpb within that time",
    "budget. Rules:",
    `- Edit only the editable files: ${paths}. Data preparation, the tokenizer and the evaluation are`,
    "  fixed and must not be worked around.",
    "- The time budget is fixed: a change that makes each step slower must earn it back in quality.",
    "  Keep memory use in mind; running out of memory is a crash.",
    "- One idea per experiment, so its effect can be attributed. No refactoring, no cosmetic edits.",
    "- Do not repeat an experiment from the history (see the already-tried list); build on what was",
    "  kept, learn from what was worse or within noise, and avoid the causes of crashes.",
    "- Follow the research guidance and the maintainers' notes.",
    "",
    "A good hypothesis names the change, the mechanism by which it should help under a fixed time",
    'budget, and the expected direction of the effect, e.g. "Raising the learning rate from 3e-4 to',
    "6e-4 should converge faster in the short budget; the warmup keeps early steps stable, so",
    'val_bpb should drop by about 0.01." It is specific enough that the result can refute it.',
    "",
    "Reply format:",
    format,
  ].join("\n");
}

function renderTask(editablePaths: string[], structured: boolean): string {
  return section(
    "Your task",
    `Propose ONE focused change to ${editablePaths.join(", ")} that should lower val_bpb within the fixed time budget. ` +
      "Do not repeat anything already tried. " +
      (structured ? "Reply with the JSON object only." : "Reply in the SEARCH/REPLACE format only."),
  );
}

// ---------------------------------------------------------------- files and notes

function renderFiles(req: ProposalRequest): string {
  const parts: string[] = [];
  for (const path of req.editablePaths) {
    const text = req.files[path];
    if (text === undefined) {
      parts.push(`## ${path}\n(this file does not exist, so it cannot be edited)`);
      continue;
    }
    const lines = text.split("\n").length - (text === "" || text.endsWith("\n") ? 1 : 0);
    const fence = fenceFor(text);
    parts.push(`## ${path} (${lines} lines, shown in full)\n${fence}${languageOf(path)}\n${text}${text.endsWith("\n") ? "" : "\n"}${fence}`);
  }
  return section("Current editable files", parts.join("\n\n"));
}

function languageOf(path: string): string {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  const langs: Record<string, string> = { py: "python", md: "markdown", yml: "yaml", yaml: "yaml", json: "json", sh: "bash", toml: "toml" };
  return langs[ext] ?? "";
}

/** Newest notes first get the budget; each note is capped. Returns the kept notes, oldest first. */
function boundNotes(notes: string[], total: number): string[] {
  const kept: string[] = [];
  let used = 0;
  for (let i = notes.length - 1; i >= 0; i--) {
    const raw = notes[i] ?? "";
    const note = raw.length > MAX_NOTE_CHARS ? `${raw.slice(0, MAX_NOTE_CHARS)} [… note cut]` : raw;
    if (used + note.length + 4 > total) break;
    kept.unshift(note);
    used += note.length + 4;
  }
  return kept;
}

function renderNotes(notes: string[], omitted: number): string {
  const body = [
    "Notes from the maintainers of this repository (comments on experiment pull requests). Take them into account.",
    ...notes.map((n) => `- ${n.replace(/\n/g, "\n  ")}`),
  ];
  if (omitted > 0) body.push(`(${omitted} ${omitted === 1 ? "note" : "notes"} omitted to fit the prompt)`);
  return section("Notes from maintainers", body.join("\n"));
}

function cutGuidance(guidance: string, keep: number): string {
  if (keep >= guidance.length) return guidance;
  return `${guidance.slice(0, keep)}\n\n${marker(guidance.length - keep, guidance.length)}`;
}

function marker(omitted: number, total: number): string {
  return `[… program.md cut here to fit the prompt: ${omitted} of ${total} characters omitted …]`;
}

function markerLength(total: number): number {
  return marker(total, total).length + 2;
}

function section(title: string, body: string): string {
  return `# ${title}\n\n${body}`;
}

/** Largest level in [lo, hi] for which fits() holds, assuming fits(lo); fits is near-monotone. */
function largestFitting(lo: number, hi: number, fits: (level: number) => boolean): number {
  let a = lo;
  let b = hi;
  while (a < b) {
    const mid = Math.ceil((a + b) / 2);
    if (fits(mid)) a = mid;
    else b = mid - 1;
  }
  while (a > 0 && !fits(a)) a--;
  return a;
}

// ---------------------------------------------------------------- history

/**
 * Renders the history at a "level": levels 0..R add detailed lines for the newest experiments
 * (R = min(recent, N)), the next C levels add older crashes with their reasons, the next T
 * levels add titles of older experiments to the already-tried list, newest first. Dropping
 * levels from the top therefore drops the oldest material first.
 */
class HistoryRenderer {
  private readonly entries: HistoryEntry[];
  private readonly recentMax: number;
  private readonly olderCrashes: HistoryEntry[];
  private readonly olderTitles: string[];
  readonly maxLevel: number;

  constructor(
    history: HistoryEntry[],
    private readonly bestBpb: number | null,
    recent: number,
  ) {
    this.entries = [...history].sort((a, b) => a.n - b.n);
    this.recentMax = Math.min(Math.max(0, recent), this.entries.length);
    const older = this.entries.slice(0, this.entries.length - this.recentMax);
    this.olderCrashes = older.filter((e) => e.outcome === "crash").slice(-MAX_OLDER_CRASHES);
    // Unique titles, newest last; those shown in detail or in the crash list are excluded.
    const listedTitles = new Set([...this.entries.slice(older.length), ...this.olderCrashes].map((e) => normTitle(e.title)));
    const seen = new Set<string>();
    const titles: string[] = [];
    for (let i = older.length - 1; i >= 0; i--) {
      const e = older[i];
      if (!e) continue;
      const key = normTitle(e.title);
      if (key === "" || seen.has(key) || listedTitles.has(key)) continue;
      seen.add(key);
      titles.unshift(oneLine(e.title, MAX_TITLE_SHOWN));
    }
    this.olderTitles = titles;
    this.maxLevel = this.recentMax + this.olderCrashes.length + this.olderTitles.length;
  }

  floorLevel(floor: number): number {
    return Math.min(floor, this.recentMax);
  }

  render(level: number): string {
    const n = this.entries.length;
    const lines: string[] = [];
    lines.push(this.bestLine());
    if (n === 0) {
      lines.push("No experiments yet.");
      return section("Experiment history", lines.join("\n"));
    }
    const r = clamp(level, 0, this.recentMax);
    const c = clamp(level - this.recentMax, 0, this.olderCrashes.length);
    const t = clamp(level - this.recentMax - this.olderCrashes.length, 0, this.olderTitles.length);

    lines.push(`Experiments so far: ${n} (${countsText(this.entries)}).`);
    const summarized = this.entries.slice(0, n - r);
    if (summarized.length > 0) {
      lines.push(`… ${summarized.length} earlier ${summarized.length === 1 ? "experiment" : "experiments"} not listed in detail: ${countsText(summarized)}.`);
    }
    if (r > 0) {
      lines.push("", `Most recent experiments (newest last):`);
      for (const e of this.entries.slice(n - r)) lines.push(entryLine(e));
    }
    if (c > 0) {
      lines.push("", "Earlier crashes and their reasons (avoid these causes):");
      for (const e of this.olderCrashes.slice(this.olderCrashes.length - c)) {
        lines.push(`- #${e.n} ${oneLine(e.title, MAX_TITLE_SHOWN)} — ${oneLine(e.reason ?? "no reason recorded", MAX_REASON_SHOWN)}`);
      }
    }
    lines.push("", "Already tried — do NOT propose these again (every experiment listed above is also already tried):");
    if (t > 0) {
      for (const title of this.olderTitles.slice(this.olderTitles.length - t)) lines.push(`- ${title}`);
    }
    const hidden = this.olderTitles.length - t;
    if (hidden > 0) lines.push(`(titles of ${hidden} older ${hidden === 1 ? "experiment" : "experiments"} omitted to fit the prompt)`);
    if (t === 0 && hidden === 0 && r === n) lines.push("(nothing beyond the experiments listed above)");
    return section("Experiment history", lines.join("\n"));
  }

  private bestLine(): string {
    if (this.bestBpb === null) return "Best val_bpb so far: none yet (no baseline measured).";
    const best = [...this.entries]
      .reverse()
      .find((e) => e.valBpb !== null && Math.abs(e.valBpb - (this.bestBpb as number)) < 1e-12 && (e.outcome === "better" || e.outcome === "baseline"));
    const from = best ? ` (#${best.n} ${quote(oneLine(best.title, MAX_TITLE_SHOWN))})` : "";
    return `Best val_bpb so far: ${fmtBpb(this.bestBpb)}${from}. Lower is better.`;
  }
}

function entryLine(e: HistoryEntry): string {
  const title = quote(oneLine(e.title, MAX_TITLE_SHOWN));
  const bpb = e.valBpb !== null ? ` val_bpb ${fmtBpb(e.valBpb)}` : "";
  const delta = e.delta !== null ? ` (Δ ${e.delta >= 0 ? "+" : ""}${e.delta.toFixed(6)})` : "";
  switch (e.outcome) {
    case "better":
      return `#${e.n} BETTER (kept)${bpb}${delta} ${title}`;
    case "within noise":
      return `#${e.n} WITHIN NOISE (discarded, not a real gain)${bpb}${delta} ${title}`;
    case "worse":
      return `#${e.n} WORSE (discarded)${bpb}${delta} ${title}`;
    case "crash":
      return `#${e.n} CRASH ${title} — reason: ${oneLine(e.reason ?? "no reason recorded", MAX_REASON_SHOWN)}`;
    case "pending":
      return `#${e.n} ${
        e.verdict === "superseded"
          ? "SUPERSEDED (not measured on the current code)"
          : e.verdict === "review"
            ? "HELD FOR REVIEW (it touched what decides its own score; not a result to build on)"
            : "PENDING (being measured now)"
      } ${title}`;
    case "baseline":
      return `#${e.n} BASELINE${bpb} ${title}`;
  }
}

function countsText(entries: HistoryEntry[]): string {
  const counts = { better: 0, worse: 0, "within noise": 0, crash: 0, pending: 0, baseline: 0 };
  for (const e of entries) counts[e.outcome]++;
  const parts = [`${counts.better} better`, `${counts.worse} worse`, `${counts["within noise"]} within noise`, `${counts.crash} crashed`];
  if (counts.pending > 0) parts.push(`${counts.pending} pending`);
  if (counts.baseline > 0) parts.push(`${counts.baseline} ${counts.baseline === 1 ? "baseline" : "baselines"}`);
  return parts.join(", ");
}

function fmtBpb(v: number): string {
  return v.toFixed(6);
}

function oneLine(s: string, max: number): string {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function quote(s: string): string {
  return `"${s}"`;
}

function normTitle(s: string): string {
  return s.replace(/\s+/g, " ").trim().toLowerCase();
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, v));
}

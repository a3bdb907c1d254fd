// The built-in proposer: a local search over the numeric hyperparameters of the training script,
// so the loop runs with no LLM and no API key. Each proposal changes one UPPER_CASE numeric
// constant (`MATRIX_LR = 0.04`, `DEPTH = 8`, `TOTAL_BATCH_SIZE = 2**19`) by a multiplicative
// step. It is deterministic for a seed, prefers constants it has not touched lately and
// directions that helped before, and never proposes a file set that was already tried.

import { applyEdits } from "../edits.js";
import { treeHash } from "../ledger/index.js";
import type { Edit, HistoryEntry, Proposal, ProposalRequest, ProposerPort } from "../types.js";

/** mulberry32: a tiny, good-enough 32-bit PRNG; the sequence depends only on the seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ------------------------------------------------------------------ finding constants

type Style = "int" | "float" | "sci" | "pow";

export interface NumericConstant {
  path: string;
  /** 0-based line index in the file. */
  line: number;
  name: string;
  /** The number as written (`3e-4`, `0.04`, `2**19`). */
  literal: string;
  value: number;
  style: Style;
  /** Text of the line before and after the literal. */
  before: string;
  after: string;
}

const NUMBER = String.raw`-?(?:\d+\s*\*\*\s*\d+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)`;
// NAME = number, optionally annotated (`LR: float = 3e-4`) and followed by a comment.
const CONSTANT_RE = new RegExp(String.raw`^(\s*([A-Z][A-Z0-9_]*)\s*(?::\s*[A-Za-z_][\w.]*\s*)?=\s*)(${NUMBER})(\s*(?:#.*)?)$`);

function parseLiteral(literal: string): { value: number; style: Style } {
  const pow = /^(-?)(\d+)\s*\*\*\s*(\d+)$/.exec(literal);
  if (pow) return { value: (pow[1] ? -1 : 1) * Number(pow[2]) ** Number(pow[3]), style: "pow" };
  if (/[eE]/.test(literal)) return { value: Number(literal), style: "sci" };
  if (literal.includes(".")) return { value: Number(literal), style: "float" };
  return { value: Number(literal), style: "int" };
}

// Settings that are not hyperparameters: a seed only reshuffles noise, and switches
// (COMPILE = 1, USE_X = 0) change how a run executes, not what it learns.
const NOT_A_HYPERPARAMETER = /(^|_)SEED$|^(USE|ENABLE|DISABLE|DEBUG|VERBOSE|LOG)(_|$)|COMPILE|FLAG/;

/** Every UPPER_CASE numeric constant assignment in the files, in file and line order. */
export function findConstants(files: Record<string, string>, paths: string[]): NumericConstant[] {
  const out: NumericConstant[] = [];
  for (const path of paths) {
    const text = files[path];
    if (text === undefined) continue;
    text.split("\n").forEach((raw, line) => {
      const l = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      const m = CONSTANT_RE.exec(l);
      if (!m || NOT_A_HYPERPARAMETER.test(m[2]!)) return;
      const literal = m[3]!;
      const { value, style } = parseLiteral(literal);
      if (!Number.isFinite(value)) return;
      out.push({ path, line, name: m[2]!, literal, value, style, before: m[1]!, after: m[4]! });
    });
  }
  return out;
}

// ------------------------------------------------------------------ candidate values

const FLOAT_FACTORS = [1.25, 1.5, 2];
// Constants that live in (0, 1): stepping 1 − v keeps 0.95 → 0.96 or 0.9375 instead of past 1.
const FRACTION_NAME = /(RATIO|FRAC|BETA|DROPOUT|PROB|MOMENTUM)/;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0 && n <= 2 ** 30;
}

function stripZeros(s: string): string {
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/** A number written like the original: scientific stays scientific, a float stays a float; 4 significant digits. */
export function formatLike(value: number, like: NumericConstant | { literal: string; style: Style }): string {
  if (like.style === "sci") {
    const [mant, exp] = value.toExponential(3).split("e");
    const e = /E/.test(like.literal) ? "E" : "e";
    return `${stripZeros(mant!)}${e}${Number(exp)}`;
  }
  if (like.style === "int") return String(Math.round(value));
  let s = String(Number(value.toPrecision(4)));
  if (!/[.eE]/.test(s)) s += ".0";
  return s;
}

interface Candidate {
  literal: string;
  value: number;
  up: boolean;
  /** "×1.25", "+1", "×2" — shown in the hypothesis. */
  step: string;
}

function roundTo(x: number, g: number): number {
  return Math.round(x / g) * g;
}

/** The neighbours of one constant, each a single step away. */
function candidatesFor(c: NumericConstant): Candidate[] {
  const v = c.value;
  const out: Candidate[] = [];
  const add = (value: number, literal: string, step: string) => {
    if (!Number.isFinite(value) || value === v || literal === c.literal) return;
    if (out.some((o) => o.literal === literal)) return;
    out.push({ literal, value, up: value > v, step });
  };
  if (v === 0) return out; // a multiplicative step cannot move zero
  const sign = v < 0 ? -1 : 1;
  const a = Math.abs(v);

  if (c.style === "pow") {
    const m = /^(-?)(\d+)(\s*\*\*\s*)(\d+)$/.exec(c.literal)!;
    const base = Number(m[2]);
    const exp = Number(m[4]);
    const write = (e: number) => `${m[1]}${base}${m[3]}${e}`;
    add(sign * base ** (exp + 1), write(exp + 1), `×${base}`);
    if (exp > 0) add(sign * base ** (exp - 1), write(exp - 1), `÷${base}`);
    return out;
  }

  if (c.style === "int") {
    const int = (x: number, step: string) => {
      const r = Math.round(x);
      if (r >= 1) add(sign * r, String(sign * r), step);
    };
    if (isPowerOfTwo(a)) {
      // Sizes that are powers of two (dims, batch sizes) usually need to stay so.
      int(a * 2, "×2");
      int(a / 2, "÷2");
      return out;
    }
    if (a <= 16) {
      int(a + 1, "+1");
      int(a - 1, "−1");
    }
    int(a * 2, "×2");
    if (a % 2 === 0) int(a / 2, "÷2");
    if (a > 16) {
      // Keep the granularity of the original (768 = 12 × 64 stays a multiple of 64).
      let g = 1;
      while (a % (g * 2) === 0 && g < 64) g *= 2;
      // A rounded step says so: 96 × 1.25 at a granularity of 32 is 128, "≈×1.25".
      const rounded = (x: number, label: string) => {
        const r = roundTo(x, g);
        int(r, r === x ? label : `≈${label}`);
      };
      rounded(a * 1.5, "×1.5");
      rounded(a / 1.5, "÷1.5");
      rounded(a * 1.25, "×1.25");
      rounded(a / 1.25, "÷1.25");
    }
    return out;
  }

  if (FRACTION_NAME.test(c.name) && a < 1) {
    for (const f of FLOAT_FACTORS) {
      if (a > 0.5) {
        // Near 1 the distance to 1 is what matters (0.95 ↔ 0.96 ↔ 0.975).
        const gap = 1 - a;
        const lower = 1 - gap * f;
        const higher = 1 - gap / f;
        if (lower > 0) add(sign * lower, formatLike(sign * lower, c), `1−v ×${f}`);
        add(sign * higher, formatLike(sign * higher, c), `1−v ÷${f}`);
      } else {
        if (a * f < 1) add(sign * a * f, formatLike(sign * a * f, c), `×${f}`);
        add(sign * (a / f), formatLike(sign * (a / f), c), `÷${f}`);
      }
    }
    return out;
  }

  for (const f of FLOAT_FACTORS) {
    add(v * f, formatLike(v * f, c), `×${f}`);
    add(v / f, formatLike(v / f, c), `÷${f}`);
  }
  return out;
}

// ------------------------------------------------------------------ learning from history

const TITLE_RE = /^([A-Z][A-Z0-9_]*): (\S+(?:\s*\*\*\s*\d+)?) → (\S+(?:\s*\*\*\s*\d+)?)$/;

interface PastStep {
  n: number;
  name: string;
  up: boolean;
  outcome: HistoryEntry["outcome"];
}

/** The single-constant steps in the history, read back from the titles this proposer writes. */
function pastSteps(history: HistoryEntry[]): PastStep[] {
  const out: PastStep[] = [];
  for (const h of history) {
    const m = TITLE_RE.exec(h.title.trim());
    if (!m) continue;
    const from = parseLiteral(m[2]!).value;
    const to = parseLiteral(m[3]!).value;
    if (!Number.isFinite(from) || !Number.isFinite(to) || from === to) continue;
    out.push({ n: h.n, name: m[1]!, up: to > from, outcome: h.outcome });
  }
  return out;
}

interface Leaning {
  weight: number;
  /** Probability of trying an increase first. */
  pUp: number;
  evidence: string | null;
}

function leaning(name: string, steps: PastStep[], recentNames: Set<string>, guidance: string): Leaning {
  const mine = steps.filter((s) => s.name === name);
  let weight = 1;
  let score = 0;
  let evidence: string | null = null;
  for (const s of mine) {
    if (s.outcome === "better") {
      weight *= 2;
      score += s.up ? 2 : -2;
      evidence = `${s.up ? "Raising" : "Lowering"} it helped in experiment ${s.n}.`;
    } else if (s.outcome === "worse" || s.outcome === "crash") {
      weight *= 0.85;
      score += s.up ? -1 : 1;
      evidence ??= `${s.up ? "Raising" : "Lowering"} it did not help in experiment ${s.n}.`;
    } else if (s.outcome === "within noise") {
      weight *= 0.9;
    }
  }
  if (recentNames.has(name)) weight *= 0.2;
  if (new RegExp(`\\b${name}\\b`).test(guidance)) weight *= 3;
  weight = Math.min(8, Math.max(0.05, weight));
  const pUp = 0.5 + 0.35 * Math.max(-1, Math.min(1, score / 3));
  return { weight, pUp, evidence };
}

// ------------------------------------------------------------------ building the edit

/** The smallest run of whole lines ending at `line` that occurs exactly once in the text. */
function uniqueSearch(lines: string[], line: number, text: string): { start: number; search: string } | null {
  for (let start = line; start >= Math.max(0, line - 5); start--) {
    const search = lines.slice(start, line + 1).join("\n");
    const first = text.indexOf(search);
    if (first !== -1 && text.indexOf(search, first + 1) === -1) return { start, search };
  }
  return null;
}

function describeStep(c: NumericConstant, cand: Candidate): string {
  const verb = cand.up ? "Raising" : "Lowering";
  return `${verb} ${c.name} from ${c.literal} to ${cand.literal} (${cand.step})`;
}

export class MutateProposer implements ProposerPort {
  readonly name = "mutate";

  async propose(req: ProposalRequest): Promise<Proposal> {
    return proposeMutation(req);
  }
}

/** The mutation proposal as a plain function (what MutateProposer.propose returns). */
export function proposeMutation(req: ProposalRequest): Proposal {
  const paths = req.editablePaths.filter((p) => req.files[p] !== undefined);
  const constants = findConstants(req.files, paths);
  if (constants.length === 0) {
    throw new Error(
      `mutate: no UPPER_CASE numeric constants (like \`LR = 3e-4\`) were found in ${paths.join(", ") || "the editable files"}; there is nothing to change`,
    );
  }
  const rng = mulberry32(req.seed);
  const steps = pastSteps(req.history);
  // Constants changed by the last three experiments (of any proposer) are given a rest.
  const lastThree = new Set(
    [...req.history]
      .map((h) => h.n)
      .sort((a, b) => b - a)
      .slice(0, 3),
  );
  const recent = new Set(steps.filter((s) => lastThree.has(s.n)).map((s) => s.name));

  // Weighted order without replacement: each constant draws an exponential "arrival time" with
  // rate = weight; sorting by it is a weighted shuffle that stays deterministic for the seed.
  const order = constants
    .map((c) => {
      const lean = leaning(c.name, steps, recent, req.guidance);
      return { c, lean, key: -Math.log(1 - rng()) / lean.weight };
    })
    .sort((a, b) => a.key - b.key);

  let tried = 0;
  for (const { c, lean } of order) {
    const cands = candidatesFor(c);
    const upFirst = rng() < lean.pUp;
    // Within a direction, a random order of step sizes; then the other direction.
    const shuffled = cands.map((x) => ({ x, k: rng() })).sort((a, b) => a.k - b.k).map((o) => o.x);
    const ordered = [...shuffled.filter((x) => x.up === upFirst), ...shuffled.filter((x) => x.up !== upFirst)];
    for (const cand of ordered) {
      tried++;
      // Searched with LF line ends; applyEdits matches them against a CRLF file too.
      const text = req.files[c.path]!.replace(/\r\n/g, "\n");
      const lines = text.split("\n");
      const found = uniqueSearch(lines, c.line, text);
      if (!found) continue;
      const newLine = `${c.before}${cand.literal}${c.after}`;
      const replace = [...lines.slice(found.start, c.line), newLine].join("\n");
      const edit: Edit = { path: c.path, search: found.search, replace };
      const applied = applyEdits(req.files, [edit], req.editablePaths);
      if (!applied.ok) continue;
      if (req.triedTreeHashes.has(treeHash(applied.files))) continue;
      const title = `${c.name}: ${c.literal} → ${cand.literal}`;
      const hypothesis = [
        `${describeStep(c, cand)} may lower val_bpb within the same time budget.`,
        lean.evidence ?? (steps.some((s) => s.name === c.name) ? "" : `${c.name} has not been changed before.`),
        "This is one step of the built-in local search over numeric settings.",
      ]
        .filter(Boolean)
        .join(" ");
      return { title, hypothesis, edits: [edit], files: applied.files, proposer: "mutate" };
    }
  }
  throw new Error(
    `mutate: the neighbourhood is exhausted: all ${tried} single-constant changes of ${constants.length} constants ` +
      `in ${paths.join(", ")} were already tried; change program.md's direction or use an LLM proposer`,
  );
}

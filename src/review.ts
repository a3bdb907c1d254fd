// Which changes a person must look at before they are merged. An experiment may only change
// train.py, but inside train.py it can still reach for what decides its own score: the
// evaluation, the validation data, the time accounting, the data folder, other processes, the
// network, the attention mask. Every experiment's diff is scanned with the rules below (kept in
// this one place); a change that matches any of them is still measured, but never merged
// automatically: it waits with the label `autoresearch:review` and an `action_required` check
// run naming the rule and the lines, until someone with write access says `/autoresearch keep`.
//
// The rules look at changed lines (added and removed: deleting the line that stops the clock
// is as much a hack as adding one), not at the whole file, so an honest change to a constant
// is never held up by code it did not touch.
import { diffLines } from "./edits.js";
import { table } from "./markdown.js";
import type { ReviewFlag } from "./types.js";

export interface ReviewRule {
  id: string;
  /** What the rule is about, as the check run says it. */
  what: string;
  pattern: RegExp;
}

export const REVIEW_RULES: readonly ReviewRule[] = [
  {
    id: "evaluation",
    what: "the evaluation or the summary lines it prints",
    pattern: /\bevaluate_bpb\b|\bval_bpb\b|\bbits_per_byte\b|\bprint\s*\(\s*f?["']---|\b(training_seconds|total_seconds|peak_vram_mb|num_steps)\b/,
  },
  {
    id: "validation-data",
    what: "the validation split or the evaluation's internals",
    pattern: /\bload_split\s*\(\s*["']val|["']val(idation)?["']|\bval\.bin\b|\bEVAL_[A-Z_]+\b|\b_?eval_windows\b|\bMAX_SEQ_LEN\b/,
  },
  {
    id: "fixed-modules",
    what: "assignments into the fixed modules (prepare.py, builtins, sys.modules)",
    pattern: /\bprepare\s*\.\s*\w+\s*(?:=(?!=)|[-+*/]=)|\bsetattr\s*\(\s*prepare\b|\bsys\.modules\b|\bbuiltins\b|__builtins__|\bimportlib\b|\b__import__\b/,
  },
  {
    id: "time",
    what: "time accounting (the clock or the budget)",
    pattern: /\btime\.(time|perf_counter|monotonic|process_time)(_ns)?\b|\bTIME_BUDGET\b|\bAUTORESEARCH_TIME_BUDGET\b|\bdatetime\b/,
  },
  {
    id: "data-dir",
    what: "the data directory or the environment",
    pattern: /\bAUTORESEARCH_DATA_DIR\b|\bDATA_DIR\b|\bdata_dir\b|\.cache\b|\bos\.environ\b|\bgetenv\b/,
  },
  {
    id: "processes",
    what: "starting or signalling processes",
    pattern: /\bsubprocess\b|\bos\.(system|popen|fork|forkpty|spawn\w*|exec\w*|kill|killpg)\b|\bmultiprocessing\b|\bpty\b|\bsignal\.\w+/,
  },
  {
    id: "network",
    what: "sockets and the network",
    pattern: /\bsocket\b|\burllib\b|\brequests\b|\bhttp\.client\b|\baiohttp\b|\bhttpx\b|\bftplib\b/,
  },
  {
    id: "masking",
    what: "attention masking (a model that sees its targets)",
    pattern: /\bis_causal\b|\bcausal\b|\bmask\w*\b|\btril\b|\btriu\b/i,
  },
  {
    id: "files",
    what: "writing or removing files",
    pattern: /\bopen\s*\([^)]*,\s*["'][wax+]|\.write_(text|bytes)\s*\(|\bshutil\.|\bos\.(remove|unlink|rename|replace|makedirs|mkdir)\b/,
  },
  {
    id: "dynamic-code",
    what: "running code built at run time",
    pattern: /(?<![\w.])(eval|exec|compile)\s*\(|\bpickle\.loads?\b|\bmarshal\b|\bctypes\b/,
  },
];

/** Most lines named per rule (the check run and PR body stay short). */
const MAX_LINES_PER_RULE = 5;

/**
 * The review flags of a change: for each rule, the changed lines (path, line number in the new
 * file, or in the old one for a removed line, and the text) that match it. Empty: nothing to
 * review.
 */
export function scanChange(before: Record<string, string>, after: Record<string, string>): ReviewFlag[] {
  const flags = new Map<string, ReviewFlag>();
  for (const path of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const ops = diffLines(before[path] ?? "", after[path] ?? "");
    let oldLine = 0;
    let newLine = 0;
    for (const o of ops) {
      if (o.op !== "+") oldLine++;
      if (o.op !== "-") newLine++;
      if (o.op === " ") continue;
      const text = o.line.replace(/\r?\n$/, "");
      // A comment changes nothing the run does.
      const code = text.replace(/(^|\s)#.*$/, "");
      for (const rule of REVIEW_RULES) {
        if (!rule.pattern.test(code)) continue;
        const flag = flags.get(rule.id) ?? { rule: rule.id, what: rule.what, lines: [] };
        if (flag.lines.length < MAX_LINES_PER_RULE) {
          flag.lines.push({ path, line: o.op === "+" ? newLine : oldLine, change: o.op, text: text.trim().slice(0, 200) });
        }
        flags.set(rule.id, flag);
      }
    }
  }
  return REVIEW_RULES.flatMap((r) => (flags.has(r.id) ? [flags.get(r.id)!] : []));
}

// An improvement far beyond anything seen so far is held for review too, whatever the diff: a
// real step of that size is rare, and a measurement that found a way around the rules above
// looks exactly like one. "Far beyond" means both:
//   - more than OUTLIER_SIGMAS standard deviations of one run (the noise measured on this
//     hardware), so that no plausible run of luck reaches it, and
//   - more than OUTLIER_HISTORY times the largest improvement any experiment kept before, so
//     that a project whose steps are all large is not held at every step.
// While the noise is not known yet (fewer than 2 degrees of freedom) the rule says nothing.
export const OUTLIER_SIGMAS = 8;
export const OUTLIER_HISTORY = 3;

/**
 * The review flag of an improvement (baseline − mean val_bpb, positive is better) far beyond the
 * noise `sigma` and the largest improvement kept so far (`bestKept`, null: none yet); null when it
 * is not one.
 */
export function outlierFlag(improvement: number, sigma: number | null, bestKept: number | null): ReviewFlag | null {
  if (sigma === null || !(sigma > 0) || !(improvement > OUTLIER_SIGMAS * sigma)) return null;
  if (bestKept !== null && bestKept > 0 && !(improvement > OUTLIER_HISTORY * bestKept)) return null;
  const history = bestKept !== null && bestKept > 0 ? `, ${(improvement / bestKept).toFixed(1)}× the largest kept so far` : ", and nothing was kept before";
  return {
    rule: "outlier",
    what: `an improvement far beyond anything seen (${improvement.toFixed(4)} bpb: ${(improvement / sigma).toFixed(1)}σ of one run${history})`,
    lines: [],
  };
}

/** The rules a change matched, with its lines (the code quoted: escaped and defused), as a table. */
export function flagsTable(flags: ReviewFlag[]): string {
  const rows = flags.flatMap((f) =>
    f.lines.length ? f.lines.map((l) => [f.what, `${l.path}:${l.line}`, `${l.change} ${l.text}`]) : [[f.what, "", "the measurement itself"]],
  );
  return rows.length ? `The change touches:\n\n${table(["rule", "line", "change"], rows)}` : "";
}

/** One line per flag, for reasons and logs: "time accounting (train.py:12, 14)". */
export function describeFlags(flags: ReviewFlag[]): string {
  return flags
    .map((f) => !f.lines.length ? f.what : `${f.what} (${[...new Set(f.lines.map((l) => l.path))].map((p) => `${p}:${f.lines.filter((l) => l.path === p).map((l) => l.line).join(", ")}`).join("; ")})`)
    .join("; ");
}

// The ledger is the set of experiment PRs. Each PR body has a human part (hypothesis, diff,
// baseline, result and decision in plain words) and, at the end, the machine-readable
// ExperimentRecord in a hidden HTML comment. The record is the state the reconcile loop reads
// back, so decoding is tolerant (a body edited by a person, or some other bot's PR, yields null
// rather than an exception) and encoding never produces a body GitHub would refuse.

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { z } from "zod";
import { editsAsDiff } from "./edits.js";
import { codeBlock, escapeCell as cell, escapeText as prose, table } from "./markdown.js";
import { fmtBpb, isMeasured, meanValBpb } from "./policy.js";
import { flagsTable } from "./review.js";
import { EVALUATIONS } from "./runner/result.js";
import type { ExperimentRecord, ExperimentState, Measurement, TrainerResult } from "./types.js";

// ------------------------------------------------------------------ schemas

export const editSchema = z.object({ path: z.string(), search: z.string(), replace: z.string() });

export const trainerResultSchema = z.object({
  status: z.enum(["ok", "crash", "oom", "timeout", "nan", "over_budget"]),
  val_bpb: z.number().nullable(),
  exit_code: z.number().int().nullable(),
  reason: z.string(),
  log_tail: z.string(),
  summary: z.record(z.string(), z.union([z.number(), z.string()])),
  stage: z.enum(["fetch", "prepare", "train", "eval"]).optional(),
  commit: z.string().nullable().optional(),
  runId: z.string().nullable().optional(),
  sandbox: z.string().optional(),
  notes: z.array(z.string()).optional(),
  hardware: z.string().optional(),
  evaluation: z.enum(EVALUATIONS).optional(),
});

export const measurementSchema = z.object({
  runId: z.string(),
  sha: z.string(),
  result: trainerResultSchema,
  finishedAt: z.string(),
});

export const experimentRecordSchema = z.object({
  v: z.literal(1),
  n: z.number().int().positive(),
  kind: z.enum(["baseline", "experiment"]),
  title: z.string(),
  hypothesis: z.string(),
  proposer: z.string(),
  baseSha: z.string(),
  headSha: z.string(),
  edits: z.array(editSchema),
  treeHash: z.string(),
  baseTreeHash: z.string(),
  guidanceSha: z.string().nullable(),
  baselineBpb: z.number().nullable(),
  baselineN: z.number().int().nullable().optional(),
  attempt: z.number().int().min(0),
  state: z.enum(["queued", "running", "review", "kept", "discarded", "crashed", "superseded"]),
  measurements: z.array(measurementSchema),
  decision: z
    .object({
      verdict: z.enum(["keep", "discard", "crash"]),
      delta: z.number().nullable(),
      reasons: z.array(z.string()),
      threshold: z
        .object({
          keep: z.number(),
          promising: z.number(),
          source: z.enum(["min_delta", "noise", "floor"]),
          sigma: z.number().nullable(),
          df: z.number().int(),
          hardware: z.string().nullable(),
          runs: z.number().int(),
          baselineRuns: z.number().int(),
        })
        .optional(),
    })
    .nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  previousGuidanceSha: z.string().nullable().optional(),
  reruns: z.number().int().min(0).optional(),
  adoptedBy: z.string().nullable().optional(),
  ideaId: z.number().int().nullable().optional(),
  reapplied: z.string().max(500).optional(),
  clicks: z.array(z.string()).optional(),
  flags: z
    .array(
      z.object({
        rule: z.string(),
        what: z.string(),
        lines: z.array(z.object({ path: z.string(), line: z.number().int(), change: z.enum(["+", "-"]), text: z.string() })),
      }),
    )
    .optional(),
});

// Compile-time proof that the schemas and the shared types describe the same objects.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _recordShape: Same<z.output<typeof experimentRecordSchema>, ExperimentRecord> = true;
const _resultShape: Same<z.output<typeof trainerResultSchema>, TrainerResult> = true;
void _recordShape;
void _resultShape;

// ------------------------------------------------------------------ the hidden record

const RECORD_OPEN = "<!-- autoresearch:record";
/** After the last opener: the one-line JSON and the closer (a body edited on the web may use CRLF). */
const RECORD_TAIL = /^[ \t]*\r?\n(\{[^\r\n]*\})[ \t]*\r?\n-->/;

/** Non-finite numbers have no JSON form; keep them readable instead of turning into null. */
function jsonSafe(r: ExperimentRecord): ExperimentRecord {
  const fixResult = (res: TrainerResult): TrainerResult => ({
    ...res,
    val_bpb: res.val_bpb !== null && !Number.isFinite(res.val_bpb) ? null : res.val_bpb,
    summary: Object.fromEntries(
      Object.entries(res.summary).map(([k, v]) => [k, typeof v === "number" && !Number.isFinite(v) ? String(v) : v]),
    ),
  });
  return { ...r, measurements: r.measurements.map((m) => ({ ...m, result: fixResult(m.result) })) };
}

/**
 * The record as a hidden HTML comment. `<` and `>` are written as JSON escapes so the JSON can
 * never contain `-->` (or `--!>`), which would end the comment early; the JSON is otherwise the
 * record, on one line.
 */
export function encodeRecord(r: ExperimentRecord): string {
  const json = JSON.stringify(jsonSafe(r)).replace(/</g, "\\u003c").replace(/>/g, "\\u003e");
  return `${RECORD_OPEN}\n${json}\n-->`;
}

/**
 * The record in a PR body: the block after the last `<!-- autoresearch:record` opener, whose
 * JSON is one line (as encodeRecord writes it). Text the bot quotes into a body is defused
 * (src/markdown.ts), so no opener comes after the bot's own; and text before it cannot reach
 * into it. Returns null, never throws, when there is none or it is not a valid record.
 */
export function decodeRecord(body: string | null | undefined): ExperimentRecord | null {
  if (!body) return null;
  const at = body.lastIndexOf(RECORD_OPEN);
  if (at < 0) return null;
  const m = RECORD_TAIL.exec(body.slice(at + RECORD_OPEN.length));
  if (!m) return null;
  try {
    const parsed = experimentRecordSchema.safeParse(JSON.parse(m[1]!));
    return parsed.success ? (parsed.data as ExperimentRecord) : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ the PR body

/** GitHub refuses PR bodies over 65536 characters; bodies are kept under this many UTF-8 bytes. */
export const BODY_LIMIT = 65_000;

/** Past this, a log tail in the body is cut to its end (the end is where the error is). */
const LOG_TAIL_CHARS = 3_000;

const bytes = (s: string) => Buffer.byteLength(s, "utf8");

export function shortSha(sha: string): string {
  return sha.slice(0, 7);
}

function commitRef(sha: string, repoUrl: string | undefined): string {
  if (!sha) return "(unknown commit)";
  return repoUrl ? `[\`${shortSha(sha)}\`](${repoUrl.replace(/\/+$/, "")}/commit/${sha})` : `\`${shortSha(sha)}\``;
}

function lastLines(text: string, maxChars: number): string {
  // Progress lines are separated by \r; show them as lines.
  const t = text.replace(/\r\n?/g, "\n");
  if (t.length <= maxChars) return t;
  const cut = t.slice(t.length - maxChars);
  const nl = cut.indexOf("\n");
  return nl >= 0 && nl < cut.length - 1 ? cut.slice(nl + 1) : cut;
}

function statusLine(r: ExperimentRecord): string {
  switch (r.state) {
    case "queued":
      // Written when the PR opens or a run ends; not again when the next run starts (a write
      // GitHub counts against the budget).
      return `${r.reapplied ? `${prose(r.reapplied)} ` : ""}Queued or training (run ${Math.max(1, r.attempt)}): the check run appears with the decision.`;
    case "running":
      return `Training (attempt ${Math.max(1, r.attempt)}).`;
    case "review":
      return "Held for review: it improved val_bpb, but the change touches what decides its own score (below). It is merged only when someone with write access comments `/autoresearch keep`; closing the PR discards it.";
    case "kept":
      return r.kind === "baseline"
        ? "Measured: this is the figure later experiments must beat."
        : "Kept: the change improved val_bpb and was merged.";
    case "discarded":
      return "Discarded: the change did not improve val_bpb enough; the PR is closed unmerged.";
    case "crashed":
      return "Crashed: the run failed; the PR is closed unmerged.";
    case "superseded":
      return "Superseded: the default branch moved, so this result no longer applies; the PR is closed unmerged.";
  }
}

function fmtFigure(v: number | string): string {
  if (typeof v === "string") return v;
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(8)));
}

/** Every run of an experiment: commit, status, val_bpb, seed-free note (the check run and the PR body list them all). */
export function measurementsTable(ms: Measurement[]): string {
  const rows = ms.map((m, i) => {
    const r = m.result;
    const bpb = isMeasured(r) ? fmtBpb(r.val_bpb) : "—";
    const stage = r.stage && r.stage !== "train" ? ` (${r.stage})` : "";
    return `| ${i + 1} | \`${shortSha(m.sha)}\` | ${r.status}${stage} | ${bpb} | ${cell(r.reason || "")} |`;
  });
  return ["| run | commit | status | val_bpb | note |", "| --- | --- | --- | --- | --- |", ...rows].join("\n");
}

/** The summary block a run printed, as a table (its keys and values are the run's: escaped). */
export function summaryTable(result: TrainerResult): string {
  const entries = Object.entries(result.summary);
  if (entries.length === 0) return "";
  return table(["figure", "value"], entries.map(([k, v]) => [k, fmtFigure(v)]));
}

/** Shrink log tails inside the record until it fits; the edits must stay whole to be re-applied. */
function fittingRecord(r: ExperimentRecord, budget: number): string {
  for (const keep of [Infinity, 4000, 1000, 0]) {
    const trimmed: ExperimentRecord =
      keep === Infinity
        ? r
        : {
            ...r,
            measurements: r.measurements.map((m) => ({
              ...m,
              result: { ...m.result, log_tail: m.result.log_tail.slice(Math.max(0, m.result.log_tail.length - keep)) },
            })),
          };
    const encoded = encodeRecord(trimmed);
    if (bytes(encoded) <= budget) return encoded;
  }
  throw new Error(
    `experiment ${r.n}: its record does not fit in a pull request body (the edits are too large); propose a smaller change`,
  );
}

/** Cut a diff to whole lines within `budget` bytes, saying how much was left out. */
function boundedDiff(diff: string, budget: number): { text: string; omitted: number } {
  if (bytes(diff) <= budget) return { text: diff, omitted: 0 };
  const lines = diff.split("\n");
  const kept: string[] = [];
  let used = 0;
  for (const l of lines) {
    const b = bytes(l) + 1;
    if (used + b > budget) break;
    kept.push(l);
    used += b;
  }
  return { text: kept.join("\n"), omitted: lines.length - kept.length };
}

export interface RenderOptions {
  /** A unified diff of the change (from the files); without it the edits themselves are shown. */
  diff?: string;
  /** https://github.com/owner/repo, to link commits. */
  repoUrl?: string;
}

/**
 * The PR body: hypothesis, change, baseline, status, result and decision in plain words, then
 * the hidden record. Always under BODY_LIMIT bytes: log tails and then the shown diff are cut
 * (with a note) to make room; throws only if the record alone cannot fit.
 */
export function renderBody(r: ExperimentRecord, opts: RenderOptions = {}): string {
  const record = fittingRecord(r, BODY_LIMIT - 2_000);
  const parts: string[] = [];

  if (r.kind === "baseline") {
    parts.push(
      `**Baseline.** ${prose(r.hypothesis || "The default branch as it is, measured so that experiments have a figure to beat.")}`,
      `Measures the default branch at ${commitRef(r.baseSha, opts.repoUrl)}, unchanged.`,
    );
  } else {
    parts.push(`**Hypothesis.** ${prose(r.hypothesis)}`);
  }

  const diff = r.kind === "experiment" ? (opts.diff ?? editsAsDiff(r.edits)) : "";

  // What a person must look at before it may be merged (src/review.ts), from the start.
  const review = r.kind === "experiment" && r.flags?.length
    ? [
        "### Review",
        `This change is measured, but it is never merged without a person: ${flagsTable(r.flags)}\n\nIf it improves val_bpb, someone with write access merges it with \`/autoresearch keep\`.`,
      ]
    : [];

  const baseline: string[] = [];
  if (r.kind === "experiment") {
    baseline.push("### Measured against");
    const from = r.baselineN ? `, measured in experiment ${r.baselineN}` : "";
    baseline.push(
      r.baselineBpb === null
        ? `No baseline figure yet for ${commitRef(r.baseSha, opts.repoUrl)}, the default-branch commit this change is built on.`
        : `val_bpb **${fmtBpb(r.baselineBpb)}**${from}, for ${commitRef(r.baseSha, opts.repoUrl)}, the default-branch commit this change is built on.`,
    );
  }

  const status: string[] = ["### Status", statusLine(r)];
  const result: string[] = [];
  let logTail = "";
  if (r.measurements.length > 0) {
    result.push("### Result", measurementsTable(r.measurements));
    const mean = meanValBpb(r.measurements);
    const k = r.measurements.filter((m) => isMeasured(m.result)).length;
    const ofRuns = k > 1 ? ` (mean of ${k} runs)` : "";
    const t = r.decision?.threshold;
    if (mean !== null && r.kind === "experiment" && r.baselineBpb !== null) {
      const delta = r.decision?.delta ?? mean - r.baselineBpb;
      const sign = delta > 0 ? "+" : "";
      const baseRuns = t && t.baselineRuns > 1 ? ` (mean of ${t.baselineRuns} runs)` : "";
      result.push(`val_bpb **${fmtBpb(mean)}**${ofRuns}, delta **${sign}${fmtBpb(delta)}** against the baseline${baseRuns} (negative is better).`);
    } else if (mean !== null) {
      result.push(`val_bpb **${fmtBpb(mean)}**${ofRuns}.`);
    }
    if (t?.source === "noise") {
      result.push(`Noise: σ ${fmtBpb(t.sigma!)} per run from ${t.df} degrees of freedom${t.hardware ? ` on ${prose(t.hardware)}` : ""}; keeping needed an improvement over ${fmtBpb(t.keep)}.`);
    } else if (t?.source === "floor") {
      result.push(`Noise: not known yet (fewer than 2 repeated runs of one tree); keeping needed an improvement over the floor ${fmtBpb(t.keep)}.`);
    }
    if (r.decision) {
      result.push(`**Decision: ${r.decision.verdict}.**`, r.decision.reasons.map((s) => `- ${prose(s)}`).join("\n"));
    }
    const lastOk = [...r.measurements].reverse().find((m) => isMeasured(m.result));
    const table = lastOk ? summaryTable(lastOk.result) : "";
    if (table) result.push("Summary printed by the training run:", table);
    const lastRun = r.measurements[r.measurements.length - 1]!;
    if (!isMeasured(lastRun.result) && lastRun.result.log_tail.trim() !== "") {
      logTail = `<details><summary>End of the log of the last run</summary>\n\n${codeBlock(lastLines(lastRun.result.log_tail, LOG_TAIL_CHARS))}\n\n</details>`;
    }
  } else if (r.decision) {
    result.push("### Result", `**Decision: ${r.decision.verdict}.**`, r.decision.reasons.map((s) => `- ${prose(s)}`).join("\n"));
  }

  const steering: string[] = [];
  if (r.kind === "experiment" && r.guidanceSha && r.previousGuidanceSha && r.previousGuidanceSha !== r.guidanceSha) {
    steering.push(
      `**Guidance:** program.md at \`${shortSha(r.guidanceSha)}\` (changed since the previous experiment, which used \`${shortSha(r.previousGuidanceSha)}\`).`,
    );
  }
  if (r.adoptedBy) steering.push(`**Adopted** by @${prose(r.adoptedBy)} with \`/autoresearch keep\`: merged once measured on the current head, unless the run crashes.`);
  if (r.reruns) steering.push(`**Measured again** on request: ${r.reruns} more ${r.reruns === 1 ? "run" : "runs"} to go before the decision.`);
  if (steering.length) parts.push(steering.join("\n\n"));

  const footer = `<sub>Experiment ${r.n} · proposed by ${prose(r.proposer)}${
    r.guidanceSha ? ` · guidance \`${shortSha(r.guidanceSha)}\`` : ""
  } · managed by autoresearch-bot: edit the text above freely, but keep the hidden record below.</sub>`;

  const assemble = (diffBlock: string, log: string) =>
    [
      ...parts,
      ...(diffBlock ? ["### What changed", diffBlock] : []),
      ...review,
      ...baseline,
      ...status,
      ...result,
      ...(log ? [log] : []),
      footer,
      record,
    ].join("\n\n") + "\n";

  const full = assemble(diff ? codeBlock(diff, "diff") : "", logTail);
  if (bytes(full) <= BODY_LIMIT) return full;

  // Too long: drop the log tail first (it is in the runner's logs), then cut the shown diff.
  const withoutLog = assemble(diff ? codeBlock(diff, "diff") : "", "");
  if (bytes(withoutLog) <= BODY_LIMIT) return withoutLog;
  const room = BODY_LIMIT - bytes(assemble("", "")) - 400;
  const cut = boundedDiff(diff, Math.max(0, room));
  const note = `*The diff is cut here: ${cut.omitted} more lines are not shown; see the Files changed tab.*`;
  return assemble(`${cut.text ? codeBlock(cut.text, "diff") + "\n\n" : ""}${note}`, "");
}

// ------------------------------------------------------------------ branches

const BRANCH_PREFIX = "autoresearch/";

/** A branch-name-safe slug of a title: lowercase a-z0-9 and '-', at most 40 characters, never empty. */
export function slugify(title: string): string {
  const slug = title
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/g, "");
  return slug || "experiment";
}

/** `autoresearch/<n>-<slug>`: the experiment number makes the name unique and sortable. */
export function branchName(n: number, title: string): string {
  return `${BRANCH_PREFIX}${n}-${slugify(title)}`;
}

/** The experiment number and slug of an experiment branch (`refs/heads/` is accepted), else null. */
export function parseBranchName(ref: string): { n: number; slug: string } | null {
  const m = /^(?:refs\/heads\/)?autoresearch\/([1-9]\d*)-([a-z0-9-]+)$/.exec(ref);
  if (!m) return null;
  return { n: Number(m[1]), slug: m[2]! };
}

// ------------------------------------------------------------------ labels

/** Every experiment PR carries this label; the ledger is `is:pr label:autoresearch`. */
export const LABEL = "autoresearch";

export const STATE_LABELS = {
  running: "autoresearch:running",
  review: "autoresearch:review",
  keep: "autoresearch:keep",
  discard: "autoresearch:discard",
  crash: "autoresearch:crash",
  baseline: "autoresearch:baseline",
  superseded: "autoresearch:superseded",
} as const;

export interface LabelSpec {
  name: string;
  color: string;
  description: string;
}

/** The labels the bot creates on a repository (for GitHubPort.ensureLabels). */
export const LABELS: LabelSpec[] = [
  { name: LABEL, color: "5319e7", description: "An autoresearch experiment" },
  { name: STATE_LABELS.running, color: "fbca04", description: "Experiment queued or training" },
  { name: STATE_LABELS.review, color: "d93f0b", description: "Improved, but touches what decides its score: a person must keep it" },
  { name: STATE_LABELS.keep, color: "0e8a16", description: "Improved val_bpb: kept" },
  { name: STATE_LABELS.discard, color: "c5def5", description: "No improvement beyond noise: discarded" },
  { name: STATE_LABELS.crash, color: "b60205", description: "The training run failed" },
  { name: STATE_LABELS.baseline, color: "1d76db", description: "Measurement of the default branch as it is" },
  { name: STATE_LABELS.superseded, color: "d4c5f9", description: "The default branch moved; not measured against it" },
];

/** The full label set an experiment PR should carry in its current state. */
export function labelsFor(r: Pick<ExperimentRecord, "kind" | "state">): string[] {
  const labels: string[] = [LABEL];
  if (r.kind === "baseline") labels.push(STATE_LABELS.baseline);
  switch (r.state) {
    case "queued":
    case "running":
      labels.push(STATE_LABELS.running);
      break;
    case "review":
      labels.push(STATE_LABELS.review);
      break;
    case "kept":
      labels.push(STATE_LABELS.keep);
      break;
    case "discarded":
      labels.push(STATE_LABELS.discard);
      break;
    case "crashed":
      labels.push(STATE_LABELS.crash);
      break;
    case "superseded":
      labels.push(STATE_LABELS.superseded);
      break;
  }
  return labels;
}

// ------------------------------------------------------------------ results.tsv

export const RESULTS_TSV_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription";

const TSV_STATUS: Partial<Record<ExperimentState, "keep" | "discard" | "crash">> = {
  kept: "keep",
  discarded: "discard",
  crashed: "crash",
};

/**
 * autoresearch's results.tsv: one row per finished experiment (baselines included, as keep),
 * ordered by experiment number; queued, running and superseded experiments are left out.
 * val_bpb is the mean of the successful runs; memory_gb is peak_vram_mb / 1024 of the last
 * successful run; crashes log 0.000000 and 0.0, as autoresearch does.
 */
export function toResultsTsv(records: ExperimentRecord[]): string {
  const rows = [...records]
    .sort((a, b) => a.n - b.n)
    .flatMap((r) => {
      const status = TSV_STATUS[r.state];
      // Never measured (closed by a person before its run finished): nothing to report.
      if (!status || r.measurements.length === 0) return [];
      const measured = r.measurements.filter((m) => isMeasured(m.result));
      const last = r.measurements[r.measurements.length - 1];
      const commit = shortSha(measured[measured.length - 1]?.sha ?? last?.sha ?? r.headSha);
      const mean = meanValBpb(r.measurements);
      let bpb = "0.000000";
      let mem = "0.0";
      if (status !== "crash" && mean !== null) {
        bpb = mean.toFixed(6);
        const vram = measured[measured.length - 1]?.result.summary.peak_vram_mb;
        const mb = typeof vram === "number" ? vram : Number(vram);
        if (Number.isFinite(mb)) mem = (mb / 1024).toFixed(1);
      }
      // The figure is a mean: the description says of how many runs.
      const runs = measured.length > 1 ? ` (mean of ${measured.length} runs)` : "";
      const description = r.title.replace(/[\t\r\n]+/g, " ").trim() + runs;
      return [`${commit}\t${bpb}\t${mem}\t${status}\t${description}`];
    });
  return [RESULTS_TSV_HEADER, ...rows].join("\n") + "\n";
}

// ------------------------------------------------------------------ tree hash

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

// The PR body: the human part (hypothesis, diff, baseline, result and decision in plain words)
// and, at the end, the hidden record. Everything quoted from a run or an LLM is escaped, and the
// body never grows past what GitHub accepts.
import { Buffer } from "node:buffer";
import { editsAsDiff } from "../edits.js";
import { codeBlock, escapeText as prose, md, table } from "../markdown.js";
import { fmtBpb, isMeasured, meanValBpb } from "../policy.js";
import { flagsTable } from "../review.js";
import { encodeRecord } from "./record.js";
import type { ExperimentRecord, Measurement, TrainerResult } from "../types.js";

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
    return [String(i + 1), md(`\`${shortSha(m.sha)}\``), `${r.status}${stage}`, bpb, r.reason || ""];
  });
  return table(["run", "commit", "status", "val_bpb", "note"], rows);
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

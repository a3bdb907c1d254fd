// The morning report: one issue per night (labelled `autoresearch:report`, titled with the
// night's date) that the bot rewrites as the night's experiments end. Pure rendering from the
// ledger's records, so that a pass after a restart writes exactly the same text.

import { bestBpb, treeBpb } from "./history.js";
import { estimateNoise } from "./noise.js";
import { fmtBpb, meanValBpb, describeFailure, isInfrastructureFailure, isMeasured } from "./policy.js";
import { toResultsTsv } from "./ledger/index.js";
import { codeBlock, escapeCell, md, table } from "./markdown.js";
import { encodeHidden } from "./hidden.js";
import type { ExperimentRecord } from "./types.js";

export const REPORT_LABEL = "autoresearch:report";

export function reportTitle(night: string): string {
  return `autoresearch morning report: night of ${night}`;
}

export interface ReportInput {
  /** The night's key (YYYY-MM-DD, see config.nightKey). */
  night: string;
  /** The experiments started that night. */
  records: ExperimentRecord[];
  /** Every record started before the night (for the best val_bpb before it). */
  before: ExperimentRecord[];
  /** Experiment number → PR number. */
  pulls: Map<number, number>;
  /** The night is over (its window ended or its max_experiments finished). */
  complete: boolean;
  /**
   * The installation's GitHub writes during the night, as far as this process saw them (it
   * counts from its start): all of them, the busiest hour, the hourly limit, and how often new
   * experiments were held back to stay within it.
   */
  writes?: { total: number; peakHour: number; perHour: number; heldBack: number; countedSince: string | null };
}

const FINISHED = new Set(["kept", "discarded", "crashed", "superseded"]);

function runsOf(r: ExperimentRecord): number {
  return r.measurements.filter((m) => isMeasured(m.result)).length;
}

function cut(s: string, max: number): string {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function crashReason(r: ExperimentRecord): string {
  const failed = [...r.measurements].reverse().find((m) => !isMeasured(m.result));
  if (failed) return describeFailure(failed.result);
  return r.decision?.reasons.join(" ") || "no reason recorded";
}

/** The noise the decisions used: σ of one run, pooled over the ledger on the latest hardware. */
function noiseLine(records: ExperimentRecord[]): string {
  const runs = records.flatMap((r) => r.measurements.filter((m) => isMeasured(m.result)));
  const latest = runs.reduce<(typeof runs)[number] | null>((a, m) => (!a || m.finishedAt > a.finishedAt ? m : a), null);
  const hardware = latest?.result.hardware ?? null;
  const noise = estimateNoise(records, hardware);
  if (!noise) return "**Noise:** not known yet (fewer than 2 repeated runs of one tree); decisions used the floor or min_delta.";
  return `**Noise:** σ ${fmtBpb(noise.sigma)} per run, from ${noise.df} degrees of freedom${hardware ? ` on ${escapeCell(hardware)}` : ""}.`;
}

/** How the night's training runs were spent: first runs, confirmations of promising changes, repeated baselines. */
function runsLine(records: ExperimentRecord[]): string {
  let first = 0;
  let confirmations = 0;
  let baselineRepeats = 0;
  let seconds = 0;
  let extraSeconds = 0;
  for (const r of records) {
    const trainings = r.measurements.filter((m) => !isInfrastructureFailure(m.result));
    trainings.forEach((m, i) => {
      const s = Number(m.result.summary.duration_seconds);
      const t = Number.isFinite(s) ? s : 0;
      seconds += t;
      if (i === 0) first++;
      else {
        extraSeconds += t;
        if (r.kind === "baseline") baselineRepeats++;
        else confirmations++;
      }
    });
  }
  const total = first + confirmations + baselineRepeats;
  if (total === 0) return "";
  const share = seconds > 0 ? `${((100 * extraSeconds) / seconds).toFixed(0)}% of the night's training time` : `${((100 * (total - first)) / total).toFixed(0)}% of its runs`;
  return `**Runs:** ${total} training runs: ${first} first runs, ${confirmations} to confirm promising changes, ${baselineRepeats} repeated baseline runs (extra runs: ${share}).`;
}

/** How much of GitHub's write budget the night used, and whether it held experiments back. */
function writesLine(w: NonNullable<ReportInput["writes"]>): string {
  const since = w.countedSince ? ` (counted since the bot started at ${w.countedSince})` : "";
  const held =
    w.heldBack > 0
      ? ` New experiments were held back ${w.heldBack} time(s) to stay within it.`
      : " It never held an experiment back.";
  return (
    `**GitHub write budget:** ${w.total} writes by this installation during the night${since}; ` +
    `the busiest hour used ${w.peakHour} of the ${w.perHour} allowed (${Math.round((100 * w.peakHour) / w.perHour)}%).${held}`
  );
}

/** A Mermaid xychart (GitHub renders it) of val_bpb per measured experiment, in order. */
export function bpbChart(records: ExperimentRecord[]): string {
  const points = [...records]
    .sort((a, b) => a.n - b.n)
    .flatMap((r) => {
      const v = meanValBpb(r.measurements);
      return v === null || r.state === "crashed" ? [] : [{ n: r.n, v }];
    });
  if (points.length === 0) return "";
  const lo = Math.min(...points.map((p) => p.v));
  const hi = Math.max(...points.map((p) => p.v));
  const pad = Math.max((hi - lo) * 0.1, 0.001);
  return [
    "```mermaid",
    "xychart-beta",
    '    title "val_bpb per experiment (lower is better)"',
    `    x-axis [${points.map((p) => `"#${p.n}"`).join(", ")}]`,
    `    y-axis "val_bpb" ${(lo - pad).toFixed(4)} --> ${(hi + pad).toFixed(4)}`,
    `    line [${points.map((p) => p.v.toFixed(6)).join(", ")}]`,
    "```",
  ].join("\n");
}

export function renderReport(input: ReportInput): string {
  const rs = [...input.records].sort((a, b) => a.n - b.n);
  const ref = (r: ExperimentRecord) => {
    const num = input.pulls.get(r.n);
    return num ? `#${num}` : `experiment ${r.n}`;
  };
  const finished = rs.filter((r) => FINISHED.has(r.state));
  const kept = rs.filter((r) => r.state === "kept" && r.kind === "experiment");
  const discarded = rs.filter((r) => r.state === "discarded" || r.state === "superseded");
  const crashed = rs.filter((r) => r.state === "crashed");
  const inFlight = rs.filter((r) => r.state === "queued" || r.state === "running");
  const baselines = rs.filter((r) => r.kind === "baseline");
  const before = bestBpb(input.before);
  const after = bestBpb([...input.before, ...rs]);

  const out: string[] = [];
  out.push(
    input.complete
      ? `The night of ${input.night} is over. This report is final.`
      : `The night of ${input.night} is in progress: this report is updated as experiments end.`,
  );
  out.push(
    "",
    table(
      ["experiments", "kept", "discarded", "crashed", "baselines", "in flight"],
      [[finished, kept, discarded, crashed, baselines, inFlight].map((x) => String(x.length))],
    ),
  );
  const fmt = (x: number | null) => (x === null ? "none" : fmtBpb(x));
  const delta = (r: ExperimentRecord) => (r.decision?.delta == null ? "—" : fmtBpb(r.decision.delta));
  // The PR link is the bot's markdown; the title is an LLM's words, escaped.
  const pr = (r: ExperimentRecord) => md(`${ref(r)} ${escapeCell(cut(r.title, 80))}`);
  // Where the night started: the best kept figure before it, else its first baseline (the mean of its runs).
  const firstBaseline = baselines.find((r) => r.state === "kept" && meanValBpb(r.measurements) !== null);
  const start = before ?? (firstBaseline ? treeBpb([...input.before, ...rs], firstBaseline.treeHash) : null);
  let best = `**Best val_bpb:** ${fmt(start)} → ${fmt(after)}`;
  if (start !== null && after !== null && after < start) best += ` (${fmtBpb(after - start)})`;
  if (before === null && start !== null) best += "; the night started from its first baseline";
  best += ". Every figure is the mean of an experiment's runs.";
  out.push("", best);
  out.push("", noiseLine([...input.before, ...rs]), runsLine(rs));
  if (input.writes) out.push(writesLine(input.writes));

  const chart = bpbChart(rs);
  if (chart) out.push("", "### val_bpb over the night", "", chart);

  out.push("", "### Kept");
  if (kept.length === 0) out.push("", "Nothing was kept tonight.");
  else {
    const rows = kept.map((r) => [pr(r), `${fmt(meanValBpb(r.measurements))} (${runsOf(r)})`, delta(r), cut(r.hypothesis, 300)]);
    out.push("", table(["PR", "val_bpb (runs)", "delta", "hypothesis"], rows));
  }

  const held = rs.filter((r) => r.state === "review");
  if (held.length > 0) {
    out.push("", "### Held for review", "", "Better by the numbers, but the change touches what decides its own score: `/autoresearch keep` merges it.", "");
    const touches = (r: ExperimentRecord) => cut([...new Set((r.flags ?? []).map((f) => f.what))].join("; "), 200);
    out.push(table(["PR", "val_bpb", "delta", "touches"], held.map((r) => [pr(r), fmt(meanValBpb(r.measurements)), delta(r), touches(r)])));
  }

  if (crashed.length > 0) {
    out.push("", "### Crashes", "", table(["PR", "reason"], crashed.map((r) => [pr(r), cut(crashReason(r), 300)])));
  }

  if (discarded.length > 0) {
    const rows = discarded.map((r) => [pr(r), fmt(meanValBpb(r.measurements)), delta(r)]);
    out.push("", "<details><summary>Discarded</summary>", "", table(["PR", "val_bpb", "delta"], rows), "", "</details>");
  }

  out.push("", "<details><summary>results.tsv</summary>", "", codeBlock(toResultsTsv(rs).trimEnd(), "tsv"), "", "</details>");
  out.push("", encodeHidden("report", { night: input.night }));
  return out.join("\n") + "\n";
}

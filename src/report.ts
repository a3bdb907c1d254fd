// The morning report: one issue per night (labelled `autoresearch:report`, titled with the
// night's date) that the bot rewrites as the night's experiments end. Pure rendering from the
// ledger's records, so that a pass after a restart writes exactly the same text.

import { bestBpb } from "./history.js";
import { fmtBpb, meanValBpb, describeFailure, isMeasured } from "./policy.js";
import { toResultsTsv } from "./ledger.js";
import { codeBlock, escapeCell as escape } from "./markdown.js";
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
}

const FINISHED = new Set(["kept", "discarded", "crashed", "superseded"]);

function cut(s: string, max: number): string {
  const flat = s.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function crashReason(r: ExperimentRecord): string {
  const failed = [...r.measurements].reverse().find((m) => !isMeasured(m.result));
  if (failed) return describeFailure(failed.result);
  return r.decision?.reasons.join(" ") || "no reason recorded";
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
    "| experiments | kept | discarded | crashed | baselines | in flight |",
    "| --- | --- | --- | --- | --- | --- |",
    `| ${finished.length} | ${kept.length} | ${discarded.length} | ${crashed.length} | ${baselines.length} | ${inFlight.length} |`,
  );
  const fmt = (x: number | null) => (x === null ? "none" : fmtBpb(x));
  let best = `**Best val_bpb:** ${fmt(before)} → ${fmt(after)}`;
  if (before !== null && after !== null && after < before) best += ` (${fmtBpb(after - before)})`;
  out.push("", best);

  const chart = bpbChart(rs);
  if (chart) out.push("", "### val_bpb over the night", "", chart);

  out.push("", "### Kept");
  if (kept.length === 0) out.push("", "Nothing was kept tonight.");
  else {
    out.push("", "| PR | val_bpb | delta | hypothesis |", "| --- | --- | --- | --- |");
    for (const r of kept) {
      const v = meanValBpb(r.measurements);
      const d = r.decision?.delta;
      out.push(`| ${ref(r)} ${escape(cut(r.title, 80))} | ${fmt(v)} | ${d == null ? "—" : fmtBpb(d)} | ${escape(cut(r.hypothesis, 300))} |`);
    }
  }

  const held = rs.filter((r) => r.state === "review");
  if (held.length > 0) {
    out.push("", "### Held for review", "", "Better by the numbers, but the change touches what decides its own score: `/autoresearch keep` merges it.", "");
    out.push("| PR | val_bpb | delta | touches |", "| --- | --- | --- | --- |");
    for (const r of held) {
      const d = r.decision?.delta;
      const touches = [...new Set((r.flags ?? []).map((f) => f.what))].join("; ");
      out.push(`| ${ref(r)} ${escape(cut(r.title, 80))} | ${fmt(meanValBpb(r.measurements))} | ${d == null ? "—" : fmtBpb(d)} | ${escape(cut(touches, 200))} |`);
    }
  }

  if (crashed.length > 0) {
    out.push("", "### Crashes", "", "| PR | reason |", "| --- | --- |");
    for (const r of crashed) out.push(`| ${ref(r)} ${escape(cut(r.title, 80))} | ${escape(cut(crashReason(r), 300))} |`);
  }

  if (discarded.length > 0) {
    out.push("", "<details><summary>Discarded</summary>", "", "| PR | val_bpb | delta |", "| --- | --- | --- |");
    for (const r of discarded) {
      const d = r.decision?.delta;
      out.push(`| ${ref(r)} ${escape(cut(r.title, 80))} | ${fmt(meanValBpb(r.measurements))} | ${d == null ? "—" : fmtBpb(d)} |`);
    }
    out.push("", "</details>");
  }

  out.push("", "<details><summary>results.tsv</summary>", "", codeBlock(toResultsTsv(rs).trimEnd(), "tsv"), "", "</details>");
  out.push("", `<!-- autoresearch:report ${JSON.stringify({ night: input.night })} -->`);
  return out.join("\n") + "\n";
}

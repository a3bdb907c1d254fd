// What the check runs say: `val_bpb` on every experiment commit (in progress while it
// trains, then the result, the delta and the decision), and `autoresearch` on the default
// branch head when the loop cannot run (invalid config, missing program.md).
import { CHECK_ACTIONS } from "./commands.js";
import type { Config } from "./config.js";
import { classifyOutcome } from "./policy.js";
import type { CheckRunSpec, ExperimentRecord, Measurement } from "./types.js";

export const VAL_BPB_CHECK = "val_bpb";
export const CONFIG_CHECK = "autoresearch";

const fmt = (x: number) => x.toFixed(6);
const signed = (x: number) => (x > 0 ? "+" : x < 0 ? "−" : "±") + Math.abs(x).toFixed(6);

export function configCheck(headSha: string, title: string, problems: string[]): CheckRunSpec {
  return {
    name: CONFIG_CHECK,
    headSha,
    externalId: "config",
    status: "completed",
    conclusion: "failure",
    output: {
      title,
      summary:
        "The experiment loop for this repository is waiting until this is fixed on the default branch:\n\n" +
        problems.map((p) => `- ${p}`).join("\n"),
    },
  };
}

function figuresTable(m: Measurement): string {
  const rows = Object.entries(m.result.summary).map(([k, v]) => `| ${k} | ${v} |`);
  if (!rows.length) return "";
  return ["| figure | value |", "| --- | --- |", ...rows].join("\n");
}

function logTail(m: Measurement): string {
  const tail = m.result.log_tail.replace(/```/g, "ʼʼʼ").slice(-3000);
  return tail ? `<details><summary>log tail</summary>\n\n\`\`\`\n${tail}\n\`\`\`\n</details>` : "";
}

export function checkRunFor(
  r: ExperimentRecord,
  runId: string,
  config: Config,
  opts: { rerun?: string[] } = {},
): CheckRunSpec {
  const base = { name: VAL_BPB_CHECK, headSha: r.headSha, externalId: runId };
  const against =
    r.baselineBpb === null ? "" : `Baseline to beat: val_bpb ${fmt(r.baselineBpb)} (keep needs an improvement over ${config.minDelta}).`;
  const m = r.measurements.find((x) => x.runId === runId);

  if (opts.rerun) {
    return {
      ...base,
      status: "completed",
      conclusion: "neutral",
      output: { title: "Measuring again", summary: opts.rerun.join(" "), text: m ? logTail(m) : undefined },
    };
  }
  if (!r.decision || !m) {
    return {
      ...base,
      status: "in_progress",
      output: {
        title: `Training for ${config.budgetSeconds} s`,
        summary: `${r.kind === "baseline" ? "Baseline run" : r.hypothesis}\n\n${against}`.trim(),
      },
    };
  }

  const res = m.result;
  const d = r.decision;
  let conclusion: CheckRunSpec["conclusion"];
  let title: string;
  if (d.verdict === "crash") {
    conclusion = res.status === "timeout" ? "timed_out" : "failure";
    title = `${res.status}: ${res.reason}`.slice(0, 200);
  } else {
    const bpb = res.val_bpb ?? NaN;
    title = d.delta === null ? `val_bpb ${fmt(bpb)}` : `val_bpb ${fmt(bpb)} (${signed(d.delta)} vs baseline)`;
    if (d.verdict === "keep") conclusion = "success";
    else conclusion = d.delta !== null && classifyOutcome(d.delta, config.minDelta) === "within noise" ? "neutral" : "failure";
  }
  const text = [figuresTable(m), d.verdict === "crash" ? `**Reason:** ${res.reason}` : "", d.verdict === "crash" ? logTail(m) : ""]
    .filter(Boolean)
    .join("\n\n");
  return {
    ...base,
    status: "completed",
    conclusion,
    output: { title, summary: `**Decision: ${d.verdict}.** ${d.reasons.join(" ")}\n\n${against}`.trim(), text: text || undefined },
    // Buttons for people with write access: measure a discarded or crashed change again, or adopt it.
    ...(r.kind === "experiment" && d.verdict !== "keep" ? { actions: [{ ...CHECK_ACTIONS.rerun }, { ...CHECK_ACTIONS.keep }] } : {}),
  };
}

// What the check runs say: `val_bpb` on every experiment commit (in progress while it
// trains, then the result, the delta and the decision), and `autoresearch` on the default
// branch head when the loop cannot run (invalid config, missing program.md).
import { CHECK_ACTIONS } from "./commands.js";
import type { Config } from "./config.js";
import { codeBlock, defuse, escapeText, oneLine } from "./markdown.js";
import { measurementsTable, summaryTable } from "./ledger/index.js";
import { classifyOutcome, describeThreshold, isMeasured, meanValBpb } from "./policy.js";
import { flagsTable } from "./review.js";
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
        // A problem may quote the config, a proposer's error or an LLM reply: escaped.
        problems.map((p) => `- ${escapeText(p)}`).join("\n"),
    },
  };
}

// Everything a run printed (summary fields, reasons, the log) and everything an LLM wrote (the
// hypothesis) is quoted through the markdown helpers: it can never become HTML, a hidden marker,
// a command or a mention in the bot's name.

function logTail(m: Measurement): string {
  const tail = m.result.log_tail.slice(-3000);
  return tail ? `<details><summary>log tail</summary>\n\n${codeBlock(tail)}\n</details>` : "";
}

/** What the harness noted about the run (data prepared again, no sandbox), as a list. */
function harnessNotes(m: Measurement | undefined): string {
  const notes = m?.result.notes ?? [];
  return notes.length ? notes.map((n) => `- ${escapeText(n)}`).join("\n") : "";
}

/** Said on a check run when a val_bpb it shows is the number train.py printed about itself. */
export const SELF_REPORTED =
  "**Self-reported:** val_bpb is the number the experiment's own code printed; this project has no outside " +
  "evaluation (`evaluation` in `.github/autoresearch.yml`), so a change to how it measures itself is caught only by review.";

/** Said instead when the config asks for the outside evaluation but the runs did not get one. */
export const NOT_EVALUATED_OUTSIDE =
  "**Self-reported:** val_bpb is the number the experiment's own code printed: the config asks for the outside " +
  "evaluation, but these runs did not get it (they were measured before it was configured, or by a runner without it).";

/** How the val_bpb of these runs was measured, for the check run: empty when nothing was measured. */
export function evaluationNote(measurements: Measurement[], config: Config): string {
  const measured = measurements.filter((m) => isMeasured(m.result));
  if (measured.length === 0) return "";
  if (measured.every((m) => m.result.evaluation === "outside")) {
    return "Measured outside the experiment: the default branch's scorer computed val_bpb from the weights the run saved, and a causality probe checked the model.";
  }
  return config.evaluation ? NOT_EVALUATED_OUTSIDE : SELF_REPORTED;
}

/** Said on every val_bpb check run when the runner does not sandbox experiments. */
export const UNSANDBOXED =
  "**Not sandboxed:** this bot runs experiments with `AUTORESEARCH_SANDBOX=off`, so this code ran with the runner's " +
  "access to files, network and credentials.";

export function checkRunFor(
  r: ExperimentRecord,
  runId: string,
  config: Config,
  opts: { rerun?: string[]; unsandboxed?: boolean } = {},
): CheckRunSpec {
  const spec = checkRunBody(r, runId, config, opts);
  if (opts.unsandboxed) spec.output = { ...spec.output, summary: `${UNSANDBOXED}\n\n${spec.output.summary}` };
  return spec;
}

function checkRunBody(r: ExperimentRecord, runId: string, config: Config, opts: { rerun?: string[] }): CheckRunSpec {
  const base = { name: VAL_BPB_CHECK, headSha: r.headSha, externalId: runId };
  const threshold = r.decision?.threshold;
  const bar = threshold
    ? describeThreshold(threshold, config.noise.falseKeepRate)
    : typeof config.minDelta === "number"
      ? `${config.minDelta} (min_delta)`
      : `a threshold from the measured noise (false-keep rate ${Number((config.noise.falseKeepRate * 100).toPrecision(3))}%)`;
  const baseRuns = threshold && threshold.baselineRuns > 1 ? ` (mean of ${threshold.baselineRuns} runs)` : "";
  const against = r.baselineBpb === null ? "" : `Baseline to beat: val_bpb ${fmt(r.baselineBpb)}${baseRuns}; keep needs an improvement beyond ${bar}.`;
  const m = r.measurements.find((x) => x.runId === runId);

  if (opts.rerun) {
    return {
      ...base,
      status: "completed",
      conclusion: "neutral",
      output: { title: "Measuring again", summary: escapeText(opts.rerun.join(" ")), text: m ? logTail(m) || undefined : undefined },
    };
  }
  if (!r.decision || !m) {
    return {
      ...base,
      status: "in_progress",
      output: {
        title: `Training for ${config.budgetSeconds} s`,
        summary: `${r.kind === "baseline" ? "Baseline run" : escapeText(r.hypothesis)}\n\n${against}`.trim(),
      },
    };
  }

  const res = m.result;
  const d = r.decision;
  let conclusion: CheckRunSpec["conclusion"];
  let title: string;
  if (d.verdict === "crash") {
    conclusion = res.status === "timeout" ? "timed_out" : "failure";
    // A title is plain text: defused, one line, bounded.
    title = defuse(oneLine(`${res.status}: ${res.reason}`, 200));
  } else {
    // The figure the decision used: the mean of the runs, with their number (never one run's).
    const bpb = meanValBpb(r.measurements) ?? NaN;
    const runs = r.measurements.filter((x) => isMeasured(x.result)).length;
    const ofRuns = runs > 1 ? `, mean of ${runs} runs` : "";
    title = d.delta === null ? `val_bpb ${fmt(bpb)}${ofRuns ? ` (${ofRuns.slice(2)})` : ""}` : `val_bpb ${fmt(bpb)} (${signed(d.delta)} vs baseline${ofRuns})`;
    if (r.state === "review") {
      // Better by the numbers, but the change touches what decides its own score: a person decides.
      conclusion = "action_required";
      title = `${title}: held for review`;
    } else if (d.verdict === "keep") conclusion = "success";
    else {
      const bound = threshold?.keep ?? (typeof config.minDelta === "number" ? config.minDelta : config.noise.floor);
      conclusion = d.delta !== null && classifyOutcome(d.delta, bound) === "within noise" ? "neutral" : "failure";
    }
  }
  const text = [
    r.state === "review" ? `**Held for review.** ${flagsTable(r.flags ?? [])}` : "",
    r.measurements.length > 1 ? `Every run:\n\n${measurementsTable(r.measurements)}` : "",
    summaryTable(m.result),
    harnessNotes(m),
    d.verdict === "crash" ? `**Reason:** ${escapeText(res.reason)}` : "",
    d.verdict === "crash" ? logTail(m) : "",
  ]
    .filter(Boolean)
    .join("\n\n");
  return {
    ...base,
    status: "completed",
    conclusion,
    output: {
      title,
      summary: [`**Decision: ${d.verdict}.** ${escapeText(d.reasons.join(" "))}`, against, evaluationNote(r.measurements, config)].filter(Boolean).join("\n\n"),
      text: text || undefined,
    },
    // Buttons for people with write access: measure a discarded, crashed or held change again, or adopt it.
    ...(r.kind === "experiment" && (d.verdict !== "keep" || r.state === "review")
      ? { actions: [{ ...CHECK_ACTIONS.rerun }, { ...CHECK_ACTIONS.keep }] }
      : {}),
  };
}

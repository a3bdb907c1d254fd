// Questions about an experiment (`/autoresearch ask`, or a mention of the app): answered from its
// record, diff and log by an LLM when one is configured, else with the record in plain words.
import OpenAI from "openai";
import { editsAsDiff } from "../edits.js";
import { codeBlock, escapeText } from "../markdown.js";
import { describeFailure, fmtBpb, isMeasured, meanValBpb } from "../policy.js";
import type { Logger } from "../log.js";
import type { ExperimentPull, ExperimentRecord } from "../types.js";

/** Answers a question (system prompt, user prompt) about an experiment. */
export type Answerer = (system: string, user: string) => Promise<string>;

/** Longest answer to a question that is posted. */
const MAX_ANSWER_CHARS = 4_000;

/** What the bot knows about an experiment, in plain words (the grounding of an answer). */
export function explainRecord(r: ExperimentRecord): string {
  const lines = [`Experiment ${r.n}: ${r.title}`, `Hypothesis: ${r.hypothesis}`, `State: ${r.state}.`];
  if (r.baselineBpb !== null) lines.push(`Baseline to beat: val_bpb ${fmtBpb(r.baselineBpb)}.`);
  r.measurements.forEach((m, i) => {
    const res = m.result;
    lines.push(
      isMeasured(res)
        ? `Run ${i + 1} (${m.sha.slice(0, 7)}): val_bpb ${fmtBpb(res.val_bpb)}.`
        : `Run ${i + 1} (${m.sha.slice(0, 7)}) failed: ${describeFailure(res)}`,
    );
  });
  const mean = meanValBpb(r.measurements);
  if (mean !== null && r.measurements.length > 1) lines.push(`Mean val_bpb: ${fmtBpb(mean)}.`);
  if (r.decision) lines.push(`Decision: ${r.decision.verdict}. ${r.decision.reasons.join(" ")}`);
  return lines.join("\n");
}

/** The reply to `question` by `by` about experiment `r`: the answerer's words (escaped), or the record in plain words. */
export async function answer(
  ask: Answerer | null | undefined,
  log: Pick<Logger, "warn"> | undefined,
  pull: ExperimentPull,
  r: ExperimentRecord,
  question: string,
  by: string,
): Promise<string> {
  const facts = explainRecord(r);
  const last = r.measurements[r.measurements.length - 1];
  const tail = last && !isMeasured(last.result) ? last.result.log_tail.slice(-2_000) : "";
  if (ask) {
    const system =
      "You answer questions about one autoresearch experiment (a change to train.py trained for a fixed time and measured by val_bpb, lower is better). " +
      "Answer briefly and only from the record, diff and log given; say so when they do not tell.";
    const user = [
      `Question from @${by}: ${question || "(no question text)"}`,
      `## Record\n${facts}`,
      `## Diff\n${editsAsDiff(r.edits) || "(no change: a baseline)"}`,
      tail ? `## End of the log of the failed run\n${tail}` : "",
    ]
      .filter(Boolean)
      .join("\n\n");
    try {
      const text = (await ask(system, user)).trim();
      // The model read a run's log and an LLM's diff: its words are quoted, not trusted.
      if (text) return `${escapeText(text.slice(0, MAX_ANSWER_CHARS))}\n\n<sub>Answered from experiment ${r.n}'s record, diff and result.</sub>`;
    } catch (err) {
      log?.warn(`#${pull.number}: the answer could not be generated: ${(err as Error).message}`);
    }
  }
  const why = r.state === "crashed" && tail ? `\n\nEnd of the log:\n\n${codeBlock(tail)}` : "";
  return `What the record of this experiment says:\n\n${facts
    .split("\n")
    .map((l) => `- ${escapeText(l)}`)
    .join("\n")}${why}`;
}

/** An answerer backed by an OpenAI-compatible endpoint (null without an API key). */
export function openaiAnswerer(env: Record<string, string | undefined>, model = "gpt-4o-mini"): Answerer | null {
  if (!env.OPENAI_API_KEY) return null;
  const client = new OpenAI({ apiKey: env.OPENAI_API_KEY, baseURL: env.OPENAI_BASE_URL || undefined, timeout: 60_000, maxRetries: 1 });
  return async (system: string, user: string): Promise<string> => {
    const res = await client.chat.completions.create({
      model,
      temperature: 0.2,
      messages: [
        { role: "system", content: system },
        { role: "user", content: user },
      ],
    });
    return res.choices[0]?.message?.content ?? "";
  };
}

// The trainer harness's result (trainer/harness.py): one flat JSON object per run, written to
// --result and printed as the last stdout line. This module validates it and maps it onto the
// bot's TrainerResult: the known keys become fields, every other scalar key (the summary block
// train.py printed, plus harness extras such as duration_seconds) lands in `summary`.

import { readFile } from "node:fs/promises";
import { z } from "zod";
import type { TrainerResult } from "../types.js";

export const RUN_STATUSES = ["ok", "crash", "oom", "timeout", "nan", "over_budget"] as const;
export const RUN_STAGES = ["fetch", "prepare", "train", "eval"] as const;
/** How val_bpb was measured; `pending` and `probe` are the Kubernetes runner's intermediate steps. */
export const EVALUATIONS = ["outside", "self_reported", "pending", "probe"] as const;

/** Keys with their own TrainerResult field (never copied into `summary`). */
const FIELD_KEYS = new Set(["status", "infrastructure", "val_bpb", "exit_code", "reason", "log_tail", "stage", "run_id", "commit", "sandbox", "notes", "hardware", "evaluation"]);

const finiteNumber = z.number().refine(Number.isFinite, { message: "must be a finite number" });

/** The harness's flat result object. Unknown keys are allowed (they are the summary). */
export const harnessResultSchema = z
  .looseObject({
    status: z.enum(RUN_STATUSES),
    val_bpb: finiteNumber.nullable().optional(),
    exit_code: z.number().int().nullable().optional(),
    reason: z.string().nullable().optional(),
    log_tail: z.string().nullable().optional(),
    stage: z.enum(RUN_STAGES).nullable().optional(),
    run_id: z.string().nullable().optional(),
    commit: z.string().nullable().optional(),
    duration_seconds: z.number().nullable().optional(),
    harness_version: z.union([z.string(), z.number()]).nullable().optional(),
    sandbox: z.string().max(40).nullable().optional(),
    notes: z.array(z.string().max(2000)).max(20).nullable().optional(),
    hardware: z.string().max(300).nullable().optional(),
    evaluation: z.enum(EVALUATIONS).nullable().optional(),
    infrastructure: z.boolean().nullable().optional(),
  })
  .refine((r) => r.status !== "ok" || typeof r.val_bpb === "number" || r.evaluation === "pending" || r.evaluation === "probe", {
    message: 'status "ok" requires a numeric val_bpb',
    path: ["val_bpb"],
  });

export type HarnessResult = z.infer<typeof harnessResultSchema>;

/** Thrown when a harness result cannot be understood. */
export class HarnessResultError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HarnessResultError";
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length > 0 ? issue.path.map(String).join(".") : "(root)";
      return `${where}: ${issue.message}`;
    })
    .join("; ");
}

/** Validate the harness's JSON and map it onto a TrainerResult. Throws HarnessResultError. */
export function parseHarnessResult(json: unknown): TrainerResult {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    const kind = json === null ? "null" : Array.isArray(json) ? "an array" : typeof json;
    throw new HarnessResultError(`invalid harness result: expected a JSON object, got ${kind}`);
  }
  const parsed = harnessResultSchema.safeParse(json);
  if (!parsed.success) {
    throw new HarnessResultError(`invalid harness result: ${describeIssues(parsed.error)}`);
  }
  const r = parsed.data;
  const summary: Record<string, number | string> = {};
  for (const [key, value] of Object.entries(r)) {
    if (FIELD_KEYS.has(key)) continue;
    if (typeof value === "string" || (typeof value === "number" && Number.isFinite(value))) {
      summary[key] = value;
    }
  }
  const result: TrainerResult = {
    status: r.status,
    val_bpb: r.val_bpb ?? null,
    exit_code: r.exit_code ?? null,
    reason: r.reason ?? "",
    log_tail: r.log_tail ?? "",
    summary,
  };
  if (r.stage) result.stage = r.stage;
  if (r.commit != null) result.commit = r.commit;
  if (r.run_id != null) result.runId = r.run_id;
  if (r.sandbox) result.sandbox = r.sandbox;
  if (r.notes?.length) result.notes = r.notes;
  if (r.hardware) result.hardware = r.hardware;
  if (r.evaluation) result.evaluation = r.evaluation;
  if (r.infrastructure) result.infrastructure = true;
  return result;
}

/** Parse the text of a result file (or the harness's last stdout line). */
export function parseHarnessResultText(text: string, source = "harness result"): TrainerResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    throw new HarnessResultError(`${source} is not valid JSON (${detail}): ${JSON.stringify(shown)}`);
  }
  try {
    return parseHarnessResult(json);
  } catch (err) {
    if (err instanceof HarnessResultError) {
      throw new HarnessResultError(`${source}: ${err.message}`);
    }
    throw err;
  }
}

/** Read and parse a result file written by the harness (--result FILE). */
export async function readResultFile(path: string): Promise<TrainerResult> {
  const text = await readFile(path, "utf8");
  return parseHarnessResultText(text, path);
}

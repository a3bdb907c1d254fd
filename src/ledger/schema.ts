// The experiment record's schema: what a record read back from a PR body must look like before
// the loop trusts it, and the compile-time proof that it matches the shared types.
import { z } from "zod";
import { EVALUATIONS } from "../runner/result.js";
import type { ExperimentRecord, TrainerResult } from "../types.js";

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
  infrastructure: z.boolean().optional(),
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

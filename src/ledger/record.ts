// The record in a PR body: the ExperimentRecord as a hidden block (src/hidden.ts), at the end of
// the body. Decoding is tolerant: a body edited by a person, or some other bot's PR, yields null
// rather than an exception.
import { decodeHidden, encodeHidden } from "../hidden.js";
import { experimentRecordSchema } from "./schema.js";
import type { ExperimentRecord, TrainerResult } from "../types.js";

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

export function encodeRecord(r: ExperimentRecord): string {
  return encodeHidden("record", jsonSafe(r));
}

/** The record in a PR body, or null when there is none or it is not a valid record (never throws). */
export function decodeRecord(body: string | null | undefined): ExperimentRecord | null {
  const h = decodeHidden("record", body, experimentRecordSchema);
  return h.found && h.ok ? (h.value as ExperimentRecord) : null;
}

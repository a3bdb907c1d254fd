// autoresearch's results.tsv, from the ledger.
import { isMeasured, meanValBpb } from "../policy.js";
import { shortSha } from "./body.js";
import type { ExperimentRecord, ExperimentState } from "../types.js";

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

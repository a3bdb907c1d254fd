// Noise, measured rather than guessed. The same train.py run twice (with different seeds) gives
// two different val_bpb: that spread is the noise a change must beat. The ledger holds every
// repeated measurement of an identical tree: the runs of each baseline, the confirmation runs of
// experiments, a merged experiment's runs and the later baselines of the same tree. Pooled per
// hardware, they estimate σ; the keep threshold follows from σ, the number of runs on each side
// and the false-keep rate the repository asks for.
import { isMeasured } from "./policy.js";
import type { ExperimentRecord } from "./types.js";

export interface NoiseEstimate {
  /** The pooled standard deviation of one run's val_bpb. */
  sigma: number;
  /** Degrees of freedom behind it: Σ (runs of a tree − 1). */
  df: number;
  /** The hardware it was measured on (null: runs that did not say). */
  hardware: string | null;
}

/** σ is not used until it rests on at least this many degrees of freedom. */
export const MIN_NOISE_DF = 2;

/** The val_bpb of every successful run of each tree, on one hardware. */
function groups(records: ExperimentRecord[], hardware: string | null): number[][] {
  const byTree = new Map<string, number[]>();
  for (const r of records) {
    for (const m of r.measurements) {
      if (!isMeasured(m.result) || (m.result.hardware ?? null) !== hardware) continue;
      // The tree a run measured: a record's treeHash (its measurements are all of that tree).
      const values = byTree.get(r.treeHash) ?? [];
      values.push(m.result.val_bpb);
      byTree.set(r.treeHash, values);
    }
  }
  return [...byTree.values()].filter((v) => v.length >= 2);
}

/** Pooled σ of repeated runs of identical trees on `hardware`, or null below MIN_NOISE_DF. */
export function estimateNoise(records: ExperimentRecord[], hardware: string | null = null): NoiseEstimate | null {
  let ss = 0;
  let df = 0;
  for (const values of groups(records, hardware)) {
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    for (const v of values) ss += (v - mean) ** 2;
    df += values.length - 1;
  }
  if (df < MIN_NOISE_DF) return null;
  return { sigma: Math.sqrt(ss / df), df, hardware };
}

/**
 * The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9):
 * the z with P(Z ≤ z) = p.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must be in (0, 1), got ${p}`);
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const low = 0.02425;
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - low) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) /
    (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

// The demo's runner, watched: when each run starts and ends, for the morning summary's slot idle
// time and for knowing whether a run was training when the model double was asked.
import type { RunnerPort } from "../src/types.js";

/**
 * How long a slot sat idle between runs: from a run's end to the start of the run that took
 * its slot (seconds; null when no run followed another).
 */
export interface SlotIdle {
  medianSeconds: number | null;
  p90Seconds: number | null;
  gaps: number;
}

export interface SlotWatch<R extends RunnerPort> {
  /** The runner to give the bot: the watched one, with every call passed through. */
  runner: R;
  idle(slots: number): SlotIdle;
  /** Whether a run was training at time t (ms since the epoch). */
  training(t: number): boolean;
}

/**
 * The runner, watched: when each run starts (its first submit) and ends (the runner reports it).
 * A run that ends frees a slot for the next run to start: the k-th end is followed by the
 * (k + slots)-th start, and the time between is the slot's idle time.
 */
export function watchSlots<R extends RunnerPort>(runner: R): SlotWatch<R> {
  const starts = new Map<string, number>();
  const ends: number[] = [];
  const endOf = new Map<string, number>();
  const submit: RunnerPort["submit"] = async (spec) => {
    if (!starts.has(spec.runId)) starts.set(spec.runId, Date.now());
    return runner.submit(spec);
  };
  const onFinished: RunnerPort["onFinished"] = (cb) =>
    runner.onFinished((runId, repo) => {
      if (!endOf.has(runId)) {
        ends.push(Date.now());
        endOf.set(runId, Date.now());
      }
      cb(runId, repo);
    });
  // Everything else is the runner's own, called on the runner itself.
  const watched = new Proxy(runner, {
    get(target, prop) {
      if (prop === "submit") return submit;
      if (prop === "onFinished") return onFinished;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    runner: watched,
    training: (t) => [...starts].some(([runId, start]) => start <= t && t < (endOf.get(runId) ?? Infinity)),
    idle(slots) {
      const gaps = slotGaps([...starts.values()], ends, slots).map((ms) => ms / 1000);
      const at = (q: number) => {
        const x = quantile(gaps, q);
        return x === null ? null : +x.toFixed(2);
      };
      return { medianSeconds: at(0.5), p90Seconds: at(0.9), gaps: gaps.length };
    },
  };
}

/**
 * Slot idle times (ms, ascending) from runs' start and end times: the k-th run to end frees the
 * slot that the (k + slots)-th run to start takes, and the time between is that slot's idle time.
 */
export function slotGaps(starts: number[], ends: number[], slots: number): number[] {
  const s = [...starts].sort((a, b) => a - b);
  const e = [...ends].sort((a, b) => a - b);
  const gaps: number[] = [];
  for (let k = 0; k < e.length && k + slots < s.length; k++) gaps.push(Math.max(0, s[k + slots]! - e[k]!));
  return gaps.sort((a, b) => a - b);
}

/** The q-quantile of `xs` (the value at the floor of q × n in ascending order), or null when there is none. */
export function quantile(xs: number[], q: number): number | null {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : null;
}

// What a repository's passes remember between them, in this process only: a restart starts
// afresh and loses nothing that matters (the ledger is on GitHub). The controller keeps one per
// repository; without a controller (tests call reconcile directly) it is kept per GitHub port.
import type { GitHubPort, Proposal } from "../types.js";

export interface Housekeeping {
  /** When the morning report was last written (ms since the epoch). */
  reportAt: number;
  /** Experiments decided since then. */
  reportDue: Set<number>;
  /** The night is over and its final report was written by this process (until a night starts). */
  nightReported: boolean;
  /** Experiment branches known to be deleted. */
  pruned: Set<string>;
  /**
   * A start of this process could not be opened, and may have left its branch pushed without a
   * pull request: the next pass lists the branches to delete it. (One left by a process that
   * died goes with the next listing for finished experiments.)
   */
  strayCheck: boolean;
  /** Branches under autoresearch/ (name@sha) found not to be a start's leftover. */
  notStrays: Set<string>;
  /** Proposals asked for while runs train, so that no slot waits for the LLM (oldest first). */
  prepared: Prepared[];
  /** That the config's queue_ahead is not used by this runner was logged (once a process). */
  saidQueueUnused?: boolean;
}

/** A proposal asked for ahead of time, for the head and guidance it was made from. */
export interface Prepared {
  headSha: string;
  guidanceSha: string;
  proposer: string;
  /** The reviewer notes it was given (other notes now: it is asked again). */
  notes: string;
  proposal: Promise<Proposal>;
  /** How many times an experiment made of it could not be opened (a GitHub error): kept for the next pass. */
  failedOpens: number;
}

export function newHousekeeping(): Housekeeping {
  return { reportAt: 0, reportDue: new Set(), pruned: new Set(), strayCheck: false, notStrays: new Set(), prepared: [], nightReported: false };
}

const byPort = new WeakMap<GitHubPort, Housekeeping>();

export function houseFor(gh: GitHubPort, given?: Housekeeping): Housekeeping {
  if (given) return given;
  let h = byPort.get(gh);
  if (!h) byPort.set(gh, (h = newHousekeeping()));
  return h;
}

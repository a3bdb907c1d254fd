// Following the demo's night the way a person would: by reading the pull requests and the check
// runs the bot writes on the GitHub twin, a line each time an experiment moves on, until every
// experiment is decided, the bot says it cannot run the night, or the night runs out of time.
import { CONFIG_CHECK } from "../src/checks.js";
import { decodeRecord } from "../src/ledger/index.js";
import { isMeasured, meanValBpb } from "../src/policy.js";
import type { ExperimentRecord } from "../src/types.js";
import type { CheckRunRecord, GitHubTwin, PullSnapshot } from "../twins/github/index.js";
import { DemoError } from "./demo-args.js";
import type { ProposalReplay } from "./demo-replay.js";
import { OWNER, REPO } from "./demo-world.js";

/** An experiment's pull request and the record the bot keeps in its body. */
export interface LedgerEntry {
  pull: PullSnapshot;
  r: ExperimentRecord;
}

/** The experiments of the demo's repository, in order, as their pull requests say. */
export function readLedger(twin: GitHubTwin): LedgerEntry[] {
  return twin
    .pulls(OWNER, REPO)
    .flatMap((p) => {
      const r = decodeRecord(p.body);
      return r ? [{ pull: p, r }] : [];
    })
    .sort((a, b) => a.r.n - b.r.n);
}

// Decided: closed, or held open for a person's review (nobody reviews during the demo).
const decided = ({ pull, r }: LedgerEntry) => pull.state === "closed" || r.state === "review";

const training = ({ pull, r }: LedgerEntry) => pull.state === "open" && (r.state === "queued" || r.state === "running");

/** The check-run text the bot escaped (src/markdown.ts), back as plain text for a terminal. */
function plain(text: string): string {
  return text.replace(/\u2060/g, "").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function problemsOf(run: CheckRunRecord): string[] {
  return (run.output.summary ?? "")
    .split("\n")
    .filter((l) => l.startsWith("- "))
    .map((l) => plain(l.slice(2)));
}

/**
 * What the bot said when it cannot run the repository's loop at all (an invalid
 * `.github/autoresearch.yml`, a runner that cannot run it, a missing program or editable file):
 * the failed `autoresearch` check run it puts on the default branch. Null when there is none.
 */
export function botConfigError(runs: CheckRunRecord[]): string | null {
  const failed = runs.find((r) => r.name === CONFIG_CHECK && r.externalId === "config" && r.conclusion === "failure");
  if (!failed) return null;
  return [plain(failed.output.title ?? "the configuration is invalid"), ...problemsOf(failed).map((p) => `  ${p}`)].join("\n");
}

export interface FollowOptions {
  /** The night is over once this many experiments and the baseline are decided. */
  experiments: number;
  budgetSeconds: number;
  /** A maintainer comments `/autoresearch rerun` on the first experiment that trains. */
  steer: boolean;
  /** Aborting ends the night (Ctrl-C). */
  signal?: AbortSignal;
  /** The --proposals replay, whose list running out ends the night early. */
  replay: ProposalReplay | null;
  print: (line: string) => void;
}

/** How the night ended. */
export interface NightEnd {
  /**
   * With its --proposals list used up, every open experiment decided: a night shorter than
   * max_experiments, whose morning report never says it is over.
   */
  endedByList: boolean;
}

/** Follows the night until it is over; throws a DemoError when it cannot be. */
export function followNight(twin: GitHubTwin, o: FollowOptions): Promise<NightEnd> {
  return new NightFollower(twin, o).follow();
}

/** What a person following the night has seen so far, and what they say when something moves. */
class NightFollower {
  /** Each experiment's last line said, by number: a line is said again only when it changes. */
  private readonly seen = new Map<number, string>();
  private proposerProblem = "";
  private lastTick = Date.now();
  private steered: boolean;
  private readonly deadline: number;

  constructor(
    private readonly twin: GitHubTwin,
    private readonly o: FollowOptions,
  ) {
    this.steered = !o.steer;
    this.deadline = Date.now() + (o.experiments + 1) * (o.budgetSeconds * 3 + 300) * 1000;
  }

  async follow(): Promise<NightEnd> {
    for (;;) {
      if (this.o.signal?.aborted) throw new DemoError("interrupted: the runs were stopped", 130);
      this.readCheckRuns();
      const all = readLedger(this.twin);
      await this.sayWhatMoved(all);
      if (all.filter(decided).length >= this.o.experiments + 1) return { endedByList: false };
      if (this.o.replay?.exhausted && all.every(decided)) return { endedByList: true };
      if (Date.now() > this.deadline) {
        throw new DemoError("the demo did not finish in time; run it with LOG_LEVEL=info to see what the bot is doing", 1);
      }
      this.sayStillTraining(all);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** The bot's own word on the default branch: it cannot run the night, or cannot propose. */
  private readCheckRuns(): void {
    const checks = this.twin.checkRuns(OWNER, REPO, { name: CONFIG_CHECK });
    // The bot cannot run this repository's loop: waiting for the deadline would change nothing.
    const configError = botConfigError(checks);
    if (configError) throw new DemoError(`the bot cannot run the night: ${configError}`, 1);
    const failedProposal = checks.filter((c) => c.externalId === "proposer").map((c) => problemsOf(c).join(" ")).pop() ?? "";
    if (failedProposal !== this.proposerProblem) {
      this.proposerProblem = failedProposal;
      // The end of a replayed list is said once, by the replay.
      if (failedProposal && !this.o.replay?.exhausted) this.o.print(`no experiment could be proposed: ${failedProposal} (the bot tries again)`);
    }
  }

  /** A line for each experiment that moved on; the maintainer steers the first that trains. */
  private async sayWhatMoved(all: LedgerEntry[]): Promise<void> {
    for (const entry of all) {
      const { pull, r } = entry;
      const line = describe(r, pull.number, pull.state, pull.merged);
      if (this.seen.get(r.n) === line) continue;
      this.seen.set(r.n, line);
      this.o.print(line);
      if (!this.steered && r.kind === "experiment" && training(entry)) {
        // A command in a comment: measure the first experiment twice, decide on both runs.
        this.steered = true;
        await this.twin.postComment(OWNER, REPO, pull.number, "maria", "/autoresearch rerun");
        this.o.print(`@maria commented on #${pull.number}: /autoresearch rerun`);
      }
    }
  }

  /** Every 15 s without news, which experiment is still training. */
  private sayStillTraining(all: LedgerEntry[]): void {
    if (Date.now() - this.lastTick <= 15_000) return;
    this.lastTick = Date.now();
    const running = all.find(training);
    if (running) this.o.print(`  … #${running.pull.number} still training`);
  }
}

/** An experiment's progress line: training, or its figure and what was decided. */
function describe(r: ExperimentRecord, pr: number, state: string, merged: boolean): string {
  const what = r.kind === "baseline" ? "baseline" : r.title;
  const m = r.measurements[r.measurements.length - 1];
  // The record is not rewritten when a run starts (a write GitHub counts): queued means queued
  // or training.
  if (state === "open" && (r.state === "queued" || r.state === "running")) {
    return r.kind === "baseline"
      ? `#${pr} baseline: training the unchanged code${r.attempt > 1 ? ` (run ${r.attempt})` : ""}`
      : `#${pr} ${what}: training${r.attempt > 1 ? ` (run ${r.attempt})` : ""} — ${r.hypothesis}`;
  }
  const bpb = meanValBpb(r.measurements);
  const runs = r.measurements.filter((x) => isMeasured(x.result)).length;
  const figure = bpb == null ? m?.result.reason ?? "" : `val_bpb ${bpb.toFixed(4)}${runs > 1 ? ` (mean of ${runs} runs)` : ""}`;
  const delta = r.decision?.delta == null ? "" : ` (${r.decision.delta > 0 ? "+" : ""}${r.decision.delta.toFixed(4)})`;
  if (merged) return `#${pr} ${what}: ${figure}${delta} → kept, merged`;
  if (state === "closed") return `#${pr} ${what}: ${figure}${delta} → ${r.kind === "baseline" ? "baseline measured" : r.state}`;
  if (r.state === "review") return `#${pr} ${what}: ${figure}${delta} → held for review (${(r.flags ?? []).map((f) => f.rule).join(", ")})`;
  return `#${pr} ${what}: ${figure}${delta} → ${r.state}`;
}

// The loop over the in-memory fakes, as the controller drives it: (read comments, then) reconcile,
// pass after pass until nothing changes on GitHub or in the runner. The specification tests of
// trust, review and noise build their nights on it.
import { reconcile, type ReconcileReport } from "../../src/reconcile/index.js";
import { steer } from "../../src/steering/index.js";
import { BOT_LOGIN, FakeGitHub, FakeRunner, measured, ScriptedProposer, type ScriptStep } from "./fakes.js";

export interface LoopWorldOptions {
  files: Record<string, string>;
  /** Read comments (commands, notes) before each pass, as the controller does; default true. */
  steering?: boolean;
  now?: () => Date;
  log?: { info(m: string): void; warn(m: string): void; error(m: string): void };
  runnerSlots?: number;
  /** How often the morning report may be rewritten (default: the bot's, 10 minutes). */
  reportEveryMs?: number;
}

export function loopWorld(o: LoopWorldOptions) {
  const gh = new FakeGitHub({ files: o.files });
  const runner = new FakeRunner(o.runnerSlots ?? 1);
  const proposer = new ScriptedProposer();
  const now = o.now ?? (() => new Date("2026-03-01T23:00:00Z"));
  let first = true;
  const pass = async (): Promise<ReconcileReport> => {
    if (o.steering !== false) {
      await steer({ gh, since: "2000-01-01T00:00:00Z", appSlug: "autoresearch-bot", botLogin: BOT_LOGIN, answer: null, log: o.log });
    }
    const report = await reconcile({
      gh, runner, proposerFor: () => proposer, env: {}, now, log: o.log, firstPass: first,
      ...(o.reportEveryMs !== undefined ? { reportEveryMs: o.reportEveryMs } : {}),
    });
    first = false;
    if (report.errors.length) throw new Error(report.errors.join("; "));
    return report;
  };
  const settle = async (): Promise<ReconcileReport> => {
    for (let i = 0; i < 20; i++) {
      const before = [gh.revision, runner.revision];
      const r = await pass();
      if (!r.again && gh.revision === before[0] && runner.revision === before[1]) return r;
    }
    throw new Error("did not settle");
  };
  const runOf = (n: number) => runner.runOf(gh.pullOf(n).number);
  /** The baseline measured at `baseline`, then `step` proposed as experiment 2 and training: its PR number. */
  const startExperiment = async (step: ScriptStep, baseline = 1.0): Promise<number> => {
    proposer.queue(step);
    await settle();
    runner.finish(runOf(1), measured(baseline));
    await settle();
    return gh.pullOf(2).number;
  };
  return { gh, runner, proposer, pass, settle, runOf, startExperiment };
}

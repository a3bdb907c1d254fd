// Outside evaluation as the loop sees it: which trusted tree a run is scored with, and what the
// check run says about how its val_bpb was measured.
import { describe, expect, it } from "vitest";
import { NOT_EVALUATED_OUTSIDE, SELF_REPORTED } from "../src/checks.js";
import { CONFIG_PATH } from "../src/config.js";
import { change, measured, singleRun } from "./support/fakes.js";
import { loopWorld } from "./support/world.js";

const EVALUATION = "evaluation:\n  score_command: python3 prepare.py score\n  serve_command: python3 train.py serve\n";

function world(config: string) {
  return loopWorld({ files: { "program.md": "# Tonight\n", "train.py": "LR = 0.04\n", "prepare.py": "", [CONFIG_PATH]: singleRun(config) }, steering: false });
}

describe("outside evaluation in the loop", () => {
  it("scores a baseline with its own commit and an experiment with the default-branch commit it was built on", async () => {
    const w = world(EVALUATION);
    const pr = await w.startExperiment(change("LR = 0.04", "LR = 0.05", "LR up"));
    const [baseline, experiment] = w.runner.submitted;
    const base = w.gh.record(w.gh.pullOf(1).number);
    const exp = w.gh.record(pr);
    expect(baseline!.evaluation).toEqual({
      scoreCmd: "python3 prepare.py score",
      serveCmd: "python3 train.py serve",
      sha: base.headSha,
      url: baseline!.source.url,
    });
    expect(exp.baseSha).not.toBe(exp.headSha);
    expect(experiment!.sha).toBe(exp.headSha);
    expect(experiment!.evaluation).toMatchObject({ sha: exp.baseSha });
    expect(experiment!.evaluation!.url).toBe(experiment!.source.url.replace(exp.headSha, exp.baseSha));
  });

  it("without it, runs carry no evaluation and every decided check run says val_bpb was self-reported", async () => {
    const w = world("");
    const pr = await w.startExperiment(change("LR = 0.04", "LR = 0.05", "LR up"));
    expect(w.runner.submitted.every((s) => s.evaluation === undefined)).toBe(true);
    w.runner.finish(w.runOf(2), measured(0.9));
    await w.settle();
    const check = w.gh.checkRunsOn(w.gh.record(pr).headSha, "val_bpb").at(-1)!;
    expect(check.output.summary).toContain(SELF_REPORTED);
  });

  it("a check run says the figure was measured outside only when every run it uses was", async () => {
    const w = world(EVALUATION);
    const pr = await w.startExperiment(change("LR = 0.04", "LR = 0.05", "LR up"), 1.0);
    w.runner.finish(w.runOf(2), { ...measured(0.9), evaluation: "outside" });
    await w.settle();
    const check = w.gh.checkRunsOn(w.gh.record(pr).headSha, "val_bpb").at(-1)!;
    expect(check.output.summary).toMatch(/Measured outside the experiment: the default branch's scorer/);
    expect(check.output.summary).not.toContain(SELF_REPORTED);
  });

  it("a runner that did not run the outside evaluation the config asks for is named as the reason the figure is self-reported", async () => {
    const w = world(EVALUATION);
    const pr = await w.startExperiment(change("LR = 0.04", "LR = 0.05", "LR up"), 1.0);
    w.runner.finish(w.runOf(2), { ...measured(0.9), evaluation: "self_reported" });
    await w.settle();
    const check = w.gh.checkRunsOn(w.gh.record(pr).headSha, "val_bpb").at(-1)!;
    expect(check.output.summary).toContain(NOT_EVALUATED_OUTSIDE);
  });
});

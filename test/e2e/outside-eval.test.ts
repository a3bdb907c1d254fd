// Outside evaluation through a whole night, with each runner: the real local runner, harness and
// sandbox, or the Kubernetes runner's Jobs through the Kubernetes twin; the GitHub twin and the
// OpenAI twin. The project (test/fixtures/outside-eval) prints a val_bpb of
// 0.01 about itself; the bot must report what the default branch's scorer measures instead, and
// an experiment whose model reads ahead must not be measured at all.
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { singleRun } from "../support/fakes.js";
import { OWNER, REPO, ROOT, proposal, settled, startNight, waitFor, type Night } from "../support/night.js";

let night: Night | null = null;
afterEach(async () => {
  await night?.close();
  night = null;
});

it.each(["local", "kubernetes"] as const)("%s runner: val_bpb is scored outside the experiment, and a model that reads ahead is caught by the causality probe", async (runner) => {
  const fixture = path.join(ROOT, "test/fixtures/outside-eval");
  const files: Record<string, string> = { "program.md": "# Research program\n\nLower val_bpb by editing train.py only.\n" };
  for (const name of await readdir(fixture)) files[name] = await readFile(path.join(fixture, name), "utf8");
  files[".github/autoresearch.yml"] = singleRun(
    [
      `runner: ${runner}`,
      "prepare_command: python3 prepare.py",
      "budget_seconds: 10",
      "evaluation:",
      "  score_command: python3 score.py",
      "  serve_command: python3 train.py serve",
      "night:",
      "  max_experiments: 2",
    ].join("\n"),
  );
  night = await startNight({ files, runner });
  const n = night;
  // An experiment that looks like a one-line change to how the model is served.
  n.openai.script(proposal("Serve with the faster head", "Same model, answered faster.", "    import model\n", '    import model\n    model.MODE = "peek"\n'));
  await n.install();

  const baseline = await waitFor("the baseline", () => settled(n, 1), 90_000);
  const measurement = baseline.record.measurements[0]!.result;
  expect(measurement).toMatchObject({ status: "ok", evaluation: "outside" });
  expect(measurement.val_bpb).toBeCloseTo(1.588642, 5); // the trusted scorer's figure, not train.py's 0.01
  expect(measurement.summary.reported_val_bpb).toBe(0.01);
  const baselineCheck = n.twin.checkRuns(OWNER, REPO, { headSha: baseline.record.headSha, name: "val_bpb" }).at(-1)!;
  expect(baselineCheck.output.summary).toMatch(/Measured outside the experiment/);
  expect(baselineCheck.output.summary).not.toMatch(/Self-reported/);

  const attack = await waitFor("the experiment", () => settled(n, 2), 90_000);
  expect(attack.record.state).toBe("crashed");
  expect(attack.record.measurements[0]!.result).toMatchObject({ status: "crash", stage: "eval", val_bpb: null });
  expect(attack.record.measurements[0]!.result.reason).toMatch(/causality probe failed/);
}, 180_000);

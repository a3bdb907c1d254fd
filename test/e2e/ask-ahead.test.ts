// No slot waits for the model: with a model that takes seconds to answer, the bot asks for the
// next proposal while the runs train (proposer.ask_ahead), from the head it trains on. The
// demo's night on a tiny project, as `npm run demo -- --repo DIR --model-latency S` runs it:
// the GitHub twin, the bot's HTTP server, the OpenAI-compatible proposer against a stand-in
// model that answers after the latency, the local runner with the harness in the sandbox.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { parseDemoArgs } from "../../scripts/demo-args.js";
import { runNight } from "../../scripts/demo-night.js";
import { planDemo } from "../../scripts/demo-project.js";
import { committedProject } from "../support/project.js";

// Each run trains for about 4 s; the model takes 2 s to answer.
const TRAIN = [
  "import time",
  "OFFSET = 0.5",
  "WIDTH = 64",
  "time.sleep(4)",
  'print("---")',
  'print(f"val_bpb:          {1.0 + OFFSET + WIDTH / 1000:.6f}")',
  'print("training_seconds: 4.0")',
  "",
].join("\n");

// Nothing is kept (min_delta 1): the head never moves, so no proposal asked ahead goes stale.
const CONFIG = ["prepare_command: null", "prepare_files: []", "min_delta: 1", "noise:", "  baseline_runs: 1", "  max_runs: 1", ""].join("\n");

let tmp: string;
let project: string;

beforeEach(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "ask-ahead-"));
  project = path.join(tmp, "project");
  committedProject(project, { "program.md": "# Research program\n\nLower val_bpb.\n", ".github/autoresearch.yml": CONFIG, "train.py": TRAIN });
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

it("asks the model for the next proposal while the runs train, so that a freed slot does not wait for it", async () => {
  const env = { ...process.env, OPENAI_API_KEY: undefined, OPENAI_BASE_URL: undefined, LOG_LEVEL: undefined };
  const lines: string[] = [];
  const plan = planDemo(parseDemoArgs(["--repo", project, "--model-latency", "2", "--experiments", "3", "--budget", "10"]), env);
  expect(plan.config.proposer).toMatchObject({ kind: "openai", model: "model-double", askAhead: true });
  const summary = await runNight(plan, { env, print: (l) => lines.push(l), cacheDir: path.join(tmp, "cache") });

  const experiments = summary.experiments.filter((r) => r.kind === "experiment");
  expect(experiments).toHaveLength(3);
  expect(experiments.map((r) => r.decision)).toEqual(["discard", "discard", "discard"]);
  // Every proposal was asked for while a run trained (the first while the baseline did), and
  // each was used.
  expect(summary.model).toEqual({ asked: 3, askedWhileTraining: 3 });
  // Runs followed runs; the demo prints the slots' idle time between them (measured, not asserted).
  expect(summary.slotIdle.gaps).toBeGreaterThanOrEqual(3);
  expect(lines.join("\n")).toMatch(/slot idle between runs: median [\d.]+ s, 90th percentile [\d.]+ s \(\d+ gaps; the model answers after 2 s and is asked ahead\)/);
}, 180_000);

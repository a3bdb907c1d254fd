// The demo's night (scripts/demo-night.ts) on a project folder of its own, as `npm run demo --
// --repo DIR --proposals FILE` runs it: a git repository with program.md, a config and a
// train.py whose val_bpb follows from a constant, so each replayed proposal has a known
// outcome. Everything real but GitHub and the LLM: the twins, the bot's HTTP server, the local
// runner with the harness in the sandbox.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { DemoError, parseDemoArgs } from "../../scripts/demo-args.js";
import { runNight, type Summary } from "../../scripts/demo-night.js";
import { planDemo } from "../../scripts/demo-project.js";
import { committedProject, gitIn } from "../support/project.js";

const TRAIN = [
  "# val_bpb follows from OFFSET: the demo's night knows each proposal's outcome in advance.",
  "OFFSET = 0.5",
  'print("---")',
  'print(f"val_bpb:          {1.0 + OFFSET:.6f}")',
  'print("training_seconds: 0.1")',
  "",
].join("\n");

const CONFIG = [
  "# a project that prepares no data and trains in an instant",
  "prepare_command: null",
  "prepare_files: []",
  "noise:",
  "  baseline_runs: 1",
  "  max_runs: 1",
  "",
].join("\n");

const PROPOSALS = [
  {
    title: "Lower OFFSET to 0.2",
    hypothesis: "A smaller offset lowers val_bpb by 0.3.",
    edits: [{ path: "train.py", search: "OFFSET = 0.5", replace: "OFFSET = 0.2" }],
  },
  {
    title: "Raise OFFSET to 0.9",
    hypothesis: "A larger offset might help.",
    edits: [{ path: "train.py", search: "OFFSET = 0.2", replace: "OFFSET = 0.9" }],
  },
  {
    // Better by the numbers, but it changes the line that prints the score: held for review.
    title: "Print a smaller val_bpb",
    hypothesis: "Reporting 0.1 less lowers val_bpb.",
    edits: [{ path: "train.py", search: "{1.0 + OFFSET:.6f}", replace: "{0.9 + OFFSET:.6f}" }],
  },
];

let tmp: string;
let project: string;
const git = (...a: string[]) => gitIn(project, ...a);

beforeEach(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "demo-night-"));
  project = path.join(tmp, "project");
  committedProject(project, { "program.md": "# Research program\n\nLower val_bpb by changing OFFSET in train.py.\n", ".github/autoresearch.yml": CONFIG, "train.py": TRAIN });
  writeFileSync(path.join(tmp, "proposals.json"), JSON.stringify(PROPOSALS, null, 2));
});

afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

// The bot gets no real endpoint and no stray log level from the machine running the tests.
const env = (): Record<string, string | undefined> => ({ ...process.env, OPENAI_API_KEY: undefined, OPENAI_BASE_URL: undefined, LOG_LEVEL: undefined });

function plan(...extra: string[]) {
  const argv = ["--repo", project, "--proposals", path.join(tmp, "proposals.json"), "--budget", "10", "--min-delta", "0.05", ...extra];
  return planDemo(parseDemoArgs(argv), env());
}

it("replays the proposals on the project's repository, decides each, and ends when the list is used up", async () => {
  const head = git("rev-parse", "HEAD");
  const lines: string[] = [];
  const json = path.join(tmp, "night.json");
  // Four experiments allowed, three proposals given: the night ends with the list.
  const summary = await runNight(plan("--json", json), {
    print: (l) => lines.push(l),
    env: env(),
    cacheDir: path.join(tmp, "cache"),
    // No /autoresearch rerun: every decision rests on one run.
    steer: false,
  });
  const written = JSON.parse(readFileSync(json, "utf8")) as Summary;
  expect(written).toEqual(summary);

  const baseline = written.experiments.filter((r) => r.kind === "baseline");
  expect(baseline).toHaveLength(1);
  expect(baseline[0]).toMatchObject({ valBpb: 1.5, runs: 1, merged: false, flags: [] });
  const rows = written.experiments.filter((r) => r.kind === "experiment");
  expect(rows.map(({ title, decision, merged, runs, flags, state }) => ({ title, decision, merged, runs, flags, state }))).toEqual([
    { title: "Lower OFFSET to 0.2", decision: "keep", merged: true, runs: 1, flags: [], state: "kept" },
    { title: "Raise OFFSET to 0.9", decision: "discard", merged: false, runs: 1, flags: [], state: "discarded" },
    { title: "Print a smaller val_bpb", decision: "keep", merged: false, runs: 1, flags: ["evaluation"], state: "review" },
  ]);
  expect(rows.map((r) => r.valBpb)).toEqual([1.2, 1.9, 1.1]);
  expect(rows.map((r) => r.delta)).toEqual([-0.3, 0.7, -0.1].map((d) => expect.closeTo(d, 9)));
  expect(written).toMatchObject({ bestBefore: 1.5, bestAfter: 1.2, kept: 1, discarded: 1, crashed: 0, budgetSeconds: 10 });

  const out = lines.join("\n");
  expect(out).toMatch(/on .*project \(git HEAD [0-9a-f]+, 3 files\)/);
  expect(out).toContain("proposer openai, replaying 3 proposals");
  expect(out).toMatch(/proposals of .*proposals\.json are used up/);
  expect(out).not.toContain("bot error");
  // The project folder is only read.
  expect(git("rev-parse", "HEAD")).toBe(head);
  expect(git("status", "--porcelain")).toBe("");
  expect(readFileSync(path.join(project, "train.py"), "utf8")).toBe(TRAIN);
});

it("ends at once with the bot's error when the repository's config becomes invalid", async () => {
  const err = await runNight(plan(), {
    print: () => undefined,
    env: env(),
    cacheDir: path.join(tmp, "cache"),
    steer: false,
    // A person pushes a broken config to the default branch while the night runs.
    onStarted: async ({ twin, owner, repo }) => {
      await twin.pushCommit(owner, repo, "main", { ".github/autoresearch.yml": `${CONFIG}slots: 0\n` }, "Break the config");
    },
  }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(DemoError);
  const e = err as DemoError;
  expect(e.exitCode).toBe(1);
  // The bot's error, not the demo's deadline (minutes away), which ends with "did not finish in time".
  expect(e.message).toBe("the bot cannot run the night: .github/autoresearch.yml is invalid\n  slots: must be at least 1");
});

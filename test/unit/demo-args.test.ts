// The demo's input checks (scripts/demo-args.ts, scripts/demo-project.ts): every flag, the
// proposals file, the config the demo's repository gets and the project folder, all refused
// with exit status 2 and a reason before anything starts.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inWindow, nightKey, parseConfig } from "../../src/config.js";
import {
  checkProposalPaths,
  DEMO_DEFAULTS,
  DemoError,
  demoConfig,
  errorText,
  parseDemoArgs,
  parseProposals,
  REPLAY_MODEL,
  USAGE,
  type DemoArgs,
} from "../../scripts/demo-args.js";
import { botConfigError } from "../../scripts/demo-follow.js";
import { MAX_PROJECT_FILES, planDemo, readProject } from "../../scripts/demo-project.js";
import type { CheckRunRecord } from "../../twins/github/index.js";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), "demo-args-"));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** The DemoError a call throws (fails the test when it throws nothing or something else). */
function demoError(fn: () => unknown): DemoError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DemoError) return err;
    throw err;
  }
  throw new Error("expected a DemoError");
}

const args = (over: Partial<DemoArgs> = {}): DemoArgs => ({ ...parseDemoArgs([]), ...over });

describe("parseDemoArgs", () => {
  it("refuses an unknown flag with exit status 2 and the usage", () => {
    const err = demoError(() => parseDemoArgs(["--foo"]));
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe("Unknown option '--foo'");
    expect(errorText(err)).toBe(`Unknown option '--foo'\n\n${USAGE}`);
  });

  it("names the flag meant by a snake_case spelling", () => {
    const err = demoError(() => parseDemoArgs(["--min_delta", "0.1"]));
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe("Unknown option '--min_delta' (did you mean --min-delta?)");
    expect(errorText(err)).toContain(USAGE);
  });

  it("refuses a missing value and a stray argument", () => {
    expect(demoError(() => parseDemoArgs(["--budget"])).message).toMatch(/--budget.*argument missing/);
    expect(demoError(() => parseDemoArgs(["night"])).message).toMatch(/Unexpected argument 'night'/);
    expect(demoError(() => parseDemoArgs(["--keep=yes"])).exitCode).toBe(2);
  });

  it("refuses values outside the config's limits, with the config's reasons", () => {
    const cases: [string[], string][] = [
      [["--min-delta", "2"], "--min-delta 2: must be at most 1"],
      // A value starting with a dash goes after "=" (node:util parseArgs).
      [["--min-delta=-0.1"], "--min-delta -0.1: must be at least 0"],
      [["--min-delta", "often"], '--min-delta often: must be "auto" or a number from 0 to 1'],
      [["--slots", "65"], "--slots 65: must be at most 64"],
      [["--slots", "0"], "--slots 0: must be at least 1"],
      [["--budget", "86401"], "--budget 86401: must be at most 86400"],
      [["--budget", "5"], "--budget 5: must be at least 10"],
      [["--budget", "20.5"], "--budget 20.5: must be an integer, got number 20.5"],
      [["--budget", "abc"], '--budget abc: must be a number, got the text "abc"'],
      [["--runner", "k8s"], '--runner k8s: must be one of local, kubernetes, got the text "k8s"'],
      [["--experiments", "0"], "--experiments 0: must be a whole number of at least 1"],
      [["--experiments", "2.5"], "--experiments 2.5: must be a whole number of at least 1"],
      [["--model-latency", "soon"], "--model-latency soon: must be a number of seconds from 0 to 600"],
      [["--model-latency", "601"], "--model-latency 601: must be a number of seconds from 0 to 600"],
      [["--model-latency", "1", "--proposals", "p.json"], "--model-latency and --proposals cannot be used together: proposals come from one or the other"],
    ];
    for (const [argv, reason] of cases) {
      const err = demoError(() => parseDemoArgs(argv));
      expect(err.exitCode, argv.join(" ")).toBe(2);
      expect(err.message, argv.join(" ")).toBe(reason);
      expect(errorText(err)).toContain(USAGE);
    }
  });

  it("lists every bad flag at once", () => {
    const err = demoError(() => parseDemoArgs(["--slots", "65", "--budget", "5"]));
    expect(err.message.split("\n").sort()).toEqual(["--budget 5: must be at least 10", "--slots 65: must be at most 64"]);
  });

  it("accepts valid flags and leaves the ones not given unset", () => {
    expect(parseDemoArgs([])).toEqual({
      help: false,
      experiments: DEMO_DEFAULTS.experiments,
      budget: null,
      minDelta: null,
      runner: null,
      slots: null,
      json: null,
      keep: false,
      repo: null,
      proposals: null,
      modelLatency: null,
    });
    const proposals = path.join(tmp, "p.json");
    writeFileSync(proposals, "[]");
    const json = path.join(tmp, "night.json");
    expect(
      parseDemoArgs([
        "--experiments", "3", "--budget", "10", "--min-delta", "0.05", "--slots", "64", "--runner", "kubernetes",
        "--json", json, "--keep", "--repo", tmp, "--proposals", proposals,
      ]),
    ).toEqual({ help: false, experiments: 3, budget: 10, minDelta: 0.05, runner: "kubernetes", slots: 64, json, keep: true, repo: tmp, proposals, modelLatency: null });
    expect(parseDemoArgs(["--model-latency", "20"]).modelLatency).toBe(20);
    expect(parseDemoArgs(["--min-delta", "auto", "--budget", "86400"])).toMatchObject({ minDelta: "auto", budget: 86400 });
    expect(parseDemoArgs(["-h"]).help).toBe(true);
  });

  it("checks the paths it is given before anything starts", () => {
    expect(demoError(() => parseDemoArgs(["--json", path.join(tmp, "missing", "night.json")])).message).toMatch(/--json .*: the folder .*missing does not exist/);
    expect(demoError(() => parseDemoArgs(["--json", tmp])).message).toMatch(/is a folder, not a file/);
    expect(demoError(() => parseDemoArgs(["--repo", path.join(tmp, "nope")])).message).toMatch(/--repo .*nope: no such folder/);
    expect(demoError(() => parseDemoArgs(["--proposals", tmp])).message).toMatch(/--proposals .*: not a file/);
  });
});

describe("parseProposals", () => {
  const good = { title: "Lower OFFSET", hypothesis: "Smaller is better.", edits: [{ path: "train.py", search: "OFFSET = 0.5", replace: "OFFSET = 0.2" }] };

  it("reads a list of proposals", () => {
    expect(parseProposals(JSON.stringify([good, good]), "p.json")).toEqual([good, good]);
  });

  it("names the index and the field of every problem", () => {
    const bad = [good, { ...good, title: "" }, { title: "T", hypothesis: "H", edits: [{ path: "train.py", search: 1 }] }, { ...good, edits: [] }, { ...good, titel: "x" }, 5];
    const err = demoError(() => parseProposals(JSON.stringify(bad), "p.json"));
    expect(err.exitCode).toBe(2);
    expect(err.message.split("\n")).toEqual([
      "--proposals p.json is invalid:",
      "  proposal [1], field title: must not be empty",
      "  proposal [2], field edits[0].search: must be text, got number 1",
      "  proposal [2], field edits[0].replace: must be text, got nothing",
      "  proposal [3], field edits: must list at least one edit",
      "  proposal [4], field titel: unknown key (expected title, hypothesis, edits)",
      "  proposal [5], field (the proposal): must be an object, got number 5",
    ]);
  });

  it("refuses what is not a list of proposals", () => {
    expect(demoError(() => parseProposals("{", "p.json")).message).toMatch(/^--proposals p\.json: not valid JSON: /);
    expect(demoError(() => parseProposals(JSON.stringify(good), "p.json")).message).toMatch(/must hold a JSON array of proposals.*got an object/);
    expect(demoError(() => parseProposals("[]", "p.json")).message).toMatch(/the list is empty/);
    expect(demoError(() => parseProposals(JSON.stringify([{ ...good, title: "x".repeat(81) }]), "p.json")).message).toContain(
      "proposal [0], field title: must be at most 80 characters",
    );
  });

  it("refuses edits of files that are not editable", () => {
    const err = demoError(() => checkProposalPaths([good, { ...good, edits: [{ path: "model.py", search: "a", replace: "b" }] }], ["train.py"], "p.json"));
    expect(err.message).toContain('proposal [1], field edits[0].path: "model.py" is not an editable file (editable: train.py)');
  });
});

describe("demoConfig", () => {
  const base = { fileLabel: "proj/.github/autoresearch.yml", workdir: ".", hasPrepare: true, replay: false, env: {} };

  it("writes the template's config with the demo's defaults, and the flags given", () => {
    const { text, config } = demoConfig({ ...base, args: args(), fileText: null, workdir: "trainer" });
    expect(text).toContain("# written by the demo");
    expect(config).toMatchObject({ workdir: "trainer", editable: ["train.py"], runner: "local", slots: 1, budgetSeconds: 20, minDelta: "auto" });
    expect(config.proposer.kind).toBe("mutate");
    expect(config.night?.maxExperiments).toBe(5);
    const flagged = demoConfig({ ...base, args: args({ budget: 30, minDelta: 0.1, slots: 2, experiments: 2 }), fileText: null, hasPrepare: false, replay: true });
    expect(flagged.config).toMatchObject({ workdir: ".", budgetSeconds: 30, minDelta: 0.1, slots: 2, prepareCommand: null, prepareFiles: [] });
    expect(flagged.config.proposer).toMatchObject({ kind: "openai", model: REPLAY_MODEL });
    expect(flagged.config.night?.maxExperiments).toBe(3);
  });

  it("keeps a project's own file, comments included, overriding only what a flag gives and the night", () => {
    const fileText = [
      "# my project",
      "budget_seconds: 300  # five minutes on the GPU",
      "slots: 4",
      "enabled: false",
      "noise:",
      "  baseline_runs: 1",
      "night:",
      '  window: "22:00-07:00"',
      "  timezone: Europe/Berlin",
      "  max_experiments: 100",
      "",
    ].join("\n");
    // 23:58 in Berlin (UTC+1 in December).
    const { text, config, notes } = demoConfig({ ...base, args: args({ budget: 60 }), fileText, replay: true, now: new Date("2026-12-06T22:58:30Z") });
    expect(text).toContain("# my project");
    expect(text).toContain("# five minutes on the GPU");
    expect(config).toMatchObject({ budgetSeconds: 60, slots: 4, enabled: true, noise: { baselineRuns: 1 } });
    expect(config.night).toEqual({ window: "23:58-23:57", timezone: "Europe/Berlin", maxExperiments: 5 });
    expect(config.proposer).toMatchObject({ kind: "openai", model: REPLAY_MODEL });
    expect(notes).toContain("budget_seconds: 60 (--budget)");
    expect(notes).toContain('night.window: "23:58-23:57" (the demo\'s night starts now)');
    // What the bot reads is exactly what the demo parsed.
    const reread = parseConfig(text, { OPENAI_API_KEY: "k" });
    expect(reread.ok && reread.config).toEqual(config);
  });

  it("counts the demo's experiments in one night even when it runs over midnight", () => {
    // Started two minutes before midnight UTC, with the demo's own config and with a project's
    // file that has a night but no window: the bot's max_experiments counts experiments per
    // night, and without a window a night is the UTC date.
    const start = new Date("2026-12-06T23:58:10Z");
    const written = demoConfig({ ...base, args: args(), fileText: null, now: start }).config;
    const own = demoConfig({ ...base, args: args(), fileText: "night:\n  max_experiments: 100\n", now: start }).config;
    for (const config of [written, own]) {
      expect(config.night?.window).toBe("23:58-23:57");
      for (const later of ["2026-12-06T23:58:10Z", "2026-12-07T00:01:00Z", "2026-12-07T06:00:00Z", "2026-12-07T23:56:59Z"]) {
        expect(inWindow(config, new Date(later))).toBe(true);
        expect(nightKey(config, new Date(later))).toBe(nightKey(config, start));
      }
    }
  });

  it("refuses a file that is invalid, alone or with the flags, naming the file and the fields", () => {
    let err = demoError(() => demoConfig({ ...base, args: args(), fileText: "budget_seconds: 3\nslot: 2\n", now: new Date("2026-12-07T00:05:00Z") }));
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain(
      "proj/.github/autoresearch.yml, with the demo's night.max_experiments: 5 (the demo's length), night.window: \"00:05-00:04\" (the demo's night starts now), is invalid:",
    );
    expect(err.message).toContain("  budget_seconds: must be at least 10");
    expect(err.message).toContain("  slot: unknown key (did you mean slots?)");
    err = demoError(() => demoConfig({ ...base, args: args({ budget: 200 }), fileText: "timeout_seconds: 100\n" }));
    expect(err.message).toContain("timeout_seconds: must be at least budget_seconds (200)");
    // The flags can also make a file valid: the demo's repository gets the combined file.
    expect(demoConfig({ ...base, args: args({ budget: 50 }), fileText: "timeout_seconds: 100\n" }).config.budgetSeconds).toBe(50);
    err = demoError(() => demoConfig({ ...base, args: args(), fileText: "- a\n" }));
    expect(err.message).toBe("proj/.github/autoresearch.yml is invalid:\n  the file must be a mapping of settings (key: value), got a list");
  });

  it("refuses an openai proposer without a key, unless the proposals are replayed", () => {
    const fileText = "proposer:\n  kind: openai\n";
    expect(demoError(() => demoConfig({ ...base, args: args(), fileText })).message).toMatch(/OPENAI_API_KEY is not set.*--proposals/);
    expect(demoConfig({ ...base, args: args(), fileText, env: { OPENAI_API_KEY: "k" } }).config.proposer.kind).toBe("openai");
    expect(demoConfig({ ...base, args: args(), fileText, replay: true }).config.proposer.model).toBe(REPLAY_MODEL);
  });
});

describe("the project folder", () => {
  const git = (dir: string, ...a: string[]) =>
    execFileSync("git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", ...a], { encoding: "utf8" });

  it("takes a git repository's last commit and leaves the repository as it was", () => {
    const dir = path.join(tmp, "gitproj");
    mkdirSync(path.join(dir, "data"), { recursive: true });
    writeFileSync(path.join(dir, "program.md"), "# program\n");
    writeFileSync(path.join(dir, "train.py"), "X = 1\n");
    writeFileSync(path.join(dir, "data", "bytes.bin"), Buffer.from([0, 1, 2, 255]));
    writeFileSync(path.join(dir, ".gitignore"), "out/\n");
    git(dir, "init", "-q");
    git(dir, "add", "-A");
    git(dir, "commit", "-qm", "init");
    writeFileSync(path.join(dir, "train.py"), "X = 2  # not committed\n");
    mkdirSync(path.join(dir, "out"));
    writeFileSync(path.join(dir, "out", "big.log"), "ignored\n");
    const status = git(dir, "status", "--porcelain");
    const index = readFileSync(path.join(dir, ".git", "index"));

    const p = readProject(dir);
    expect(p.source).toMatch(/^git HEAD [0-9a-f]{7}/);
    expect(p.text).toEqual({ ".gitignore": "out/\n", "program.md": "# program\n", "train.py": "X = 1\n" });
    expect(p.binary).toEqual({ "data/bytes.bin": Buffer.from([0, 1, 2, 255]) });
    expect(p.notes.join("\n")).toMatch(/uncommitted changes; the demo uses its last commit/);
    expect(git(dir, "status", "--porcelain")).toBe(status);
    expect(readFileSync(path.join(dir, ".git", "index")).equals(index)).toBe(true);
    // A folder inside a repository: that folder's files of the last commit.
    expect(Object.keys(readProject(path.join(dir, "data")).binary)).toEqual(["bytes.bin"]);
  });

  it("takes every regular file of a plain folder but .git, node_modules and __pycache__, within bounds", () => {
    const dir = path.join(tmp, "plain");
    for (const d of ["node_modules/x", "__pycache__", "sub/__pycache__", ".git"]) mkdirSync(path.join(dir, d), { recursive: true });
    writeFileSync(path.join(dir, "train.py"), "X = 1\n");
    writeFileSync(path.join(dir, "sub", "util.py"), "Y = 2\n");
    for (const f of ["node_modules/x/i.js", "__pycache__/t.pyc", "sub/__pycache__/u.pyc", ".git/HEAD"]) writeFileSync(path.join(dir, f), "skip");
    const p = readProject(dir);
    expect(p.source).toBe("the folder");
    expect(Object.keys(p.text).sort()).toEqual(["sub/util.py", "train.py"]);

    const many = path.join(tmp, "many");
    mkdirSync(many);
    for (let i = 0; i <= MAX_PROJECT_FILES; i++) writeFileSync(path.join(many, `f${i}.txt`), "");
    const err = demoError(() => readProject(many));
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain(`it holds more than ${MAX_PROJECT_FILES} files`);
  });

  it("needs the program and the editable files", () => {
    const dir = path.join(tmp, "empty");
    mkdirSync(dir);
    writeFileSync(path.join(dir, "model.py"), "X = 1\n");
    let err = demoError(() => planDemo(parseDemoArgs(["--repo", dir]), {}));
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/program\.md, train\.py not found \(the demo's config, as no \.github\/autoresearch\.yml is there, expects them at the top\)/);
    mkdirSync(path.join(dir, ".github"));
    writeFileSync(path.join(dir, ".github", "autoresearch.yml"), "program: docs/program.md\neditable: [model.py, opt.py]\n");
    err = demoError(() => planDemo(parseDemoArgs(["--repo", dir]), {}));
    expect(err.message).toMatch(/docs\/program\.md, opt\.py not found \(where \.github\/autoresearch\.yml expects them\)/);
  });
});

describe("botConfigError", () => {
  const run = (over: Partial<CheckRunRecord>): CheckRunRecord => ({
    id: 1, suiteId: 1, appId: 1, name: "autoresearch", headSha: "a".repeat(40), status: "completed", conclusion: "failure",
    externalId: "config", detailsUrl: null, startedAt: "", completedAt: null, actions: [], createdAt: "",
    output: { title: ".github/autoresearch.yml is invalid", summary: "The experiment loop …:\n\n- slots: must be at least 1\n- x: a &lt;b&gt; \u2060@c", text: null, annotationsCount: 0 },
    ...over,
  });

  it("reads the failed config check run the bot puts on the default branch", () => {
    expect(botConfigError([run({})])).toBe(".github/autoresearch.yml is invalid\n  slots: must be at least 1\n  x: a <b> @c");
  });

  it("ignores other check runs: val_bpb, and a proposal that failed", () => {
    expect(botConfigError([])).toBeNull();
    expect(botConfigError([run({ name: "val_bpb" }), run({ externalId: "proposer" })])).toBeNull();
  });
});

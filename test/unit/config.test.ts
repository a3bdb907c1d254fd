import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, formatConfigErrors, inWindow, nightKey, parseConfig, type Config } from "../../src/config.js";

function ok(text: string | null, env: Record<string, string> = {}): Config {
  const r = parseConfig(text, env);
  if (!r.ok) throw new Error(`expected a valid config, got:\n${formatConfigErrors(r.errors)}`);
  return r.config;
}

function errors(text: string, env: Record<string, string> = {}): string[] {
  const r = parseConfig(text, env);
  if (r.ok) throw new Error("expected errors");
  return r.errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message));
}

describe("parseConfig defaults", () => {
  it("uses every default for a missing, empty or comment-only file", () => {
    for (const text of [null, "", "  \n", "# nothing set yet\n"]) expect(ok(text)).toEqual(DEFAULT_CONFIG);
  });

  it("documents the defaults an autoresearch fork relies on", () => {
    expect(DEFAULT_CONFIG).toMatchObject({
      enabled: true,
      program: "program.md",
      editable: ["train.py"],
      workdir: ".",
      trainCommand: "python3 train.py",
      prepareCommand: "python3 prepare.py",
      prepareFiles: ["prepare.py"],
      budgetSeconds: 300,
      evalAllowanceSeconds: 120,
      timeoutSeconds: 720,
      slots: 1,
      proposer: { kind: "mutate", model: "gpt-4o-mini", temperature: 0.7, maxAttempts: 3 },
      minDelta: "auto",
      noise: { baselineRuns: 3, maxRuns: 3, falseKeepRate: 0.01, rebaselineEvery: 20, floor: 0.01 },
      night: null,
      runner: "local",
    });
  });

  it("takes min_delta auto (the default) or a number, and the noise settings, with their limits", () => {
    expect(ok("min_delta: auto\n").minDelta).toBe("auto");
    expect(ok("min_delta: 0.002\n").minDelta).toBe(0.002);
    expect(ok("noise:\n  baseline_runs: 5\n  false_keep_rate: 0.05\n").noise).toEqual({
      baselineRuns: 5, maxRuns: 3, falseKeepRate: 0.05, rebaselineEvery: 20, floor: 0.01,
    });
    expect(errors("min_delta: sometimes\n")).toEqual(['min_delta: must be "auto" or a number from 0 to 1']);
    expect(errors("noise:\n  false_keep_rate: 0\n")).toEqual(["noise.false_keep_rate: must be more than 0"]);
    expect(errors("noise:\n  max_run: 3\n")).toEqual(["noise.max_run: unknown key (did you mean max_runs?)"]);
  });

  it("scores val_bpb outside the experiment only when evaluation names both commands", () => {
    expect(ok("").evaluation).toBeNull();
    expect(ok("evaluation:\n  score_command: python3 prepare.py score\n  serve_command: python3 train.py serve\n").evaluation).toEqual({
      scoreCommand: "python3 prepare.py score",
      serveCommand: "python3 train.py serve",
    });
    expect(errors("evaluation:\n  score_command: python3 prepare.py score\n")).toEqual([expect.stringMatching(/^evaluation\.serve_command: /)]);
    expect(errors("evaluation:\n  score_cmd: x\n  serve_command: y\n")).toEqual(
      expect.arrayContaining(["evaluation.score_cmd: unknown key (did you mean score_command?)"]),
    );
  });

  it("picks the openai proposer only when the bot has an API key", () => {
    expect(ok(null, { OPENAI_API_KEY: "sk-test" }).proposer.kind).toBe("openai");
    expect(ok(null, { OPENAI_API_KEY: "  " }).proposer.kind).toBe("mutate");
    expect(ok(null, {}).proposer.kind).toBe("mutate");
    expect(ok("proposer:\n  kind: mutate\n", { OPENAI_API_KEY: "sk-test" }).proposer.kind).toBe("mutate");
  });

  it("derives the hard timeout from the budget unless it is set", () => {
    expect(ok("budget_seconds: 60").timeoutSeconds).toBe(240);
    expect(ok("budget_seconds: 60\ntimeout_seconds: 90").timeoutSeconds).toBe(90);
  });

  it("maps snake_case keys onto the config object", () => {
    const c = ok(`
enabled: false
program: docs/program.md
editable: [train.py, model.py]
workdir: trainer
train_command: python3 -u train.py
prepare_command: null
prepare_files: [prepare.py, data.txt]
budget_seconds: 120
eval_allowance_seconds: 30
slots: 4
queue_ahead: 2
proposer: { kind: openai, model: qwen2.5-coder, temperature: 0.2, max_attempts: 5, ask_ahead: false }
min_delta: 0
noise: { baseline_runs: 2, max_runs: 3, false_keep_rate: 0.02, rebaseline_every: 10, floor: 0.005 }
night: { window: "22:00-07:00", timezone: Europe/Berlin, max_experiments: 80 }
runner: kubernetes
`);
    expect(c).toEqual({
      enabled: false,
      program: "docs/program.md",
      editable: ["train.py", "model.py"],
      workdir: "trainer",
      trainCommand: "python3 -u train.py",
      prepareCommand: null,
      prepareFiles: ["prepare.py", "data.txt"],
      budgetSeconds: 120,
      evalAllowanceSeconds: 30,
      timeoutSeconds: 360,
      slots: 4,
      queueAhead: 2,
      proposer: { kind: "openai", model: "qwen2.5-coder", temperature: 0.2, maxAttempts: 5, askAhead: false },
      minDelta: 0,
      noise: { baselineRuns: 2, maxRuns: 3, falseKeepRate: 0.02, rebaselineEvery: 10, floor: 0.005 },
      night: { window: "22:00-07:00", timezone: "Europe/Berlin", maxExperiments: 80 },
      runner: "kubernetes",
      evaluation: null,
    });
  });

  it("never lets a parsed config share arrays with the defaults", () => {
    const c = ok(null);
    c.editable.push("other.py");
    expect(DEFAULT_CONFIG.editable).toEqual(["train.py"]);
  });
});

describe("parseConfig errors name the field", () => {
  it.each([
    ["budget_seconds: 5", "budget_seconds: must be at least 10"],
    ["budget_seconds: 100000", "budget_seconds: must be at most 86400"],
    ["budget_seconds: 12.5", "budget_seconds: must be an integer, got number 12.5"],
    ["budget_seconds: five", 'budget_seconds: must be a number, got the text "five"'],
    ["slots: 0", "slots: must be at least 1"],
    ["slots: 65", "slots: must be at most 64"],
    ["enabled: maybe", 'enabled: must be true or false, got the text "maybe"'],
    ["program: 3", "program: must be text, got number 3"],
    ["program: /etc/passwd", "program: must be a relative path"],
    ["editable: []", "editable: must list at least one entry"],
    ["editable: train.py", 'editable: must be a list, got the text "train.py"'],
    ["editable: [../secrets.py]", "editable[0]: must not contain '..'"],
    ["editable: [train.py, /abs/x.py]", "editable[1]: must be a relative path"],
    ["editable: [train.py, train.py]", "editable[1]: train.py is listed twice"],
    [
      "editable: [prepare.py]",
      "editable[0]: prepare.py is also in prepare_files; data preparation and evaluation must stay fixed so results stay comparable",
    ],
    ["workdir: a/../../b", "workdir: must not contain '..'"],
    ["train_command: ''", "train_command: must not be empty"],
    ["prepare_command: ''", "prepare_command: must not be empty (write null to skip data preparation)"],
    [
      "timeout_seconds: 100",
      "timeout_seconds: must be at least budget_seconds (300): the hard deadline cannot come before the budget ends",
    ],
    ["min_delta: -0.01", "min_delta: must be at least 0"],
    ["runner: docker", 'runner: must be one of local, kubernetes, got the text "docker"'],
    ["proposer: { kind: claude }", 'proposer.kind: must be one of openai, mutate, got the text "claude"'],
    ["proposer: { temperature: 3 }", "proposer.temperature: must be at most 2"],
    ["proposer: { max_attempts: 0 }", "proposer.max_attempts: must be at least 1"],
    ["proposer: { model: '' }", "proposer.model: must not be empty"],
    ['night: { window: "10pm-7am" }', 'night.window: must look like "HH:MM-HH:MM" (24-hour clock), e.g. "22:00-07:00"'],
    ['night: { window: "24:00-07:00" }', 'night.window: must look like "HH:MM-HH:MM" (24-hour clock), e.g. "22:00-07:00"'],
    ['night: { window: "07:00-07:00" }', "night.window: start and end must differ"],
    [
      'night: { window: "22:00-07:00", timezone: Mars/Olympus }',
      'night.timezone: must be an IANA time zone name such as "UTC" or "Europe/Berlin"',
    ],
    ['night: { window: "22:00-07:00", max_experiments: 0 }', "night.max_experiments: must be at least 1"],
  ])("%s", (text, message) => {
    expect(errors(text)).toEqual([message]);
  });

  it("accepts a night without a window: experiments around the clock, capped per UTC day", () => {
    const r = parseConfig("night: { max_experiments: 5 }");
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    expect(r.config.night).toEqual({ window: null, timezone: "UTC", maxExperiments: 5 });
    expect(inWindow(r.config, new Date("2026-01-01T12:00:00Z"))).toBe(true);
    expect(nightKey(r.config, new Date("2026-01-01T23:59:00Z"))).toBe("2026-01-01");
  });

  it("reports every error at once", () => {
    expect(errors("slots: 0\nrunner: docker\nmin_delta: -1").sort()).toEqual([
      "min_delta: must be at least 0",
      'runner: must be one of local, kubernetes, got the text "docker"',
      "slots: must be at least 1",
    ]);
  });

  it("rejects unknown keys and suggests the intended one", () => {
    expect(errors("budget_secs: 60")).toEqual(["budget_secs: unknown key (did you mean budget_seconds?)"]);
    expect(errors("budgetSeconds: 60")).toEqual(["budgetSeconds: unknown key (did you mean budget_seconds?)"]);
    expect(errors("proposer:\n  modle: gpt-4o")).toEqual(["proposer.modle: unknown key (did you mean model?)"]);
    expect(errors("colour: blue")[0]).toMatch(/^colour: unknown key; known keys here: enabled, program, editable, /);
  });

  it("refuses secrets and endpoints in the committed file, explaining where they belong", () => {
    expect(errors("proposer:\n  api_key: sk-abc\n")).toEqual([
      "proposer.api_key: secrets must not be stored in the repository; set OPENAI_API_KEY in the bot's environment instead (and revoke this key: it is in the git history)",
    ]);
    expect(errors("openai_api_key: sk-abc")[0]).toMatch(/^openai_api_key: secrets must not be stored/);
    expect(errors("proposer:\n  base_url: http://localhost:8000/v1\n")).toEqual([
      "proposer.base_url: the LLM endpoint is not set in this file; set OPENAI_BASE_URL in the bot's environment instead",
    ]);
    // A key that merely contains the word is an ordinary unknown key.
    expect(errors("proposer:\n  max_tokens: 100\n")[0]).toMatch(/^proposer.max_tokens: unknown key/);
  });

  it("reports YAML syntax errors with line and column", () => {
    expect(errors("slots: 1\neditable: [train.py\nrunner: local\n")).toEqual([
      "line 3, column 1: YAML syntax error: missed comma between flow collection entries",
    ]);
    expect(errors("slots: 1\nslots: 2\n")).toEqual(["line 2, column 1: YAML syntax error: duplicated mapping key"]);
  });

  it("points at the line and column of a syntax error inside a section, as an editor counts them", () => {
    // The key on line 3 is indented one space less than its sibling: column 4 of line 3.
    const r = parseConfig("proposer:\n    kind: mutate\n   model: x\n");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors).toEqual([{ path: "line 3, column 4", message: "YAML syntax error: bad indentation of a mapping entry" }]);
    expect(formatConfigErrors(r.errors)).toBe("line 3, column 4: YAML syntax error: bad indentation of a mapping entry");
  });

  it("reads dates, times and tags as plain text, and refuses a file far larger than a settings file", () => {
    const night = parseConfig("night:\n  window: 22:00-07:00\n  timezone: UTC\n");
    expect(night.ok && night.config.night).toMatchObject({ window: "22:00-07:00", timezone: "UTC" });
    expect(errors("proposer:\n  model: !!js/function 'f() {}'\n")[0]).toMatch(/^line 2, column \d+: YAML syntax error: unknown tag/);
    expect(errors(`# ${"x".repeat(70_000)}\nslots: 1\n`)).toEqual(["the file is 70012 bytes, more than the 65536 a settings file may have"]);
  });

  it("requires the file to be a mapping", () => {
    expect(errors("- train.py\n")).toEqual(["the file must be a mapping of settings (key: value), got a list"]);
    expect(errors("just text")).toEqual(['the file must be a mapping of settings (key: value), got the text "just text"']);
  });
});

describe("the nightly window", () => {
  const night = (window: string, timezone = "UTC") => ({ night: { window, timezone, maxExperiments: null } });
  const at = (iso: string) => new Date(iso);

  it("is always open without a night section", () => {
    expect(inWindow({ night: null }, at("2025-03-01T12:00:00Z"))).toBe(true);
  });

  it("handles a window within one day, start inclusive and end exclusive", () => {
    const c = night("01:00-06:00");
    expect(inWindow(c, at("2025-03-01T00:59:00Z"))).toBe(false);
    expect(inWindow(c, at("2025-03-01T01:00:00Z"))).toBe(true);
    expect(inWindow(c, at("2025-03-01T05:59:00Z"))).toBe(true);
    expect(inWindow(c, at("2025-03-01T06:00:00Z"))).toBe(false);
  });

  it("wraps around midnight", () => {
    const c = night("22:00-07:00");
    expect(inWindow(c, at("2025-03-01T21:59:00Z"))).toBe(false);
    expect(inWindow(c, at("2025-03-01T22:00:00Z"))).toBe(true);
    expect(inWindow(c, at("2025-03-02T03:00:00Z"))).toBe(true);
    expect(inWindow(c, at("2025-03-02T06:59:00Z"))).toBe(true);
    expect(inWindow(c, at("2025-03-02T07:00:00Z"))).toBe(false);
    expect(inWindow(c, at("2025-03-02T12:00:00Z"))).toBe(false);
  });

  it("reads the clock in the configured time zone, daylight saving included", () => {
    const c = night("22:00-07:00", "Europe/Berlin");
    // 21:30 UTC is 22:30 in Berlin in winter (UTC+1) ...
    expect(inWindow(c, at("2025-01-15T21:30:00Z"))).toBe(true);
    // ... and 23:30 in summer (UTC+2); 05:30 UTC is 07:30 in summer, after the window.
    expect(inWindow(c, at("2025-07-15T05:30:00Z"))).toBe(false);
    expect(inWindow(c, at("2025-01-15T05:30:00Z"))).toBe(true);
  });

  it("keys a night by the local date on which it started", () => {
    const c = night("22:00-07:00", "America/New_York");
    // 23:00 on 1 March in New York (UTC-5) and 03:00 on 2 March both belong to the night of 1 March.
    expect(nightKey(c, at("2025-03-02T04:00:00Z"))).toBe("2025-03-01");
    expect(nightKey(c, at("2025-03-02T08:00:00Z"))).toBe("2025-03-01");
    // The next evening starts the night of 2 March.
    expect(nightKey(c, at("2025-03-03T03:30:00Z"))).toBe("2025-03-02");
    // Across a month end.
    expect(nightKey(night("22:00-07:00"), at("2025-03-01T02:00:00Z"))).toBe("2025-02-28");
  });

  it("uses the UTC date when no window is configured", () => {
    expect(nightKey({ night: null }, at("2025-03-01T23:59:00Z"))).toBe("2025-03-01");
  });
});

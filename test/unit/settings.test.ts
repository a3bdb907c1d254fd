// The bot's environment, parsed once at start by one schema: what each kind of bad value says,
// that good values (and blank ones) parse, and that every problem is named at once.
import { describe, expect, it } from "vitest";
import { readSettings, SettingsError, settingsFrom, VARIABLES, type Env } from "../../src/settings.js";

/** The problem lines of an environment that must not parse. */
function problems(env: Env): string[] {
  const r = readSettings(env);
  if (r.ok) throw new Error(`expected ${JSON.stringify(env)} to be refused`);
  return r.error.message.replace(/^\d+ environment variables? (is|are) not usable: /, "").replace(/\. Correct or unset .*$/, "").split("; ");
}

describe("settings from the environment", () => {
  it("are the documented defaults when nothing is set", () => {
    expect(settingsFrom({})).toEqual({
      runner: { kind: "local", slots: 1, runsDir: ".runs", cacheDir: null, python: null, sandbox: "bwrap", prepareNetwork: true, sandboxReadOnly: [], gpus: "auto" },
      leader: { kind: "lockfile", lockFile: ".runs/leader.lock" },
      resyncSeconds: 300,
      writes: { perMinute: 80, perHour: 500 },
      commits: "git",
      appSlug: null,
      openai: { apiKey: null, baseURL: null, answerModel: "gpt-4o-mini" },
      githubApiUrl: null,
    });
    expect(settingsFrom({ AUTORESEARCH_RUNNER: "kubernetes" }).runner).toEqual({
      kind: "kubernetes",
      slots: 8,
      jobTemplate: "k8s/job.yaml",
      namespace: null,
      pendingTimeoutSeconds: null,
    });
  });

  it("parse good values, trimmed, with case-insensitive words", () => {
    const s = settingsFrom({
      AUTORESEARCH_RUNNER: " Kubernetes\n",
      AUTORESEARCH_SLOTS: "3",
      AUTORESEARCH_RESYNC_SECONDS: " 90 ",
      AUTORESEARCH_WRITES_PER_MINUTE: "200",
      AUTORESEARCH_WRITES_PER_HOUR: "2000",
      AUTORESEARCH_NAMESPACE: "research",
      AUTORESEARCH_JOB_TEMPLATE: "/etc/autoresearch/jobs",
      AUTORESEARCH_PENDING_TIMEOUT_SECONDS: "600",
      AUTORESEARCH_GIT_PUSH: "Off",
      AUTORESEARCH_APP_SLUG: "my-autoresearch",
      AUTORESEARCH_ANSWER_MODEL: "Qwen/Qwen2.5-Coder-32B-Instruct",
      OPENAI_API_KEY: "sk-test\n",
      OPENAI_BASE_URL: "http://gpu-box:8000/v1",
      GITHUB_API_URL: "https://github.example.com/api/v3/",
    });
    expect(s).toEqual({
      runner: { kind: "kubernetes", slots: 3, jobTemplate: "/etc/autoresearch/jobs", namespace: "research", pendingTimeoutSeconds: 600 },
      leader: { kind: "lease", lockFile: ".runs/leader.lock" },
      resyncSeconds: 90,
      writes: { perMinute: 200, perHour: 2000 },
      commits: "api",
      appSlug: "my-autoresearch",
      openai: { apiKey: "sk-test", baseURL: "http://gpu-box:8000/v1", answerModel: "Qwen/Qwen2.5-Coder-32B-Instruct" },
      githubApiUrl: "https://github.example.com/api/v3",
    });
    const local = settingsFrom({
      AUTORESEARCH_SANDBOX: "ON",
      AUTORESEARCH_PREPARE_NETWORK: "off",
      AUTORESEARCH_SANDBOX_READONLY: "/opt/data::/srv/models:",
      AUTORESEARCH_RUNS_DIR: "/srv/runs",
      AUTORESEARCH_CACHE_DIR: "/srv/cache",
      AUTORESEARCH_PYTHON: "/opt/venv/bin/python",
      AUTORESEARCH_GPUS: " 0, 1,GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789 ",
    }).runner;
    expect(local).toEqual({
      kind: "local",
      slots: 1,
      runsDir: "/srv/runs",
      cacheDir: "/srv/cache",
      python: "/opt/venv/bin/python",
      sandbox: "bwrap",
      prepareNetwork: false,
      sandboxReadOnly: ["/opt/data", "/srv/models"],
      gpus: ["0", "1", "GPU-0a1b2c3d-4e5f-6789-abcd-ef0123456789"],
    });
    expect(settingsFrom({ AUTORESEARCH_SANDBOX: "off" }).runner).toMatchObject({ sandbox: "off" });
    expect(settingsFrom({ AUTORESEARCH_GPUS: "None" }).runner).toMatchObject({ gpus: [] });
    expect(settingsFrom({ AUTORESEARCH_GPUS: "Auto" }).runner).toMatchObject({ gpus: "auto" });
    for (const bad of ["0,,1", "gpu0", "0;1", "1234"]) {
      expect(problems({ AUTORESEARCH_GPUS: bad }), bad).toEqual([
        `AUTORESEARCH_GPUS is ${JSON.stringify(bad)}: it must be auto (the default: CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists), none, or GPU indices or UUIDs separated by commas (for example AUTORESEARCH_GPUS=0,1,2,3)`,
      ]);
    }
  });

  it("take an empty or blank value for unset: the default, never 0 or a 1 ms resync loop", () => {
    const blank: Env = {};
    for (const name of Object.keys(VARIABLES)) blank[name] = name.length % 2 ? "" : "  \n";
    expect(settingsFrom(blank)).toEqual(settingsFrom({}));
    expect(settingsFrom({ AUTORESEARCH_RESYNC_SECONDS: "" }).resyncSeconds).toBe(300);
  });

  it("refuse a number that is not a whole number within its bounds, saying what is allowed with an example", () => {
    for (const bad of ["abc", "0", "-5", "0.5", "NaN", "Infinity", "1e9", "9", "86401", "3 00"]) {
      expect(problems({ AUTORESEARCH_RESYNC_SECONDS: bad }), bad).toEqual([
        `AUTORESEARCH_RESYNC_SECONDS is ${JSON.stringify(bad)}: it must be a whole number of seconds from 10 to 86400, a day (for example AUTORESEARCH_RESYNC_SECONDS=300)`,
      ]);
    }
    expect(problems({ AUTORESEARCH_SLOTS: "two" })).toEqual([
      'AUTORESEARCH_SLOTS is "two": it must be a whole number of runs from 1 to 1000 (for example AUTORESEARCH_SLOTS=4)',
    ]);
    expect(problems({ AUTORESEARCH_WRITES_PER_MINUTE: "-1" })[0]).toMatch(/^AUTORESEARCH_WRITES_PER_MINUTE is "-1": it must be a whole number of writes from 1 to 10000/);
    expect(problems({ AUTORESEARCH_WRITES_PER_HOUR: "lots" })[0]).toMatch(/^AUTORESEARCH_WRITES_PER_HOUR is "lots"/);
    expect(problems({ AUTORESEARCH_PENDING_TIMEOUT_SECONDS: "0" })[0]).toMatch(/from 30 to 86400.*AUTORESEARCH_PENDING_TIMEOUT_SECONDS=900\)$/);
  });

  it("refuse a word that is not one of those allowed", () => {
    expect(problems({ AUTORESEARCH_RUNNER: "slurm" })).toEqual([
      'AUTORESEARCH_RUNNER is "slurm": it must be local (the default) or kubernetes (for example AUTORESEARCH_RUNNER=kubernetes)',
    ]);
    expect(problems({ AUTORESEARCH_SANDBOX: "maybe" })[0]).toMatch(/^AUTORESEARCH_SANDBOX is "maybe": it must be bwrap \(the default\) or off/);
    expect(problems({ AUTORESEARCH_PREPARE_NETWORK: "sometimes" })[0]).toMatch(/^AUTORESEARCH_PREPARE_NETWORK is "sometimes": it must be on \(the default\) or off/);
  });

  it("refuse names, URLs and paths of the wrong form", () => {
    expect(problems({ AUTORESEARCH_NAMESPACE: "Research_Team" })[0]).toMatch(/^AUTORESEARCH_NAMESPACE is "Research_Team": it must be a Kubernetes namespace name/);
    expect(problems({ AUTORESEARCH_APP_SLUG: "My App" })[0]).toMatch(/^AUTORESEARCH_APP_SLUG is "My App": it must be the app's slug/);
    expect(problems({ OPENAI_BASE_URL: "gpu-box:8000/v1" })[0]).toMatch(/^OPENAI_BASE_URL is "gpu-box:8000\/v1": it must be an http:\/\/ or https:\/\/ URL \(for example OPENAI_BASE_URL=http:\/\/gpu-box:8000\/v1\)$/);
    expect(problems({ GITHUB_API_URL: "ftp://example.com" })[0]).toMatch(/^GITHUB_API_URL is "ftp:\/\/example.com"/);
    expect(problems({ AUTORESEARCH_SANDBOX_READONLY: "/opt/data:relative/models" })[0]).toMatch(/^AUTORESEARCH_SANDBOX_READONLY is "\/opt\/data:relative\/models": it must be absolute folders/);
    expect(problems({ AUTORESEARCH_RUNS_DIR: "/srv/runs\u0000x" })[0]).toMatch(/^AUTORESEARCH_RUNS_DIR is "\/srv\/runs\\u0000x"/);
    // A pasted value is shown cut short, not whole.
    const long = problems({ AUTORESEARCH_ANSWER_MODEL: `model ${"x".repeat(300)}` })[0]!;
    expect(long).toMatch(/^AUTORESEARCH_ANSWER_MODEL is "model x{74}…": it must be a model name, without spaces/);
  });

  it("never show a secret: only its length", () => {
    const secret = "sk-live key-with a space";
    const [line] = problems({ OPENAI_API_KEY: secret });
    expect(line).toBe(`OPENAI_API_KEY is <secret, ${secret.length} characters>: it must be one word of printable characters without spaces (for example OPENAI_API_KEY=sk-…)`);
    expect(line).not.toContain("sk-live");
  });

  it("name every bad variable in one message, always in the same order, and nothing that is fine", () => {
    const r = readSettings({
      OPENAI_BASE_URL: "not a url",
      AUTORESEARCH_RESYNC_SECONDS: "abc",
      AUTORESEARCH_SLOTS: "4",
      AUTORESEARCH_RUNNER: "slurm",
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toBeInstanceOf(SettingsError);
    expect(r.error.problems.map((p) => p.variable)).toEqual(["AUTORESEARCH_RUNNER", "AUTORESEARCH_RESYNC_SECONDS", "OPENAI_BASE_URL"]);
    expect(r.error.message).toMatch(/^3 environment variables are not usable: AUTORESEARCH_RUNNER is "slurm": .*; AUTORESEARCH_RESYNC_SECONDS is "abc": .*; OPENAI_BASE_URL is "not a url": .*\. Correct or unset them \(an empty value means the default; README: "Environment variables"\)$/);
    expect(() => settingsFrom({ AUTORESEARCH_SLOTS: "0" })).toThrow(/^1 environment variable is not usable: AUTORESEARCH_SLOTS is "0"/);
  });
});

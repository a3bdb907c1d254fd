// `.github/autoresearch.yml`: the per-repository settings, read from the default branch on every
// reconcile. The file is written by people, so every error names the field it is about and says
// what is accepted; unknown keys are errors so that a typo never silently falls back to a default.
//
// Paths: `program` is relative to the repository root; `editable` and `prepare_files` are
// relative to `workdir` (the directory the train and prepare commands run in).

import { CORE_SCHEMA, dump, load, YAMLException } from "js-yaml";
import { z } from "zod";

export interface NightConfig {
  /** "HH:MM-HH:MM" in `timezone`; may wrap midnight ("22:00-07:00"). null: around the clock. */
  window: string | null;
  /** IANA time zone name. */
  timezone: string;
  /** At most this many experiments are started per night (null: no limit). */
  maxExperiments: number | null;
}

export interface ProposerConfig {
  /** `openai`: any OpenAI-compatible endpoint (OPENAI_BASE_URL / OPENAI_API_KEY from the bot's environment); `mutate`: the built-in proposer. */
  kind: "openai" | "mutate";
  model: string;
  temperature: number;
  /** How many times the proposer may try to produce a valid, new change before the bot gives up for this pass. */
  maxAttempts: number;
  /**
   * Ask a model for the next proposal while the runs train, so that no slot waits for it. A
   * proposal made from a head that moved before it was used is thrown away and asked again.
   */
  askAhead: boolean;
}

/** How the loop tells progress from noise (see src/noise.ts and src/policy.ts). */
export interface NoiseConfig {
  /** Runs of every baseline (different seeds): their spread is the noise. */
  baselineRuns: number;
  /** Most runs of one experiment: a promising first run is confirmed before any merge. */
  maxRuns: number;
  /** Target probability that a change that does nothing is kept (min_delta: auto). */
  falseKeepRate: number;
  /** The default branch is measured again after this many experiments. */
  rebaselineEvery: number;
  /** The keep threshold while the noise is not known yet (fewer than 2 degrees of freedom). */
  floor: number;
}

/**
 * Outside evaluation: val_bpb is computed after training by the default branch's scorer, on weights
 * the run saved, never by the experiment's own code (see trainer/README.md, "Outside evaluation").
 */
export interface EvaluationConfig {
  /** The scorer, run in the workdir of the default branch's tree with the held-out data. */
  scoreCommand: string;
  /** The experiment's model process, run in the experiment's workdir with the training's output. */
  serveCommand: string;
}

export interface Config {
  enabled: boolean;
  program: string;
  editable: string[];
  workdir: string;
  trainCommand: string;
  /** null skips data preparation. */
  prepareCommand: string | null;
  prepareFiles: string[];
  budgetSeconds: number;
  /** Wall-clock time the training command may take beyond the budget (start-up, compilation, evaluation). */
  evalAllowanceSeconds: number;
  timeoutSeconds: number;
  slots: number;
  /**
   * Experiments kept submitted beyond the slots, for a runner that holds them until a slot frees
   * (the local runner): its next run starts the moment one ends, not after a pass opens it.
   */
  queueAhead: number;
  proposer: ProposerConfig;
  /** The smallest val_bpb improvement that counts, or "auto": from the measured noise. */
  minDelta: number | "auto";
  noise: NoiseConfig;
  night: NightConfig | null;
  runner: "local" | "kubernetes";
  /** null: val_bpb is what the training printed (self-reported), and every check run says so. */
  evaluation: EvaluationConfig | null;
}

export interface ConfigError {
  /** Dotted field path in the YAML file (`proposer.model`, `editable[0]`), or `line L, column C` for syntax errors; empty for the whole file. */
  path: string;
  message: string;
}

export type ParseConfigResult = { ok: true; config: Config } | { ok: false; errors: ConfigError[] };

/** Environment variables that influence the defaults (only their presence is read). */
export type ConfigEnv = Record<string, string | undefined>;

export const CONFIG_PATH = ".github/autoresearch.yml";

const BUDGET_MIN = 10;
const BUDGET_MAX = 86_400;

/** The hard deadline when `timeout_seconds` is not set: twice the budget plus time for start-up and evaluation. */
export function defaultTimeoutSeconds(budgetSeconds: number): number {
  return 2 * budgetSeconds + 120;
}

/**
 * The settings used when the file is absent. `prepare_command` assumes an autoresearch fork
 * layout (prepare.py next to train.py); a repository without one must set it to null.
 * `proposer.kind` is `mutate` here; `parseConfig` picks `openai` when OPENAI_API_KEY is set.
 */
export const DEFAULT_CONFIG: Config = Object.freeze({
  enabled: true,
  program: "program.md",
  editable: ["train.py"],
  workdir: ".",
  trainCommand: "python3 train.py",
  prepareCommand: "python3 prepare.py",
  prepareFiles: ["prepare.py"],
  budgetSeconds: 300,
  evalAllowanceSeconds: 120,
  timeoutSeconds: defaultTimeoutSeconds(300),
  slots: 1,
  queueAhead: 0,
  proposer: { kind: "mutate", model: "gpt-4o-mini", temperature: 0.7, maxAttempts: 3, askAhead: true },
  minDelta: "auto",
  noise: { baselineRuns: 3, maxRuns: 3, falseKeepRate: 0.01, rebaselineEvery: 20, floor: 0.01 },
  night: null,
  runner: "local",
  evaluation: null,
}) as Config;

// ------------------------------------------------------------------ schema (the file's shape)

const WINDOW_RE = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** A path inside the repository: relative, forward slashes, no `..` (an edit must never escape). */
const relPath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith("/") && !/^[A-Za-z]:/.test(p), { error: "must be a relative path" })
  .refine((p) => !p.split(/[\\/]/).includes(".."), { error: "must not contain '..'" })
  .refine((p) => !p.includes("\\"), { error: "must use forward slashes" });

const command = z.string().trim().min(1);

const proposerSchema = z.strictObject({
  kind: z.enum(["openai", "mutate"]).optional(),
  model: z.string().trim().min(1).default(DEFAULT_CONFIG.proposer.model),
  temperature: z.number().min(0).max(2).default(DEFAULT_CONFIG.proposer.temperature),
  max_attempts: z.number().int().min(1).max(10).default(DEFAULT_CONFIG.proposer.maxAttempts),
  ask_ahead: z.boolean().default(DEFAULT_CONFIG.proposer.askAhead),
});

const noiseSchema = z.strictObject({
  baseline_runs: z.number().int().min(1).max(20).default(DEFAULT_CONFIG.noise.baselineRuns),
  max_runs: z.number().int().min(1).max(20).default(DEFAULT_CONFIG.noise.maxRuns),
  false_keep_rate: z.number().gt(0).max(0.5).default(DEFAULT_CONFIG.noise.falseKeepRate),
  rebaseline_every: z.number().int().min(1).max(10_000).default(DEFAULT_CONFIG.noise.rebaselineEvery),
  floor: z.number().min(0).max(1).default(DEFAULT_CONFIG.noise.floor),
});

const nightSchema = z.strictObject({
  window: z
    .string()
    .regex(WINDOW_RE, { error: 'must look like "HH:MM-HH:MM" (24-hour clock), e.g. "22:00-07:00"' })
    .nullable()
    .default(null),
  timezone: z
    .string()
    .refine(isTimeZone, { error: 'must be an IANA time zone name such as "UTC" or "Europe/Berlin"' })
    .default("UTC"),
  max_experiments: z.number().int().min(1).nullable().default(null),
});

const evaluationSchema = z.strictObject({
  score_command: command,
  serve_command: command,
});

const fileSchema = z.strictObject({
  enabled: z.boolean().default(DEFAULT_CONFIG.enabled),
  program: relPath.default(DEFAULT_CONFIG.program),
  editable: z.array(relPath).min(1).default(DEFAULT_CONFIG.editable),
  workdir: relPath.default(DEFAULT_CONFIG.workdir),
  train_command: command.default(DEFAULT_CONFIG.trainCommand),
  prepare_command: z
    .string()
    .trim()
    .min(1, { error: "must not be empty (write null to skip data preparation)" })
    .nullable().default(DEFAULT_CONFIG.prepareCommand),
  prepare_files: z.array(relPath).default(DEFAULT_CONFIG.prepareFiles),
  budget_seconds: z.number().int().min(BUDGET_MIN).max(BUDGET_MAX).default(DEFAULT_CONFIG.budgetSeconds),
  eval_allowance_seconds: z.number().int().min(0).max(BUDGET_MAX).default(DEFAULT_CONFIG.evalAllowanceSeconds),
  timeout_seconds: z
    .number()
    .int()
    .min(BUDGET_MIN)
    .max(defaultTimeoutSeconds(BUDGET_MAX))
    .optional(),
  slots: z.number().int().min(1).max(64).default(DEFAULT_CONFIG.slots),
  queue_ahead: z.number().int().min(0).max(64).default(DEFAULT_CONFIG.queueAhead),
  proposer: proposerSchema.default({
    model: DEFAULT_CONFIG.proposer.model,
    temperature: DEFAULT_CONFIG.proposer.temperature,
    max_attempts: DEFAULT_CONFIG.proposer.maxAttempts,
    ask_ahead: DEFAULT_CONFIG.proposer.askAhead,
  }),
  min_delta: z
    .union([z.literal("auto"), z.number().min(0).max(1)], { error: 'must be "auto" or a number from 0 to 1' })
    .default("auto"),
  noise: noiseSchema.default({
    baseline_runs: DEFAULT_CONFIG.noise.baselineRuns,
    max_runs: DEFAULT_CONFIG.noise.maxRuns,
    false_keep_rate: DEFAULT_CONFIG.noise.falseKeepRate,
    rebaseline_every: DEFAULT_CONFIG.noise.rebaselineEvery,
    floor: DEFAULT_CONFIG.noise.floor,
  }),
  night: nightSchema.nullable().default(null),
  runner: z.enum(["local", "kubernetes"]).default(DEFAULT_CONFIG.runner),
  evaluation: evaluationSchema.nullable().default(null),
});

type FileConfig = z.output<typeof fileSchema>;

/** Every key the file accepts, per section (used to suggest the intended key on a typo). */
const KNOWN_KEYS: Record<string, string[]> = {
  "": Object.keys(fileSchema.shape),
  proposer: Object.keys(proposerSchema.shape),
  noise: Object.keys(noiseSchema.shape),
  night: Object.keys(nightSchema.shape),
  evaluation: Object.keys(evaluationSchema.shape),
};

// ------------------------------------------------------------------ error wording

function describeType(input: unknown): string {
  if (input === null || input === undefined) return "nothing";
  if (Array.isArray(input)) return "a list";
  if (typeof input === "object") return "a mapping";
  if (typeof input === "string") return `the text ${JSON.stringify(input)}`;
  return `${typeof input} ${String(input)}`;
}

const EXPECTED: Record<string, string> = {
  string: "text",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
};

// The error map turns zod's issues into the short phrases people see after the field path.
// zod 4 hands raw issues (with the offending input) to this function.
function errorMap(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type": {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      return `must be ${expected}, got ${describeType(issue.input)}`;
    }
    case "too_small": {
      const min = issue.minimum as number;
      if (issue.origin === "array") return min === 1 ? "must list at least one entry" : `must list at least ${min} entries`;
      if (issue.origin === "string") return "must not be empty";
      return issue.inclusive === false ? `must be more than ${min}` : `must be at least ${min}`;
    }
    case "too_big": {
      const max = issue.maximum as number;
      return issue.inclusive === false ? `must be less than ${max}` : `must be at most ${max}`;
    }
    case "invalid_value":
      return `must be one of ${issue.values.map((v) => String(v)).join(", ")}, got ${describeType(issue.input)}`;
    case "invalid_format":
      return undefined;
    default:
      return undefined;
  }
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

function suggestKey(key: string, known: string[]): string | null {
  // camelCase spellings of snake_case keys are the most common slip.
  const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/-/g, "_");
  if (snake !== key && known.includes(snake)) return snake;
  let best: string | null = null;
  let bestDist = Infinity;
  for (const k of known) {
    const d = levenshtein(key.toLowerCase(), k);
    if (d < bestDist) {
      bestDist = d;
      best = k;
    }
  }
  return best !== null && bestDist <= Math.max(2, Math.floor(best.length / 3)) ? best : null;
}

function joinPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? String(p) : `.${String(p)}`;
  }
  return out;
}

// Matches `api_key`, `openai_api_key`, `apiKey`, `token`, `github_token`, but not `max_tokens`.
const SECRET_KEY_RE = /(^|[_-])(api[_-]?key|secret|token|password)$/i;
const ENDPOINT_KEY_RE = /^(base[_-]?url|endpoint|api[_-]?base|url)$/i;

/**
 * Keys that must never be in a committed file get their own explanation instead of the generic
 * "unknown key": the file lives in git, so a secret there is already leaked.
 */
function forbiddenKeyErrors(value: unknown, path: PropertyKey[] = []): ConfigError[] {
  if (value === null || typeof value !== "object") return [];
  const errors: ConfigError[] = [];
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  for (const [key, child] of entries) {
    const here = [...path, key];
    if (typeof key === "string" && SECRET_KEY_RE.test(key)) {
      errors.push({
        path: joinPath(here),
        message:
          "secrets must not be stored in the repository; set OPENAI_API_KEY in the bot's environment instead (and revoke this key: it is in the git history)",
      });
    } else if (typeof key === "string" && ENDPOINT_KEY_RE.test(key)) {
      errors.push({
        path: joinPath(here),
        message: "the LLM endpoint is not set in this file; set OPENAI_BASE_URL in the bot's environment instead",
      });
    } else {
      errors.push(...forbiddenKeyErrors(child, here));
    }
  }
  return errors;
}

function zodErrors(error: z.ZodError, forbidden: Set<string>): ConfigError[] {
  const out: ConfigError[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      const section = joinPath(issue.path);
      const known = KNOWN_KEYS[section] ?? [];
      for (const key of issue.keys) {
        const path = joinPath([...issue.path, key]);
        if (forbidden.has(path)) continue;
        const hint = suggestKey(key, known);
        out.push({
          path,
          message: hint ? `unknown key (did you mean ${hint}?)` : `unknown key; known keys here: ${known.join(", ")}`,
        });
      }
      continue;
    }
    out.push({ path: joinPath(issue.path), message: issue.message });
  }
  return out;
}

// ------------------------------------------------------------------ parsing

function toConfig(f: FileConfig, env: ConfigEnv): Config {
  const hasKey = typeof env.OPENAI_API_KEY === "string" && env.OPENAI_API_KEY.trim() !== "";
  return {
    enabled: f.enabled,
    program: f.program,
    // Copies, so that a caller changing its config never changes the shared defaults.
    editable: [...f.editable],
    workdir: f.workdir,
    trainCommand: f.train_command,
    prepareCommand: f.prepare_command,
    prepareFiles: [...f.prepare_files],
    budgetSeconds: f.budget_seconds,
    evalAllowanceSeconds: f.eval_allowance_seconds,
    timeoutSeconds: f.timeout_seconds ?? defaultTimeoutSeconds(f.budget_seconds),
    slots: f.slots,
    queueAhead: f.queue_ahead,
    proposer: {
      kind: f.proposer.kind ?? (hasKey ? "openai" : "mutate"),
      model: f.proposer.model,
      temperature: f.proposer.temperature,
      maxAttempts: f.proposer.max_attempts,
      askAhead: f.proposer.ask_ahead,
    },
    minDelta: f.min_delta,
    noise: {
      baselineRuns: f.noise.baseline_runs,
      maxRuns: f.noise.max_runs,
      falseKeepRate: f.noise.false_keep_rate,
      rebaselineEvery: f.noise.rebaseline_every,
      floor: f.noise.floor,
    },
    night: f.night
      ? { window: f.night.window, timezone: f.night.timezone, maxExperiments: f.night.max_experiments }
      : null,
    runner: f.runner,
    evaluation: f.evaluation ? { scoreCommand: f.evaluation.score_command, serveCommand: f.evaluation.serve_command } : null,
  };
}

/** Rules that relate fields to each other (checked once each field is valid on its own). */
function crossFieldErrors(c: Config): ConfigError[] {
  const errors: ConfigError[] = [];
  if (c.timeoutSeconds < c.budgetSeconds) {
    errors.push({
      path: "timeout_seconds",
      message: `must be at least budget_seconds (${c.budgetSeconds}): the hard deadline cannot come before the budget ends`,
    });
  }
  const norm = (p: string) => p.replace(/^(\.\/)+/, "");
  const prepare = new Set(c.prepareFiles.map(norm));
  c.editable.forEach((p, i) => {
    if (prepare.has(norm(p))) {
      errors.push({
        path: `editable[${i}]`,
        message: `${p} is also in prepare_files; data preparation and evaluation must stay fixed so results stay comparable`,
      });
    }
  });
  const seen = new Set<string>();
  c.editable.forEach((p, i) => {
    if (seen.has(norm(p))) errors.push({ path: `editable[${i}]`, message: `${p} is listed twice` });
    seen.add(norm(p));
  });
  if (c.night?.window) {
    const w = parseWindow(c.night.window);
    if (w.start === w.end) {
      errors.push({ path: "night.window", message: "start and end must differ" });
    }
  }
  return errors;
}

/** The longest config file read: a settings file is a few hundred bytes; anything far larger is a mistake. */
export const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * The YAML text as data, or the syntax error at its line and column (js-yaml's mark, 0-based,
 * shown 1-based as editors do). The core schema: plain JSON-like values only, so that
 * `2026-03-01` stays text instead of becoming a date and no tag builds anything else.
 */
function parseYaml(text: string): { ok: true; data: unknown } | { ok: false; error: ConfigError } {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_CONFIG_BYTES) {
    return { ok: false, error: { path: "", message: `the file is ${bytes} bytes, more than the ${MAX_CONFIG_BYTES} a settings file may have` } };
  }
  try {
    return { ok: true, data: load(text, { schema: CORE_SCHEMA }) };
  } catch (err) {
    if (!(err instanceof YAMLException)) throw err;
    const where = err.mark ? `line ${err.mark.line + 1}, column ${err.mark.column + 1}` : "";
    return { ok: false, error: { path: where, message: `YAML syntax error: ${err.reason}` } };
  }
}

/**
 * Parse the text of `.github/autoresearch.yml`. `null` or an empty file means all defaults.
 * `env` only decides the default proposer (openai when OPENAI_API_KEY is set); the endpoint and
 * key themselves are never read from the file.
 */
export function parseConfig(text: string | null, env: ConfigEnv = {}): ParseConfigResult {
  let data: unknown = {};
  if (text !== null && text.trim() !== "") {
    const read = parseYaml(text);
    if (!read.ok) return { ok: false, errors: [read.error] };
    data = read.data ?? {};
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return {
      ok: false,
      errors: [{ path: "", message: `the file must be a mapping of settings (key: value), got ${describeType(data)}` }],
    };
  }
  const forbidden = forbiddenKeyErrors(data);
  const parsed = fileSchema.safeParse(data, { error: errorMap });
  const errors = [...forbidden];
  if (!parsed.success) {
    errors.push(...zodErrors(parsed.error, new Set(forbidden.map((e) => e.path))));
    return { ok: false, errors };
  }
  const config = toConfig(parsed.data, env);
  errors.push(...crossFieldErrors(config));
  return errors.length > 0 ? { ok: false, errors } : { ok: true, config };
}

// ------------------------------------------------------------------ layered files

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Configuration layers merged as a team expects of defaults: later layers (the repository's own
 * file comes last) win key by key, down into sections, so an organisation's `proposer.kind` and
 * a repository's `proposer.model` both hold; lists and values are replaced whole. A layer that
 * is not a mapping is returned as it is, so that parseConfig says what is wrong with it.
 */
export function mergeConfigLayers(layers: unknown[]): unknown {
  const odd = [...layers].reverse().find((l) => !isPlainObject(l));
  if (odd !== undefined) return odd;
  const merge = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...a };
    for (const [k, v] of Object.entries(b)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? merge(out[k], v) : v;
    return out;
  };
  return (layers as Record<string, unknown>[]).reduce(merge, {});
}

/** Merged settings as YAML text again: parseConfig reads it like a file written by hand. */
export function configText(data: unknown): string {
  return dump(data, { schema: CORE_SCHEMA, lineWidth: -1, noRefs: true });
}

/** One line per error: `path: message` (the form shown in check runs and logs). */
export function formatConfigErrors(errors: ConfigError[]): string {
  return errors.map((e) => (e.path ? `${e.path}: ${e.message}` : e.message)).join("\n");
}

// ------------------------------------------------------------------ the nightly window

/** Minutes after local midnight of the window's start and end. */
export function parseWindow(window: string): { start: number; end: number } {
  const m = WINDOW_RE.exec(window);
  if (!m) throw new Error(`night.window ${JSON.stringify(window)} must look like "HH:MM-HH:MM"`);
  return { start: Number(m[1]) * 60 + Number(m[2]), end: Number(m[3]) * 60 + Number(m[4]) };
}

/** The wall-clock date and time of `date` in `timeZone`. */
function localTime(date: Date, timeZone: string): { y: number; m: number; d: number; minutes: number } {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(date);
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
  return { y: get("year"), m: get("month"), d: get("day"), minutes: get("hour") * 60 + get("minute") };
}

/**
 * A window that opens at `date`'s minute in `timeZone` and closes a minute before the same time
 * the next day: a night that starts now, so that everything started in the next 23 h 59 min
 * counts in one night (max_experiments) even across midnight. `timeZone` is a config's
 * `night.timezone` as read: anything but a known zone (absent, not a string) counts as UTC.
 */
export function windowFrom(date: Date, timeZone: unknown): string {
  const { minutes } = localTime(date, typeof timeZone === "string" && isTimeZone(timeZone) ? timeZone : "UTC");
  const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
  return `${hhmm(minutes)}-${hhmm((minutes + 1439) % 1440)}`;
}

/**
 * Whether experiments may start at `date`. Without a `night` section the bot works around the
 * clock. The start minute is inside the window, the end minute is not.
 */
export function inWindow(config: Pick<Config, "night">, date: Date): boolean {
  if (!config.night?.window) return true;
  const { start, end } = parseWindow(config.night.window);
  const { minutes } = localTime(date, config.night.timezone);
  return start < end ? minutes >= start && minutes < end : minutes >= start || minutes < end;
}

/**
 * The night `date` belongs to, as the local date (YYYY-MM-DD) on which that night's window
 * started: 02:00 in a "22:00-07:00" window belongs to the previous evening's date. Outside the
 * window it is the most recent night that started. Used to count experiments per night; without
 * a `night` section it is the UTC date.
 */
export function nightKey(config: Pick<Config, "night">, date: Date): string {
  const tz = config.night?.timezone ?? "UTC";
  const { y, m, d, minutes } = localTime(date, tz);
  let day = new Date(Date.UTC(y, m - 1, d));
  if (config.night?.window && minutes < parseWindow(config.night.window).start) {
    day = new Date(Date.UTC(y, m - 1, d - 1));
  }
  return day.toISOString().slice(0, 10);
}

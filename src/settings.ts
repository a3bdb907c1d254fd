// The bot's settings: every environment variable it reads, parsed once at start by one zod
// schema into a typed object that the rest of the code receives. `npm start` refuses to start on
// a bad value and `npm run doctor` reports the same problems, both from this schema.
//
// The environment is written by people (.env files, Kubernetes manifests, shell exports), so:
//
//   - an empty value is the same as no value: `AUTORESEARCH_SLOTS=` in a .env means "the
//     default", never 0 or NaN (Number("") is 0, and a NaN or 0 delay makes a timer fire after
//     1 ms: a resync loop that hammers GitHub);
//   - surrounding whitespace is dropped (a value pasted with a trailing newline);
//   - every number has bounds a working setup stays within;
//   - a problem names the variable, its value (a secret's only by its length), what is allowed
//     and an example, and all problems are reported at once rather than one per restart.
//
// Variables only Probot reads (APP_ID, PRIVATE_KEY, WEBHOOK_SECRET, HOST, PORT, LOG_LEVEL …) are
// checked by the doctor's credential checks or by Probot itself; variables only the demo,
// benchmarks or the results command read are theirs.
import { z } from "zod";
import { GITHUB_WRITE_LIMITS, type WriteLimits } from "./github/budget.js";

export type Env = Record<string, string | undefined>;

export type RunnerKind = "local" | "kubernetes";

export type RunnerSettings =
  | {
      kind: "local";
      /** Runs in flight at once, all repositories together. */
      slots: number;
      runsDir: string;
      /** null: $XDG_CACHE_HOME/autoresearch-bot (the runner's default). */
      cacheDir: string | null;
      /** null: the first Python that imports torch (the runner looks). */
      python: string | null;
      sandbox: "bwrap" | "off";
      prepareNetwork: boolean;
      /** Absolute folders the sandboxed commands may also read. */
      sandboxReadOnly: string[];
      /** The GPUs the runs share out, one set per slot: "auto" (found), or these ids ([]: none). */
      gpus: "auto" | string[];
    }
  | {
      kind: "kubernetes";
      slots: number;
      /** A file, or a folder with job.yaml and per-repository overrides. */
      jobTemplate: string;
      /** null: the pod's own namespace in a cluster, else the kubeconfig context's. */
      namespace: string | null;
      /** null: the runner's default (900 s). */
      pendingTimeoutSeconds: number | null;
    };

export interface Settings {
  runner: RunnerSettings;
  /** Who of several bot processes runs the passes (src/leader/). */
  leader: { kind: "lease" | "lockfile" | "off"; /** The lock file (lockfile only). */ lockFile: string };
  /** The period of the full resync. */
  resyncSeconds: number;
  /** The write budget of each installation. */
  writes: WriteLimits;
  /** Experiment commits and branch deletions: by `git push` (not API requests), or through the REST API. */
  commits: "git" | "api";
  /** null: asked of GitHub. */
  appSlug: string | null;
  openai: {
    /** null: no LLM; the mutate proposer is the default and questions go unanswered. */
    apiKey: string | null;
    /** null: api.openai.com. */
    baseURL: string | null;
    /** The model that answers questions that mention the app. */
    answerModel: string;
  };
  /** The GitHub API the doctor checks the key against; null: GHE_HOST, else api.github.com. */
  githubApiUrl: string | null;
}

// ------------------------------------------------------------------ what each variable accepts

interface Variable {
  /** The value type, after blanks became undefined and whitespace was trimmed. */
  schema: z.ZodType;
  /** What is allowed, as a sentence fragment after "must be". */
  allowed: string;
  /** A value that works, for the message. */
  example: string;
  /** Never echoed: the message says only how long it is. */
  secret?: boolean;
}

/** The longest timer Node keeps is about 24.8 days; a day is already far beyond a useful period. */
const DAY_SECONDS = 86_400;

function wholeNumber(min: number, max: number): z.ZodType<number> {
  return z
    .string()
    .regex(/^\d+$/)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
}

function oneOf<const T extends string>(values: readonly T[], aliases: Record<string, T> = {}): z.ZodType<T> {
  return z
    .string()
    .transform((v) => v.toLowerCase())
    .transform((v) => aliases[v] ?? v)
    .pipe(z.enum(values as [T, ...T[]]));
}

/** A file or folder name: no control characters (a NUL ends the path in the kernel), bounded. */
const pathValue = z
  .string()
  .max(4096)
  .refine((v) => ![...v].some((c) => c.charCodeAt(0) < 0x20));

const httpUrl = z
  .string()
  .max(2048)
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
    } catch {
      return false;
    }
  });

/** Printable ASCII without spaces: what an HTTP header carries (a key with a newline breaks every request). */
const token = z.string().max(4096).regex(/^[\x21-\x7e]+$/);

export const VARIABLES = {
  AUTORESEARCH_RUNNER: { schema: oneOf(["local", "kubernetes"]), allowed: "local (the default) or kubernetes", example: "kubernetes" },
  AUTORESEARCH_LEADER: {
    schema: oneOf(["lease", "lockfile", "off"]),
    allowed: "lease (a Kubernetes Lease; the default with the Kubernetes runner), lockfile (the default with the local runner) or off (one bot only)",
    example: "lockfile",
  },
  AUTORESEARCH_LEADER_LOCK: { schema: pathValue, allowed: "the path of the leader lock file", example: "/var/lib/autoresearch/leader.lock" },
  AUTORESEARCH_SLOTS: { schema: wholeNumber(1, 1000), allowed: "a whole number of runs from 1 to 1000", example: "4" },
  AUTORESEARCH_RESYNC_SECONDS: {
    schema: wholeNumber(10, DAY_SECONDS),
    allowed: `a whole number of seconds from 10 to ${DAY_SECONDS}, a day`,
    example: "300",
  },
  AUTORESEARCH_WRITES_PER_MINUTE: { schema: wholeNumber(1, 10_000), allowed: "a whole number of writes from 1 to 10000", example: "80" },
  AUTORESEARCH_WRITES_PER_HOUR: { schema: wholeNumber(1, 100_000), allowed: "a whole number of writes from 1 to 100000", example: "500" },
  AUTORESEARCH_GIT_PUSH: {
    schema: oneOf(["on", "off"]),
    allowed: "on (the default: experiment commits and branch deletions go by git push) or off (through the REST API)",
    example: "off",
  },
  AUTORESEARCH_RUNS_DIR: { schema: pathValue, allowed: "a folder (at most 4096 characters, no control characters)", example: "/srv/autoresearch/runs" },
  AUTORESEARCH_CACHE_DIR: { schema: pathValue, allowed: "a folder (at most 4096 characters, no control characters)", example: "/srv/autoresearch/cache" },
  AUTORESEARCH_PYTHON: { schema: pathValue, allowed: "a Python interpreter: a command on PATH or a path", example: "/opt/venv/bin/python" },
  AUTORESEARCH_SANDBOX: { schema: oneOf(["bwrap", "off"], { on: "bwrap" }), allowed: "bwrap (the default) or off", example: "bwrap" },
  AUTORESEARCH_SANDBOX_READONLY: {
    schema: z
      .string()
      .max(16_384)
      .transform((v) => v.split(":").filter(Boolean))
      .pipe(z.array(pathValue.refine((p) => p.startsWith("/"))).max(64)),
    allowed: "absolute folders separated by \":\" (at most 64)",
    example: "/opt/datasets:/srv/models",
  },
  AUTORESEARCH_GPUS: {
    schema: z
      .string()
      .max(4096)
      .transform((v): "auto" | string[] => {
        const t = v.trim();
        if (t.toLowerCase() === "auto") return "auto";
        if (t.toLowerCase() === "none") return [];
        return t.split(",").map((id) => id.trim());
      })
      .pipe(z.union([z.literal("auto"), z.array(z.string().regex(/^(?:\d{1,3}|(?:GPU|MIG)-[0-9a-f-]{8,80})$/i)).max(64)])),
    allowed: "auto (the default: CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists), none, or GPU indices or UUIDs separated by commas",
    example: "0,1,2,3",
  },
  AUTORESEARCH_PREPARE_NETWORK: { schema: oneOf(["on", "off"]), allowed: "on (the default) or off", example: "off" },
  AUTORESEARCH_JOB_TEMPLATE: { schema: pathValue, allowed: "a Job template file, or a folder with job.yaml", example: "k8s/job.yaml" },
  AUTORESEARCH_NAMESPACE: {
    schema: z.string().max(63).regex(/^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/),
    allowed: "a Kubernetes namespace name: lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit",
    example: "autoresearch",
  },
  AUTORESEARCH_PENDING_TIMEOUT_SECONDS: {
    schema: wholeNumber(30, DAY_SECONDS),
    allowed: `a whole number of seconds from 30 to ${DAY_SECONDS}, a day`,
    example: "900",
  },
  AUTORESEARCH_APP_SLUG: {
    schema: z.string().max(100).regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/),
    allowed: "the app's slug as in its URL (github.com/apps/<slug>): lowercase letters, digits and '-'",
    example: "autoresearch-bot",
  },
  AUTORESEARCH_ANSWER_MODEL: { schema: z.string().max(200).regex(/^[\x21-\x7e]+$/), allowed: "a model name, without spaces", example: "gpt-4o-mini" },
  OPENAI_API_KEY: { schema: token, allowed: "one word of printable characters without spaces", example: "sk-…", secret: true },
  OPENAI_BASE_URL: { schema: httpUrl, allowed: "an http:// or https:// URL", example: "http://gpu-box:8000/v1" },
  GITHUB_API_URL: { schema: httpUrl, allowed: "an http:// or https:// URL", example: "https://github.example.com/api/v3" },
} satisfies Record<string, Variable>;

export type VariableName = keyof typeof VARIABLES;

/** Blank is unset; anything else loses its surrounding whitespace. */
function unsetIfBlank(v: unknown): unknown {
  if (typeof v !== "string") return v;
  const t = v.trim();
  return t === "" ? undefined : t;
}

type Parsed = { [K in VariableName]: z.output<(typeof VARIABLES)[K]["schema"]> | undefined };

const envSchema = z.object(
  Object.fromEntries(
    Object.entries(VARIABLES).map(([name, v]) => [name, z.preprocess(unsetIfBlank, (v.schema as z.ZodType).optional())]),
  ) as unknown as { [K in VariableName]: z.ZodType<Parsed[K]> },
);

/** The one schema: the variables in, the settings out. */
export const settingsSchema = envSchema.transform((e): Settings => {
  const kind = e.AUTORESEARCH_RUNNER ?? "local";
  const runner: RunnerSettings =
    kind === "local"
      ? {
          kind,
          slots: e.AUTORESEARCH_SLOTS ?? 1,
          runsDir: e.AUTORESEARCH_RUNS_DIR ?? ".runs",
          cacheDir: e.AUTORESEARCH_CACHE_DIR ?? null,
          python: e.AUTORESEARCH_PYTHON ?? null,
          sandbox: e.AUTORESEARCH_SANDBOX ?? "bwrap",
          prepareNetwork: (e.AUTORESEARCH_PREPARE_NETWORK ?? "on") === "on",
          sandboxReadOnly: e.AUTORESEARCH_SANDBOX_READONLY ?? [],
          gpus: e.AUTORESEARCH_GPUS ?? "auto",
        }
      : {
          kind,
          slots: e.AUTORESEARCH_SLOTS ?? 8,
          jobTemplate: e.AUTORESEARCH_JOB_TEMPLATE ?? "k8s/job.yaml",
          namespace: e.AUTORESEARCH_NAMESPACE ?? null,
          pendingTimeoutSeconds: e.AUTORESEARCH_PENDING_TIMEOUT_SECONDS ?? null,
        };
  return {
    runner,
    leader: {
      kind: e.AUTORESEARCH_LEADER ?? (kind === "kubernetes" ? "lease" : "lockfile"),
      lockFile: e.AUTORESEARCH_LEADER_LOCK ?? `${(e.AUTORESEARCH_RUNS_DIR ?? ".runs").replace(/\/+$/, "")}/leader.lock`,
    },
    resyncSeconds: e.AUTORESEARCH_RESYNC_SECONDS ?? 300,
    writes: {
      perMinute: e.AUTORESEARCH_WRITES_PER_MINUTE ?? GITHUB_WRITE_LIMITS.perMinute,
      perHour: e.AUTORESEARCH_WRITES_PER_HOUR ?? GITHUB_WRITE_LIMITS.perHour,
    },
    commits: (e.AUTORESEARCH_GIT_PUSH ?? "on") === "on" ? "git" : "api",
    appSlug: e.AUTORESEARCH_APP_SLUG ?? null,
    openai: {
      apiKey: e.OPENAI_API_KEY ?? null,
      baseURL: e.OPENAI_BASE_URL ?? null,
      answerModel: e.AUTORESEARCH_ANSWER_MODEL ?? "gpt-4o-mini",
    },
    githubApiUrl: e.GITHUB_API_URL?.replace(/\/+$/, "") ?? null,
  };
});

// ------------------------------------------------------------------ problems

export interface SettingProblem {
  variable: VariableName;
  /** The value as given, or `<secret, N characters>`. */
  shown: string;
  allowed: string;
  example: string;
}

/** Longer values are cut: the message is a log line, not a dump of whatever was pasted. */
const SHOWN_CHARS = 80;

function shownValue(name: VariableName, raw: string | undefined): string {
  const v = raw ?? "";
  if ((VARIABLES[name] as Variable).secret) return `<secret, ${v.length} characters>`;
  return JSON.stringify(v.length > SHOWN_CHARS ? `${v.slice(0, SHOWN_CHARS)}…` : v);
}

function problemOf(name: VariableName, env: Env): SettingProblem {
  return { variable: name, shown: shownValue(name, env[name]), allowed: VARIABLES[name].allowed, example: VARIABLES[name].example };
}

export function describeProblem(p: SettingProblem): string {
  return `${p.variable} is ${p.shown}: it must be ${p.allowed} (for example ${p.variable}=${p.example})`;
}

/** Every bad variable of `env`, in the order of the table: one message for them all. */
export class SettingsError extends Error {
  constructor(readonly problems: SettingProblem[]) {
    super(
      `${problems.length} environment variable${problems.length === 1 ? " is" : "s are"} not usable: ` +
        `${problems.map(describeProblem).join("; ")}. Correct or unset ${problems.length === 1 ? "it" : "them"} ` +
        "(an empty value means the default; README: \"Environment variables\")",
    );
    this.name = "SettingsError";
  }
}

export type SettingsResult = { ok: true; settings: Settings } | { ok: false; error: SettingsError };

export function readSettings(env: Env): SettingsResult {
  const picked: Env = {};
  for (const name of Object.keys(VARIABLES)) picked[name] = env[name];
  const parsed = settingsSchema.safeParse(picked);
  if (parsed.success) return { ok: true, settings: parsed.data };
  const bad = new Set(parsed.error.issues.map((i) => i.path[0]).filter((p): p is VariableName => typeof p === "string" && p in VARIABLES));
  const problems = (Object.keys(VARIABLES) as VariableName[]).filter((name) => bad.has(name)).map((name) => problemOf(name, env));
  return { ok: false, error: new SettingsError(problems) };
}

/**
 * One variable through its part of the schema (for the doctor's checks of one thing): its value,
 * undefined when unset or blank, or the problem with it.
 */
export function readVariable<K extends VariableName>(env: Env, name: K): { ok: true; value: Parsed[K] } | { ok: false; problem: SettingProblem } {
  const parsed = (envSchema.shape[name] as z.ZodType<Parsed[K]>).safeParse(env[name]);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, problem: problemOf(name, env) };
}

/** The settings of `env`; throws a SettingsError naming every bad variable. */
export function settingsFrom(env: Env): Settings {
  const r = readSettings(env);
  if (!r.ok) throw r.error;
  return r.settings;
}

/**
 * The OpenAI variables by name, for the modules that take them that way (the config's default
 * proposer, the answerer of questions): the validated values, never the raw environment.
 */
export function openaiEnv(settings: Settings): Env {
  return { OPENAI_API_KEY: settings.openai.apiKey ?? undefined, OPENAI_BASE_URL: settings.openai.baseURL ?? undefined };
}

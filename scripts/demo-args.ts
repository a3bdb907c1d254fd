// The demo's command line: parsing and validating every flag before anything starts, the
// proposals file of --proposals, and the `.github/autoresearch.yml` the demo's repository gets.
// Pure functions (apart from checking that named paths exist), so that they can be tested
// without running a night.
//
// Flags that stand for config fields are checked by building a config object from them and
// parsing it with the bot's own parser (src/config.ts): `--budget 5` is refused with the same
// limits and wording as `budget_seconds: 5` in a repository's file.
import { statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { Document, isMap, parseDocument } from "yaml";
import { z } from "zod";
import { CONFIG_PATH, parseConfig, windowFrom, type Config, type ConfigError } from "../src/config.js";
import { proposalReplySchema } from "../src/proposers/openai.js";

export const USAGE = `usage: npm run demo -- [--repo DIR] [--proposals FILE] [--experiments N] [--budget SECONDS]
                       [--min-delta X] [--runner local|kubernetes] [--slots N] [--model-latency S]
                       [--json FILE] [--keep]

  Runs a miniature autoresearch night on this machine, offline: a baseline and then N
  experiments, each trained for the budget, on the template in trainer/ or on your own project.

  --repo DIR        run on the research project in DIR instead of the template: its last commit
                    (HEAD) when DIR is a git repository, else every file in it except .git,
                    node_modules and __pycache__ (at most 2000 files and 100 MiB). DIR needs its
                    program.md and train.py, or a .github/autoresearch.yml naming its program and
                    editable files; that file is used with the flags given here overriding its
                    fields. DIR itself is never changed.
  --proposals FILE  replay the proposals in FILE, in order, instead of asking a model: a JSON array
                    of {"title", "hypothesis", "edits": [{"path", "search", "replace"}]}. They go
                    through the OpenAI-compatible proposer, answered by a local twin of the API;
                    when the list is used up, the night ends.
  --model-latency S proposals come from a stand-in for a model that answers after S seconds (0 to
                    600) with the built-in proposer's changes, through the OpenAI-compatible
                    proposer: the bot asks it for the next proposal while the runs train
                    (proposer.ask_ahead), and the summary gives how long slots sat idle between
                    runs. Not with --proposals.
  --experiments N   experiments after the baseline (default 4; the config's night.max_experiments
                    becomes N + 1)
  --budget S        training seconds per experiment, 10 to 86400 (default 20)
  --min-delta X     smallest val_bpb improvement that is kept, 0 to 1, or auto (default auto: from
                    the noise the night measures; the baseline runs 3 times and a promising
                    change is confirmed before it is merged)
  --runner R        local (default): the local runner; kubernetes: Jobs through the
                    Kubernetes runner and a local Kubernetes twin whose kubelet runs them here
  --slots N         experiments in flight at once, 1 to 64 (default 1)
  --json FILE       also write the morning summary as JSON: a row per experiment (n, pr, kind,
                    title, hypothesis, valBpb, runs, delta, decision, state, merged, reason, and
                    flags: the review rules its change matched, [] when none; a matched change
                    that is better is held for a person, not merged) and the night's totals
  --keep            keep the temporary folder (runs, logs) and print where it is
  -h, --help        show this text

  With --repo and a .github/autoresearch.yml, --budget, --min-delta, --runner and --slots
  override its fields only when given (its own values stand otherwise); the defaults above
  are for the template and for a project without that file.
  With OPENAI_API_KEY (and OPENAI_BASE_URL) set and no --proposals, proposals come from that
  endpoint. Exit status: 0 when the night ran, 1 when it failed (e.g. a configuration error
  the bot reported), 2 for a bad flag or input.`;

/** A failure the demo reports as one message (no stack trace), with the exit status to use. */
export class DemoError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    /** Print the usage after the message (a mistake on the command line). */
    readonly showUsage = false,
  ) {
    super(message);
    this.name = "DemoError";
  }
}

/** What the demo prints to stderr for an error. */
export function errorText(err: DemoError): string {
  return err.showUsage ? `${err.message}\n\n${USAGE}` : err.message;
}

export interface DemoArgs {
  help: boolean;
  experiments: number;
  /** The values of flags that stand for config fields; null where the flag was not given. */
  budget: number | null;
  minDelta: number | "auto" | null;
  runner: "local" | "kubernetes" | null;
  slots: number | null;
  json: string | null;
  keep: boolean;
  repo: string | null;
  proposals: string | null;
  /** Seconds the model double takes to answer (--model-latency), or null: no model double. */
  modelLatency: number | null;
}

/** The values the demo uses where a flag is not given (and, with --repo, its config file does not say). */
export const DEMO_DEFAULTS = { experiments: 4, budget: 20, minDelta: "auto", runner: "local", slots: 1 } as const;

const OPTIONS = {
  experiments: { type: "string" },
  budget: { type: "string" },
  "min-delta": { type: "string" },
  runner: { type: "string" },
  slots: { type: "string" },
  json: { type: "string" },
  keep: { type: "boolean" },
  repo: { type: "string" },
  proposals: { type: "string" },
  "model-latency": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const usageError = (message: string) => new DemoError(message, 2, true);

/** `--min_delta` → `--min-delta`: the closest known flag, for the error message. */
function suggestFlag(option: string): string | null {
  const name = option.replace(/^-+/, "").split("=")[0]!.toLowerCase().replace(/_/g, "-");
  const known = Object.keys(OPTIONS);
  if (known.includes(name)) return `--${name}`;
  const prefixed = known.filter((k) => k.startsWith(name) || name.startsWith(k));
  return prefixed.length === 1 ? `--${prefixed[0]}` : null;
}

/** A flag's text as a number when it is written as one; anything else stays text for the schema to refuse. */
function numberOrText(value: string): number | string {
  const t = value.trim();
  return /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : value;
}

/** Which flag a config field comes from. */
const FLAG_OF_FIELD: Record<string, string> = {
  budget_seconds: "--budget",
  min_delta: "--min-delta",
  runner: "--runner",
  slots: "--slots",
  "night.max_experiments": "--experiments",
};

function checkPathFlag(flag: string, value: string, want: "file" | "directory" | "output"): void {
  if (value.trim() === "") throw usageError(`${flag} needs a path, got an empty one`);
  if (want === "output") {
    // Checked now rather than after a night's work: the summary is written at the very end.
    const dir = path.dirname(path.resolve(value));
    const parent = statSync(dir, { throwIfNoEntry: false });
    if (!parent?.isDirectory()) throw usageError(`${flag} ${value}: the folder ${dir} does not exist`);
    if (statSync(value, { throwIfNoEntry: false })?.isDirectory()) throw usageError(`${flag} ${value}: is a folder, not a file`);
    return;
  }
  const st = statSync(value, { throwIfNoEntry: false });
  if (!st) throw usageError(`${flag} ${value}: no such ${want === "directory" ? "folder" : "file"}`);
  if (want === "file" && !st.isFile()) throw usageError(`${flag} ${value}: not a file`);
  if (want === "directory" && !st.isDirectory()) throw usageError(`${flag} ${value}: not a folder`);
}

function parseFlags(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    // node:util throws TypeErrors with an ERR_PARSE_ARGS_* code for unknown options, missing
    // values and stray arguments; their messages name the option.
    const e = err as NodeJS.ErrnoException;
    if (!e.code?.startsWith("ERR_PARSE_ARGS_")) throw err;
    const unknown = /^Unknown option '([^']+)'/.exec(e.message)?.[1];
    const hint = unknown ? suggestFlag(unknown) : null;
    throw usageError(hint && hint !== unknown ? `${e.message.split("\n")[0]} (did you mean ${hint}?)` : e.message);
  }
}

/**
 * Parse and validate the demo's command line. Throws a DemoError (exit status 2, with the
 * usage) naming the flag and the reason for an unknown flag, a missing value or a bad value.
 */
export function parseDemoArgs(argv: string[]): DemoArgs {
  const values = parseFlags(argv);
  const args: DemoArgs = {
    help: values.help ?? false,
    experiments: DEMO_DEFAULTS.experiments,
    budget: null,
    minDelta: null,
    runner: null,
    slots: null,
    json: values.json ?? null,
    keep: values.keep ?? false,
    repo: values.repo ?? null,
    proposals: values.proposals ?? null,
    modelLatency: null,
  };
  if (args.help) return args;
  if (values["model-latency"] !== undefined) {
    const s = numberOrText(values["model-latency"]);
    if (typeof s !== "number" || !Number.isFinite(s) || s < 0 || s > 600) {
      throw usageError(`--model-latency ${values["model-latency"]}: must be a number of seconds from 0 to 600`);
    }
    if (values.proposals !== undefined) throw usageError("--model-latency and --proposals cannot be used together: proposals come from one or the other");
    args.modelLatency = s;
  }

  if (values.experiments !== undefined) {
    const n = numberOrText(values.experiments);
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) {
      throw usageError(`--experiments ${values.experiments}: must be a whole number of at least 1`);
    }
    args.experiments = n;
  }
  // The flags that are config fields, as the config file would hold them.
  const fields: Record<string, unknown> = { night: { max_experiments: args.experiments + 1 } };
  const given: Record<string, string> = { "night.max_experiments": String(args.experiments) };
  const field = (name: string, raw: string | undefined, value: (s: string) => unknown) => {
    if (raw === undefined) return;
    fields[name] = value(raw);
    given[name] = raw;
  };
  field("budget_seconds", values.budget, numberOrText);
  field("min_delta", values["min-delta"], (s) => (s.trim() === "auto" ? "auto" : numberOrText(s)));
  field("slots", values.slots, numberOrText);
  field("runner", values.runner, (s) => s.trim());
  const parsed = parseConfig(JSON.stringify(fields));
  if (!parsed.ok) {
    const lines = parsed.errors.map((e) => {
      const flag = FLAG_OF_FIELD[e.path];
      return flag ? `${flag} ${given[e.path]}: ${e.message}` : `${e.path}: ${e.message}`;
    });
    throw usageError(lines.join("\n"));
  }
  const c = parsed.config;
  if (values.budget !== undefined) args.budget = c.budgetSeconds;
  if (values["min-delta"] !== undefined) args.minDelta = c.minDelta;
  if (values.slots !== undefined) args.slots = c.slots;
  if (values.runner !== undefined) args.runner = c.runner;

  if (args.json !== null) checkPathFlag("--json", args.json, "output");
  if (args.repo !== null) checkPathFlag("--repo", args.repo, "directory");
  if (args.proposals !== null) checkPathFlag("--proposals", args.proposals, "file");
  return args;
}

// ---------------------------------------------------------------- the proposals file

/** One proposal of a --proposals file: what a model would have answered. */
export type ProposalEntry = z.infer<typeof proposalEntrySchema>;

// The proposer's own reply schema (title length, at least one edit), strict: an unknown key is
// a typo in a hand-written file, and silently dropping it would replay something else.
const proposalEntrySchema = z.strictObject({
  ...proposalReplySchema.shape,
  edits: z.array(z.strictObject(proposalReplySchema.shape.edits.element.shape)).min(1),
});

/** Most errors listed for one file: the first few say what is wrong. */
const MAX_LISTED_ERRORS = 10;

function describeValue(input: unknown): string {
  if (input === undefined) return "nothing";
  if (input === null) return "null";
  if (Array.isArray(input)) return "a list";
  if (typeof input === "object") return "an object";
  if (typeof input === "string") return `the text ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`;
  return `${typeof input} ${String(input)}`;
}

const EXPECTED: Record<string, string> = { string: "text", array: "a list", object: "an object", number: "a number" };

function entryIssue(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return `must be ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeValue(issue.input)}`;
    case "too_small":
      if (issue.origin === "array") return "must list at least one edit";
      if (issue.origin === "string") return "must not be empty";
      return undefined;
    case "too_big":
      return issue.origin === "string" ? `must be at most ${String(issue.maximum)} characters` : undefined;
    default:
      return undefined;
  }
}

function fieldPath(p: readonly PropertyKey[]): string {
  let out = "";
  for (const k of p) out += typeof k === "number" ? `[${k}]` : out === "" ? String(k) : `.${String(k)}`;
  return out;
}

/**
 * Parse the text of a --proposals file. Throws a DemoError (exit status 2) naming the file, the
 * proposal's index and the field for anything that is not a list of well-formed proposals.
 */
export function parseProposals(text: string, source: string): ProposalEntry[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new DemoError(`--proposals ${source}: not valid JSON: ${(err as Error).message}`, 2);
  }
  const shape = 'a JSON array of proposals, each {"title", "hypothesis", "edits": [{"path", "search", "replace"}]}';
  if (!Array.isArray(data)) throw new DemoError(`--proposals ${source}: must hold ${shape}, got ${describeValue(data)}`, 2);
  if (data.length === 0) throw new DemoError(`--proposals ${source}: the list is empty; it must hold ${shape}`, 2);
  const problems: string[] = [];
  const entries: ProposalEntry[] = [];
  data.forEach((item, i) => {
    const r = proposalEntrySchema.safeParse(item, { error: entryIssue });
    if (r.success) {
      entries.push(r.data);
      return;
    }
    for (const issue of r.error.issues) {
      if (issue.code === "unrecognized_keys") {
        const where = fieldPath(issue.path);
        const known = where === "" ? "title, hypothesis, edits" : "path, search, replace";
        for (const key of issue.keys) problems.push(`proposal [${i}], field ${where ? `${where}.` : ""}${key}: unknown key (expected ${known})`);
      } else {
        problems.push(`proposal [${i}], field ${fieldPath(issue.path) || "(the proposal)"}: ${issue.message}`);
      }
    }
  });
  if (problems.length) {
    const shown = problems.slice(0, MAX_LISTED_ERRORS);
    if (problems.length > shown.length) shown.push(`… and ${problems.length - shown.length} more`);
    throw new DemoError(`--proposals ${source} is invalid:\n  ${shown.join("\n  ")}`, 2);
  }
  return entries;
}

/** Every edit must name an editable file: the proposer would refuse it later, one request at a time. */
export function checkProposalPaths(entries: ProposalEntry[], editable: string[], source: string): void {
  const problems: string[] = [];
  entries.forEach((e, i) =>
    e.edits.forEach((edit, j) => {
      if (!editable.includes(edit.path)) {
        problems.push(`proposal [${i}], field edits[${j}].path: ${JSON.stringify(edit.path)} is not an editable file (editable: ${editable.join(", ")})`);
      }
    }),
  );
  if (problems.length) throw new DemoError(`--proposals ${source} is invalid:\n  ${problems.slice(0, MAX_LISTED_ERRORS).join("\n  ")}`, 2);
}

// ---------------------------------------------------------------- the repository's config

export interface DemoConfigInput {
  args: DemoArgs;
  /** The project's own `.github/autoresearch.yml`, or null: the demo writes one. */
  fileText: string | null;
  /** How the file is named in messages (e.g. `~/proj/.github/autoresearch.yml`). */
  fileLabel: string;
  /** Where train.py is when the demo writes the config: "trainer" for the template, "." for a project. */
  workdir: string;
  /** Whether prepare.py is next to train.py (without it, a written config prepares no data). */
  hasPrepare: boolean;
  /** Proposals come from a --proposals file through the OpenAI-compatible proposer. */
  replay: boolean;
  /** Proposals come from the model double (--model-latency) through the OpenAI-compatible proposer. */
  modelDouble?: boolean;
  /** The project follows the outside-evaluation contract (the template does): val_bpb is scored outside train.py. */
  outsideEvaluation?: boolean;
  /** The demo's environment: OPENAI_API_KEY picks the openai proposer, OPENAI_MODEL its model. */
  env: Record<string, string | undefined>;
  /** When the demo starts (default: now): its night's window opens then. */
  now?: Date;
}

/** The proposer model named in the records of a replayed night (the proposals come from a file, not a model). */
export const REPLAY_MODEL = "proposals-file";
/** The model named in the records of a night with the model double (--model-latency). */
export const DOUBLE_MODEL = "model-double";

function problemsOf(errors: ConfigError[]): string {
  return errors.map((e) => `  ${e.path ? `${e.path}: ` : ""}${e.message}`).join("\n");
}

/**
 * The text of the `.github/autoresearch.yml` the demo's repository gets, and the config the bot
 * will read from it. The project's own file keeps its settings (and comments) except where a
 * flag is given, `night.max_experiments` (the demo's length) and `night.window` (a night that
 * starts now: without it the night is the UTC date, and a demo running over midnight would
 * count its experiments in two nights and start more than it was asked for); without a file
 * the demo writes the same config as for the template. Throws a DemoError
 * (exit status 2) when the result is not a config the bot accepts.
 */
export function demoConfig(input: DemoConfigInput): { text: string; config: Config; notes: string[] } {
  const { args, env } = input;
  const notes: string[] = [];
  const maxExperiments = args.experiments + 1;
  const now = input.now ?? new Date();
  const twin = input.replay || Boolean(input.modelDouble);
  const useOpenAI = twin || Boolean(env.OPENAI_API_KEY?.trim());
  const model = input.replay ? REPLAY_MODEL : input.modelDouble ? DOUBLE_MODEL : env.OPENAI_MODEL?.trim() || null;
  let text: string;
  if (input.fileText === null) {
    text = [
      "# written by the demo",
      `workdir: ${input.workdir}`,
      "editable: [train.py]",
      // Without prepare.py there is nothing to prepare; the default would fail every run.
      ...(input.hasPrepare ? [] : ["prepare_command: null", "prepare_files: []"]),
      `runner: ${args.runner ?? DEMO_DEFAULTS.runner}`,
      `slots: ${args.slots ?? DEMO_DEFAULTS.slots}`,
      `budget_seconds: ${args.budget ?? DEMO_DEFAULTS.budget}`,
      `min_delta: ${args.minDelta ?? DEMO_DEFAULTS.minDelta}`,
      "proposer:",
      `  kind: ${useOpenAI ? "openai" : "mutate"}`,
      ...(model ? [`  model: ${JSON.stringify(model)}`] : []),
      // A listed proposal asked ahead and thrown away (the head moved) would be lost to the night.
      ...(input.replay ? ["  ask_ahead: false   # each listed proposal is used once, in order"] : []),
      "night:",
      `  max_experiments: ${maxExperiments}   # the baseline and ${args.experiments} experiments`,
      `  window: "${windowFrom(now, "UTC")}"   # UTC: the demo's night starts now and lasts a day`,
      ...(input.outsideEvaluation
        ? ["evaluation:   # val_bpb scored by the default branch's prepare.py, not by train.py", "  score_command: python3 prepare.py score", "  serve_command: python3 train.py serve"]
        : []),
      "",
    ].join("\n");
  } else {
    let doc: Document = parseDocument(input.fileText);
    if (doc.errors.length > 0 || !(doc.contents === null || isMap(doc.contents))) {
      // Not a mapping of settings: nothing to override; the bot's parser says what is wrong.
      const own = parseConfig(input.fileText, env);
      throw new DemoError(`${input.fileLabel} is invalid:\n${own.ok ? "  the file must be a mapping of settings" : problemsOf(own.errors)}`, 2);
    }
    // An empty (or comment-only) file: all defaults, and nothing of it to keep.
    if (doc.contents === null) doc = new Document({});
    const set = (keys: string[], value: unknown, why: string) => {
      doc.setIn(keys, value);
      notes.push(`${keys.join(".")}: ${JSON.stringify(value)} (${why})`);
    };
    if (args.budget !== null) set(["budget_seconds"], args.budget, "--budget");
    if (args.minDelta !== null) set(["min_delta"], args.minDelta, "--min-delta");
    if (args.slots !== null) set(["slots"], args.slots, "--slots");
    if (args.runner !== null) set(["runner"], args.runner, "--runner");
    if (doc.get("enabled") === false) set(["enabled"], true, "the demo runs the loop");
    if (input.replay) {
      set(["proposer", "kind"], "openai", "--proposals");
      set(["proposer", "model"], REPLAY_MODEL, "--proposals");
      set(["proposer", "ask_ahead"], false, "--proposals: each listed proposal is used once, in order");
    }
    if (input.modelDouble) {
      set(["proposer", "kind"], "openai", "--model-latency");
      set(["proposer", "model"], DOUBLE_MODEL, "--model-latency");
      set(["proposer", "ask_ahead"], true, "--model-latency");
    }
    // The demo's night: its length, and now rather than in the file's nightly window.
    if (!isMap(doc.get("night"))) doc.set("night", doc.createNode({}));
    set(["night", "max_experiments"], maxExperiments, args.experiments === DEMO_DEFAULTS.experiments ? "the demo's length" : "--experiments");
    set(["night", "window"], windowFrom(now, doc.getIn(["night", "timezone"])), "the demo's night starts now");
    text = doc.toString();
  }
  // The bot reads the file with this environment: openai proposals get the twin's key.
  const parsed = parseConfig(text, twin ? { ...env, OPENAI_API_KEY: "set" } : env);
  if (!parsed.ok) {
    const what =
      input.fileText === null
        ? `the demo's ${CONFIG_PATH}`
        : notes.length
          ? `${input.fileLabel}, with the demo's ${notes.join(", ")},`
          : input.fileLabel;
    throw new DemoError(`${what} is invalid:\n${problemsOf(parsed.errors)}`, 2);
  }
  if (parsed.config.proposer.kind === "openai" && !twin && !env.OPENAI_API_KEY?.trim()) {
    throw new DemoError(
      `${input.fileLabel} asks for proposer.kind: openai, but OPENAI_API_KEY is not set: set it (with OPENAI_BASE_URL for a ` +
        "compatible server), or replay proposals from a file with --proposals FILE",
      2,
    );
  }
  return { text, config: parsed.config, notes };
}

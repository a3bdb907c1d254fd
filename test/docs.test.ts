// The README states the bot's defaults and limits, the environment variables it reads, the
// commands it takes and the app's permissions and events. Each is compared here with the code
// (or app.yml) it describes, so that a change to one without the other fails.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { dump as toYaml, load as parseYaml } from "js-yaml";
import { HELP, parseCommand } from "../src/commands.js";
import { DEFAULT_CONFIG, formatConfigErrors, parseConfig, type Config, type ParseConfigResult } from "../src/config.js";
import { VARIABLES } from "../src/settings.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const README = readFileSync(path.join(ROOT, "README.md"), "utf8");

// ------------------------------------------------------------------ reading Markdown

/** The text of the README section whose `## ` heading starts with `heading`, up to the next `## `. */
function section(heading: string): string {
  const lines = README.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`## ${heading}`));
  if (start < 0) throw new Error(`README.md has no section "## ${heading}"`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith("## "));
  return lines.slice(start, end < 0 ? undefined : end).join("\n");
}

/** The fenced ```yaml block of `text` whose first line is `# <title>`. */
function yamlBlock(text: string, title: string): string {
  for (const m of text.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)) {
    if (m[1]!.split("\n")[0] === `# ${title}`) return m[1]!;
  }
  throw new Error(`README.md: no yaml block starting with "# ${title}"`);
}

/** The body rows (cells trimmed) of the Markdown table in `text` whose header row has exactly `header`. */
function table(text: string, header: string[]): string[][] {
  const cells = (line: string) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.trim().startsWith("|") && JSON.stringify(cells(l)) === JSON.stringify(header));
  if (at < 0) throw new Error(`no table with the header | ${header.join(" | ")} |`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.trim().startsWith("|")) break;
    rows.push(cells(line));
  }
  return rows;
}

/** The `code` spans of a table cell. */
function codeSpans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}

// ------------------------------------------------------------------ configuration

const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camel = (key: string) => key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function configOf(result: ParseConfigResult): Config {
  if (!result.ok) throw new Error(`the config does not parse:\n${formatConfigErrors(result.errors)}`);
  return result.config;
}

/** The value at a dotted file path (`noise.floor`) of a parsed config. */
function valueAt(config: Config, field: string): unknown {
  let v: unknown = config;
  for (const part of field.split(".")) v = (v as Record<string, unknown> | null)?.[camel(part)];
  return v;
}

/** A config file setting only `field` (dotted) to `value`, plus `extra` top-level keys. */
function fileWith(field: string, value: unknown, extra: Record<string, unknown> = {}): string {
  const doc: Record<string, unknown> = { ...extra };
  const parts = field.split(".");
  let at = doc;
  for (const part of parts.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>;
  at[parts[parts.length - 1]!] = value;
  return toYaml(doc);
}

describe("README: the configuration", () => {
  const text = section("Configuration");
  const defaults = yamlBlock(text, "the defaults");
  const night = yamlBlock(text, "a typical night");
  const limits = table(text, ["field", "accepted", "when unset"]);
  const limitOf = new Map(
    limits.map((row) => {
      const [field] = codeSpans(row[0]!);
      return [field!, row] as const;
    }),
  );
  const typical = () => configOf(parseConfig(night, {}));

  // Every field of the file, dotted: the leaves, and the sections that may be null (night and
  // evaluation are mappings or null). Taken from the typical night, where both are set.
  const fields = () =>
    Object.entries(typical()).flatMap(([key, value]) => {
      if (value === null || typeof value !== "object" || Array.isArray(value)) return [snake(key)];
      const children = Object.keys(value).map((k) => `${snake(key)}.${snake(k)}`);
      return (DEFAULT_CONFIG as unknown as Record<string, unknown>)[key] === null ? [snake(key), ...children] : children;
    });

  it("the defaults block is what the bot uses without a file, the proposer chosen by OPENAI_API_KEY", () => {
    expect(parseConfig(null, {})).toEqual({ ok: true, config: DEFAULT_CONFIG });
    expect(configOf(parseConfig(defaults, {}))).toEqual(DEFAULT_CONFIG);
    expect(configOf(parseConfig(defaults, { OPENAI_API_KEY: "sk-test" }))).toEqual({
      ...DEFAULT_CONFIG,
      proposer: { ...DEFAULT_CONFIG.proposer, kind: "openai" },
    });
  });

  it("the keys the defaults block leaves commented out show their default values", () => {
    // `# timeout_seconds: 720` and the like: left out because their default is not one value
    // (it follows the budget, the environment or the bot's runner); uncommented, they must
    // still give the defaults of a bot without OPENAI_API_KEY.
    const uncommented = defaults.replace(/^(\s*)# ([a-z_]+:)/gm, "$1$2");
    expect(uncommented).not.toBe(defaults);
    expect(configOf(parseConfig(uncommented, {}))).toEqual(DEFAULT_CONFIG);
  });

  it("the typical night parses and sets what its text says: an LLM, a window, a limit, the outside evaluation", () => {
    const c = typical();
    expect(c.proposer.kind).toBe("openai");
    expect(c.night).toEqual({ window: expect.any(String), timezone: expect.any(String), maxExperiments: expect.any(Number) });
    expect(c.evaluation).toEqual({ scoreCommand: expect.any(String), serveCommand: expect.any(String) });
  });

  it("every field is shown in one of the two blocks and has one row in the table, which names no other", () => {
    const shown = `${defaults}\n${night}`;
    for (const field of fields()) {
      const key = field.split(".").pop()!;
      expect(shown, `${field} in a yaml block`).toMatch(new RegExp(`^\\s*(#\\s*)?${key}:`, "m"));
    }
    expect([...limitOf.keys()].sort()).toEqual(fields().sort());
    expect(limitOf.size, "no field listed twice").toBe(limits.length);
  });

  // "integer, 10–86,400", "number, more than 0, at most 0.5", "integer, at least 1"
  const NUM = String.raw`(\d+(?:,\d{3})*(?:\.\d+)?)`;
  const RANGE = new RegExp(String.raw`\b(integer|number), (?:${NUM}–${NUM}|more than ${NUM}, at most ${NUM}|at least ${NUM})`);
  const num = (s: string | undefined) => (s === undefined ? undefined : Number(s.replace(/,/g, "")));

  it("every numeric limit in the table is the one the bot enforces, at both ends", () => {
    const checked: string[] = [];
    for (const [field, row] of limitOf) {
      const accepted = row[1]!;
      if (!/\b(integer|number)\b/.test(accepted)) continue;
      const m = RANGE.exec(accepted);
      expect(m, `${field}: "${accepted}" states a range`).not.toBeNull();
      const integer = m![1] === "integer";
      const lo = num(m![2] ?? m![4] ?? m![6])!;
      const hi = num(m![3] ?? m![5]);
      const loIncluded = m![4] === undefined;
      const step = integer ? 1 : 0.001;
      // A budget of 10 s lets timeout_seconds go down to its own minimum (it may not be shorter than the budget).
      const file = (v: number) => fileWith(field, v, field === "budget_seconds" ? {} : { budget_seconds: 10 });
      const accepts = (v: number) => {
        const r = parseConfig(file(v), {});
        expect(r.ok ? valueAt(r.config, field) : formatConfigErrors(r.errors), `${field}: ${v} is accepted`).toBe(v);
      };
      const refuses = (v: number) => {
        const r = parseConfig(file(v), {});
        expect(r.ok ? [] : r.errors.map((e) => e.path), `${field}: ${v} is refused`).toContain(field);
      };
      if (loIncluded) accepts(lo);
      else refuses(lo);
      refuses(lo - step);
      if (hi !== undefined) {
        accepts(hi);
        refuses(hi + step);
      } else {
        accepts(lo + 1_000_000);
      }
      if (integer) refuses(lo + 0.5);
      checked.push(field);
    }
    // Every field whose value is a number has its range in the table.
    const c = typical();
    const numeric = fields().filter((f) => typeof valueAt(c, f) === "number");
    expect(numeric.length).toBeGreaterThan(0);
    expect(checked).toEqual(expect.arrayContaining(numeric));
  });

  it("the 'when unset' column gives the defaults", () => {
    let compared = 0;
    for (const [field, row] of limitOf) {
      const unset = row[2]!;
      const literal = /^`([^`]+)`$/.exec(unset)?.[1];
      if (literal === undefined) continue; // prose: "2 × budget_seconds + 120", "the bot's runner"
      // Inside `night:` the defaults of its fields apply once the section is there at all.
      const base = field.startsWith("night.") ? "night: {}\n" : "";
      expect(valueAt(configOf(parseConfig(base, {})), field), field).toEqual(parseYaml(literal));
      compared++;
    }
    expect(compared).toBeGreaterThan(fields().length / 2);
  });
});

// ------------------------------------------------------------------ environment variables

// How the code reads a variable: process.env.NAME, env.NAME (any object named env),
// env["NAME"], helpers called as f(env, "NAME"), and the settings schema's VARIABLES.
const READS = [
  /\benv\.([A-Z][A-Z0-9_]*)\b/g,
  /\benv\[\s*["'`]([A-Z][A-Z0-9_]*)["'`]\s*\]/g,
  /\(\s*env\s*,\s*["'`]([A-Z][A-Z0-9_]*)["'`]/g,
];

function namesRead(source: string): Set<string> {
  const names = new Set<string>();
  for (const re of READS) for (const m of source.matchAll(re)) names.add(m[1]!);
  return names;
}

/** The source files at `at`: the file itself, or those in the folder and below. */
function sourceFiles(at: string): string[] {
  if (!statSync(at).isDirectory()) return [at];
  return readdirSync(at).flatMap((name) => {
    const full = path.join(at, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return /\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith(".d.ts") ? [full] : [];
  });
}

/** Every variable read in the files at `paths` (files or folders), with the files that read it. */
function readsIn(paths: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const file of paths.flatMap((p) => sourceFiles(path.join(ROOT, p)))) {
    for (const name of namesRead(readFileSync(file, "utf8"))) {
      out.set(name, [...(out.get(name) ?? []), path.relative(ROOT, file)]);
    }
  }
  return out;
}

describe("README: environment variables", () => {
  const rows = table(section("Environment variables"), ["variable", "read by", "what (default)"]);
  const inTable = new Set(rows.flatMap((row) => row.flatMap(codeSpans)));
  const listed = rows.flatMap((row) => codeSpans(row[0]!));
  const ours = readsIn(["src", "scripts", "twins"]);
  // The bot's settings are read by name from the schema's table of variables (src/settings.ts).
  for (const name of Object.keys(VARIABLES)) ours.set(name, [...(ours.get(name) ?? []), "src/settings.ts"]);
  // Variables every program reads with the same meaning; not the bot's settings.
  const OS = new Set(["PATH", "HOME"]);

  it("the scan finds every way the code reads a variable", () => {
    expect([...namesRead('process.env.A_B; d.env.C; env["D_E"]; positive(env, "F_G"); env.lower; extraEnv.H')].sort()).toEqual([
      "A_B",
      "C",
      "D_E",
      "F_G",
    ]);
    expect(ours.size).toBeGreaterThan(20);
  });

  it("every variable src/, scripts/ and twins/ read is in the table", () => {
    const missing = [...ours].filter(([name]) => !OS.has(name) && !inTable.has(name)).map(([name, files]) => `${name} (${files.join(", ")})`);
    expect(missing).toEqual([]);
  });

  it("every variable the table lists is read, by this code or by the libraries that read it for the bot", () => {
    const libraries = readsIn([
      "node_modules/probot/lib",
      "node_modules/@probot/get-private-key/dist-src",
      "node_modules/@kubernetes/client-node/dist/config.js",
    ]);
    const unread = listed.filter((name) => !ours.has(name) && !libraries.has(name));
    expect(unread).toEqual([]);
    expect(new Set(listed).size, "no variable listed twice").toBe(listed.length);
  });
});

// ------------------------------------------------------------------ commands

/** The command words of a table cell: `/autoresearch pause` / `resume` → pause, resume. */
function commandWords(cell: string): string[] {
  const words: string[] = [];
  for (const span of codeSpans(cell)) {
    const m = /^\/autoresearch\s+([a-z]+)/.exec(span) ?? (words.length > 0 ? /^([a-z]+)$/.exec(span) : null);
    if (m) words.push(m[1]!);
  }
  return words;
}

describe("README: commands", () => {
  const readme = table(section("Steering"), ["command", "what it does"]);
  const help = table(HELP, ["command", "where", "what"]);
  const rowFor = (rows: string[][], word: string) => rows.find((r) => commandWords(r[0]!).includes(word));

  it("the README's command table and the bot's help list the same commands, each one the bot understands", () => {
    const readmeWords = readme.flatMap((r) => commandWords(r[0]!));
    const helpWords = help.flatMap((r) => commandWords(r[0]!));
    expect(helpWords.length).toBeGreaterThan(0);
    expect([...readmeWords].sort()).toEqual([...helpWords].sort());
    for (const word of helpWords) {
      expect(parseCommand(`/autoresearch ${word}${word === "try" ? " a smaller learning rate" : ""}`)?.kind, word).toBe(word);
    }
  });

  it("both say what pause does: the run in flight is cancelled, and measured again after resume", () => {
    // The behaviour itself: test/steering.test.ts, "pause cancels the run in flight …".
    for (const [where, row] of [["README", rowFor(readme, "pause")], ["HELP", rowFor(help, "pause")]] as const) {
      const text = row?.join(" ") ?? "";
      expect(text, where).toMatch(/\b(a|the) run in flight is cancelled/);
      expect(text, where).toMatch(/measured (again|from the start) after `?resume/);
    }
  });
});

// ------------------------------------------------------------------ app.yml

describe("README: the app's permissions and events", () => {
  const app = parseYaml(readFileSync(path.join(ROOT, "app.yml"), "utf8")) as {
    default_permissions: Record<string, string>;
    default_events: string[];
  };
  const install = section("Installing the app");
  // GitHub sends these to every app; a manifest cannot subscribe to them (app.yml says so).
  const DELIVERED_TO_EVERY_APP = ["installation", "installation_repositories"];

  it("lists exactly the permissions of app.yml", () => {
    const listed = table(install, ["permission", "why"]).map((row) => {
      const [name, level] = row[0]!.split(":").map((s) => s.trim());
      return [name!.replace(/ /g, "_"), level] as const;
    });
    expect(Object.fromEntries(listed)).toEqual(app.default_permissions);
    expect(listed).toHaveLength(Object.keys(app.default_permissions).length);
  });

  it("lists exactly the events of app.yml, and those delivered to every app", () => {
    const listed = table(install, ["event", "why"]).flatMap((row) => row[0]!.split(",").map((s) => s.trim()));
    expect([...listed].sort()).toEqual([...app.default_events, ...DELIVERED_TO_EVERY_APP].sort());
  });
});

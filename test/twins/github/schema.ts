// A small JSON Schema validator for GitHub's published descriptions: the REST OpenAPI 3.0
// document (@octokit/openapi) and the webhook payload schemas (@octokit/webhooks-schemas,
// draft-07). It covers what those documents use: $ref, type (with OpenAPI `nullable`), enum,
// const, properties / required / additionalProperties, items, allOf / anyOf / oneOf, and the
// date-time and uri formats.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export type Schema = Record<string, unknown>;

export interface SchemaError {
  path: string;
  message: string;
}

export interface ValidateOptions {
  /** Document against which `$ref`s resolve (JSON pointers such as #/components/schemas/x). */
  root: Schema;
  /** Enforce `additionalProperties: false` (default true). */
  additionalProperties?: boolean;
  /** Check `format` for date-time and uri (default true). */
  formats?: boolean;
}

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function typeMatches(expected: string, v: unknown): boolean {
  const actual = typeOf(v);
  if (expected === "number") return actual === "number" || actual === "integer";
  return expected === actual;
}

export function resolveRef(root: Schema, ref: string): Schema {
  if (!ref.startsWith("#/")) throw new Error(`unsupported $ref ${ref}`);
  let node: unknown = root;
  for (const raw of ref.slice(2).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    node = (node as Record<string, unknown> | undefined)?.[key];
  }
  if (!node || typeof node !== "object") throw new Error(`unresolvable $ref ${ref}`);
  return node as Schema;
}

/** Validates `value`; returns every violation found (empty when valid). */
export function validate(schema: Schema, value: unknown, opts: ValidateOptions, path = "$"): SchemaError[] {
  const errors: SchemaError[] = [];
  const err = (message: string, at = path) => errors.push({ path: at, message });

  if (typeof schema.$ref === "string") {
    return validate(resolveRef(opts.root, schema.$ref), value, opts, path);
  }
  if (value === null && schema.nullable === true) return errors;

  if (Array.isArray(schema.allOf)) {
    for (const sub of schema.allOf as Schema[]) errors.push(...validate(sub, value, opts, path));
  }
  for (const key of ["anyOf", "oneOf"] as const) {
    // oneOf is checked as anyOf: GitHub's description has overlapping branches (e.g. a user or
    // an `empty-object`), which a strict exactly-one check would reject for valid responses.
    const branches = schema[key];
    if (!Array.isArray(branches)) continue;
    let best: SchemaError[] | null = null;
    for (const sub of branches as Schema[]) {
      const e = validate(sub, value, opts, path);
      if (e.length === 0) {
        best = [];
        break;
      }
      if (!best || e.length < best.length) best = e;
    }
    if (best && best.length) {
      err(`matches no branch of ${key}; closest branch: ${best.slice(0, 3).map((e) => `${e.path}: ${e.message}`).join("; ")}`);
    }
  }

  if (schema.type !== undefined) {
    const types = (Array.isArray(schema.type) ? schema.type : [schema.type]) as string[];
    if (schema.nullable === true) types.push("null");
    if (!types.some((t) => typeMatches(t, value))) {
      err(`expected ${types.join(" | ")}, got ${typeOf(value)}`);
      return errors;
    }
  }

  if (Array.isArray(schema.enum) && !schema.enum.some((e) => e === value)) {
    err(`${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if ("const" in schema && schema.const !== value) err(`expected constant ${JSON.stringify(schema.const)}`);

  if (typeof value === "string" && (opts.formats ?? true)) {
    if (schema.format === "date-time" && !DATE_TIME.test(value)) err(`"${value}" is not a date-time`);
    if (schema.format === "uri") {
      try {
        new URL(value);
      } catch {
        err(`"${value}" is not a uri`);
      }
    }
  }

  if (Array.isArray(value) && schema.items && typeof schema.items === "object") {
    value.forEach((item, i) => errors.push(...validate(schema.items as Schema, item, opts, `${path}[${i}]`)));
  }

  if (typeOf(value) === "object") {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, Schema>;
    for (const key of (schema.required ?? []) as string[]) {
      if (!(key in obj)) err("required property missing", `${path}.${key}`);
    }
    for (const [key, v] of Object.entries(obj)) {
      const sub = props[key];
      if (sub) {
        errors.push(...validate(sub, v, opts, `${path}.${key}`));
      } else if (schema.additionalProperties === false && (opts.additionalProperties ?? true)) {
        err("property not allowed by the schema", `${path}.${key}`);
      } else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
        errors.push(...validate(schema.additionalProperties as Schema, v, opts, `${path}.${key}`));
      }
    }
  }
  return errors;
}

// ---- GitHub's REST description ------------------------------------------------------------------

const require = createRequire(import.meta.url);
let openapi: Schema | undefined;
let webhooks: Schema | undefined;

function packageFile(pkg: string, file: string): string {
  return join(dirname(require.resolve(`${pkg}/package.json`)), file);
}

/** GitHub's REST OpenAPI description (api.github.com, $refs not inlined). */
export function openApi(): Schema {
  openapi ??= JSON.parse(readFileSync(packageFile("@octokit/openapi", "generated/api.github.com.json"), "utf8")) as Schema;
  return openapi;
}

/** The success response schema of an operation (e.g. "get", "/repos/{owner}/{repo}/pulls/{pull_number}"). */
export function responseSchema(method: string, template: string, status: number): Schema {
  const doc = openApi();
  const paths = doc.paths as Record<string, Record<string, Schema>>;
  const op = paths[template]?.[method.toLowerCase()];
  if (!op) throw new Error(`no operation ${method} ${template} in the OpenAPI description`);
  let response = (op.responses as Record<string, Schema>)[String(status)];
  if (!response) throw new Error(`${method} ${template} documents no ${status} response`);
  if (typeof response.$ref === "string") response = resolveRef(doc, response.$ref);
  const content = response.content as Record<string, { schema?: Schema }> | undefined;
  const schema = content?.["application/json"]?.schema;
  if (!schema) throw new Error(`${method} ${template} ${status} has no JSON schema`);
  return schema;
}

/**
 * The OpenAPI path template of a concrete request path (e.g. /repos/a/b/pulls?page=2 →
 * /repos/{owner}/{repo}/pulls); templates with more literal segments win. Null when undocumented.
 */
export function findTemplate(method: string, path: string): string | null {
  const doc = openApi();
  const parts = path.split("?")[0]?.split("/").filter(Boolean) ?? [];
  let best: { template: string; literals: number } | null = null;
  for (const [template, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
    if (!ops[method.toLowerCase()]) continue;
    const segs = template.split("/").filter(Boolean);
    if (segs.length !== parts.length) continue;
    let literals = 0;
    const ok = segs.every((seg, i) => {
      if (seg.startsWith("{")) return true;
      literals++;
      return seg === parts[i];
    });
    if (ok && (!best || literals > best.literals)) best = { template, literals };
  }
  return best?.template ?? null;
}

/** Validates a REST response body against GitHub's description of that operation and status. */
export function validateResponse(method: string, template: string, status: number, body: unknown): SchemaError[] {
  return validate(responseSchema(method, template, status), body, { root: openApi() });
}

// ---- webhook payload schemas --------------------------------------------------------------------

export function webhookSchemas(): Schema {
  webhooks ??= JSON.parse(readFileSync(packageFile("@octokit/webhooks-schemas", "schema.json"), "utf8")) as Schema;
  return webhooks;
}

/** The schema of one event (and action), e.g. ("pull_request", "opened") or ("push"). */
export function webhookSchema(event: string, action?: string | null): Schema {
  const defs = webhookSchemas().definitions as Record<string, Schema>;
  const schema = action ? defs[`${event}$${action}`] : (defs[`${event}$event`] ?? defs[`${event}_event`]);
  if (!schema) throw new Error(`no webhook schema for ${event}${action ? `.${action}` : ""}`);
  return schema;
}

/** Validates a webhook payload against @octokit/webhooks-schemas (strict: no unknown properties). */
export function validateWebhook(event: string, payload: Record<string, unknown>, opts: { additionalProperties?: boolean } = {}): SchemaError[] {
  const action = typeof payload.action === "string" ? payload.action : null;
  return validate(webhookSchema(event, action), payload, { root: webhookSchemas(), additionalProperties: opts.additionalProperties ?? true });
}

export function formatErrors(errors: SchemaError[], max = 20): string {
  return errors
    .slice(0, max)
    .map((e) => `${e.path}: ${e.message}`)
    .join("\n");
}

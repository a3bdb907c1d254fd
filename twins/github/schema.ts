// JSON Schema validation (ajv) against GitHub's published descriptions: the REST OpenAPI 3.0
// document (@octokit/openapi) and the webhook payload schemas (@octokit/webhooks-schemas,
// draft-07). Each document is read once and adjusted where it is not plain JSON Schema (below),
// then every schema of it is compiled on first use.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";

export type Schema = Record<string, unknown>;

export interface SchemaError {
  path: string;
  message: string;
}

// strict: false, because the descriptions carry OpenAPI's own keywords (example, discriminator,
// x-github) and formats nobody checks here (int64, repo.nwo); inlineRefs: false compiles each
// shared schema once instead of into every schema that uses it (a third less time for the twin's
// tests).
const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false, logger: false, inlineRefs: false });
ajv.addFormat("date-time", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
ajv.addFormat("uri", (v: string) => URL.canParse(v));

/**
 * A description as ajv takes it, registered under `id`: OpenAPI's `nullable: true` becomes
 * "null, or the schema" (OpenAPI allows it beside `allOf` or `enum`, where ajv's own `nullable`
 * does not); oneOf is checked as anyOf (GitHub's description has overlapping branches, e.g. a user
 * or an `empty-object`, which an exactly-one check would reject for valid responses); local
 * `$ref`s name the document.
 */
function register(id: string, doc: Schema): Schema {
  const adjust = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(adjust);
    if (!node || typeof node !== "object") return node;
    const out: Schema = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === "nullable") continue;
      if (k === "$ref" && typeof v === "string" && v.startsWith("#/")) out.$ref = `${id}${v}`;
      else out[k === "oneOf" ? "anyOf" : k] = adjust(v);
    }
    return (node as Schema).nullable === true ? { anyOf: [{ type: "null" }, out] } : out;
  };
  const { $id: _ignored, ...adjusted } = adjust(doc) as Schema;
  ajv.addSchema(adjusted, id);
  return adjusted;
}

const compiled = new WeakMap<Schema, ValidateFunction>();

/** "/owner/id" → "$.owner.id", "/0/x" → "$[0].x". */
function jsonPath(pointer: string, property?: unknown): string {
  const keys = pointer.split("/").slice(1).map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (typeof property === "string") keys.push(property);
  return `$${keys.map((k) => (/^\d+$/.test(k) ? `[${k}]` : `.${k}`)).join("")}`;
}

/** Validates `value` against a schema of a registered document; returns every violation found. */
export function validate(schema: Schema, value: unknown): SchemaError[] {
  let check = compiled.get(schema);
  if (!check) compiled.set(schema, (check = ajv.compile(schema)));
  if (check(value)) return [];
  return (check.errors ?? []).map((e) => ({
    path: jsonPath(e.instancePath, e.params.missingProperty ?? e.params.additionalProperty),
    message: e.keyword === "additionalProperties" ? "property not allowed by the schema" : `${e.message ?? e.keyword}${e.keyword === "enum" ? ` ${JSON.stringify(e.params.allowedValues)}` : ""}`,
  }));
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
  openapi ??= register("openapi", JSON.parse(readFileSync(packageFile("@octokit/openapi", "generated/api.github.com.json"), "utf8")) as Schema);
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
  if (typeof response.$ref === "string") {
    // A shared response (openapi#/components/responses/<name>).
    response = (doc.components as Record<string, Record<string, Schema>>).responses?.[response.$ref.split("/").pop() ?? ""] ?? response;
  }
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
  return validate(responseSchema(method, template, status), body);
}

// ---- webhook payload schemas --------------------------------------------------------------------

export function webhookSchemas(): Schema {
  webhooks ??= register("webhooks", JSON.parse(readFileSync(packageFile("@octokit/webhooks-schemas", "schema.json"), "utf8")) as Schema);
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
export function validateWebhook(event: string, payload: Record<string, unknown>): SchemaError[] {
  const action = typeof payload.action === "string" ? payload.action : null;
  return validate(webhookSchema(event, action), payload);
}

export function formatErrors(errors: SchemaError[], max = 20): string {
  return errors
    .slice(0, max)
    .map((e) => `${e.path}: ${e.message}`)
    .join("\n");
}

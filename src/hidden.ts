// The hidden machine-readable blocks the bot keeps in what it writes on GitHub (Renovate keeps
// its state the same way): an experiment's record in its PR body, the steering state in the
// control issue, the night a report is for. One format, one codec, validated with zod:
//
//   <!-- autoresearch:<kind>
//   {"one":"line of JSON"}
//   -->
//
// `<` and `>` are written as JSON escapes, so the JSON can never contain `-->` (or `--!>`),
// which would end the comment early. Text the bot quotes into a body is defused
// (src/markdown.ts), so no opener can come after the bot's own: the decoder reads the block
// after the *last* opener, and text before it cannot reach into it.
import type { z } from "zod";

const opener = (kind: string) => `<!-- autoresearch:${kind}`;
/** After the last opener: the one-line JSON and the closer (a body edited on the web may use CRLF). */
const TAIL = /^[ \t]*\r?\n(\{[^\r\n]*\})[ \t]*\r?\n-->/;

export function encodeHidden(kind: string, value: unknown): string {
  const json = JSON.stringify(value).replace(/</g, "\\u003c").replace(/>/g, "\\u003e");
  return `${opener(kind)}\n${json}\n-->`;
}

export type Hidden<T> =
  /** No block of this kind. */
  | { found: false }
  | { found: true; ok: true; value: T }
  /** A block that is not valid: what is wrong with it, for the log or the user. */
  | { found: true; ok: false; error: string };

/** The last block of `kind` in `body`, parsed and checked against `schema`; never throws. */
export function decodeHidden<S extends z.ZodType>(kind: string, body: string | null | undefined, schema: S): Hidden<z.output<S>> {
  if (!body) return { found: false };
  const open = opener(kind);
  const at = body.lastIndexOf(open);
  if (at < 0) return { found: false };
  const m = TAIL.exec(body.slice(at + open.length));
  if (!m) return { found: true, ok: false, error: "the block is not one line of JSON between its opener and -->" };
  let json: unknown;
  try {
    json = JSON.parse(m[1]!);
  } catch (err) {
    return { found: true, ok: false, error: `its JSON does not parse (${(err as Error).message})` };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    return { found: true, ok: false, error: `${first?.path.join(".") || "(record)"}: ${first?.message ?? "invalid"}` };
  }
  return { found: true, ok: true, value: parsed.data };
}

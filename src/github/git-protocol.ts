// Git's push protocol as bytes: what the bot sends to and reads from a server's
// `git-receive-pack` over smart HTTP (src/github/git-wire.ts does the HTTP). Pure functions, no
// I/O, so every parser can be fed anything a server might answer.
//
// The formats, from git's documentation (gitprotocol-common, gitprotocol-pack,
// gitprotocol-http, gitformat-pack):
// - pkt-line: four hex digits giving the line's length including themselves, then the data;
//   "0000" is a flush (the end of a section).
// - the advertisement (GET info/refs?service=git-receive-pack): "# service=git-receive-pack",
//   a flush, then one "<sha> <ref>" line per ref, the first followed by "\0<capabilities>"
//   (an empty repository advertises "<zeros> capabilities^{}" instead), then a flush.
// - the request (POST git-receive-pack): one "<old> <new> <ref>" command per ref, the first with
//   "\0<capabilities>", a flush, then a packfile of the new objects (none for deletions only).
// - the answer with report-status: "unpack ok" (or the reason unpacking failed), then "ok <ref>"
//   or "ng <ref> <reason>" per command, then a flush.
// - a packfile (version 2): "PACK", the version and the object count as 32-bit big-endian
//   numbers, each object as a size-and-type header and its zlib-deflated body, and the SHA-1 of
//   everything before it.
import { createHash } from "node:crypto";
import { deflateSync } from "node:zlib";
import type { GitObject } from "./git-objects.js";

/** Input that does not follow git's protocol: a server (or something posing as one) answered wrongly. */
export class GitProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GitProtocolError";
  }
}

/** The longest pkt-line git writes (LARGE_PACKET_MAX): its four-digit length included. */
export const MAX_PKT_LINE = 65520;
/** More refs than this in an advertisement is not a repository the bot can work with. */
export const MAX_REFS = 500_000;
/** More commands in one push than this is refused before anything is sent. */
export const MAX_COMMANDS = 1000;

export const ZERO_SHA = "0".repeat(40);
const SHA = /^[0-9a-f]{40}$/;

/** A pkt-line holding `data` (text is sent as UTF-8). */
export function pktLine(data: string | Buffer): Buffer {
  const body = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  if (body.length + 4 > MAX_PKT_LINE) throw new GitProtocolError(`a pkt-line of ${body.length} bytes is longer than git allows (${MAX_PKT_LINE - 4})`);
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, "0"), "ascii"), body]);
}

export const FLUSH = Buffer.from("0000", "ascii");

/** One pkt-line as read: its data, or null for a flush. */
export type Pkt = Buffer | null;

/**
 * The pkt-lines at the start of `buf`, up to and including the `flushes`-th flush (all of them
 * when `flushes` is undefined), and the offset where reading stopped.
 */
export function readPktLines(buf: Buffer, what: string, flushes?: number): { lines: Pkt[]; end: number } {
  const lines: Pkt[] = [];
  let at = 0;
  let seen = 0;
  while (at < buf.length) {
    if (flushes !== undefined && seen >= flushes) break;
    if (lines.length > MAX_REFS + 16) throw new GitProtocolError(`${what}: more than ${MAX_REFS} lines`);
    if (at + 4 > buf.length) throw new GitProtocolError(`${what}: cut off inside a pkt-line length at byte ${at}`);
    const hex = buf.subarray(at, at + 4).toString("latin1");
    if (!/^[0-9a-f]{4}$/i.test(hex)) throw new GitProtocolError(`${what}: not a pkt-line at byte ${at} (${JSON.stringify(hex)})`);
    const len = parseInt(hex, 16);
    if (len === 0) {
      lines.push(null);
      seen++;
      at += 4;
      continue;
    }
    // 0001 and 0002 (delimiter, response end) belong to protocol version 2, which is not spoken here.
    if (len < 4) throw new GitProtocolError(`${what}: a pkt-line of length ${len} at byte ${at} (protocol version 2 is not spoken here)`);
    if (len > MAX_PKT_LINE) throw new GitProtocolError(`${what}: a pkt-line of ${len} bytes at byte ${at}, longer than git allows (${MAX_PKT_LINE})`);
    if (at + len > buf.length) throw new GitProtocolError(`${what}: cut off inside a pkt-line of ${len} bytes at byte ${at}`);
    lines.push(buf.subarray(at + 4, at + len));
    at += len;
  }
  if (flushes !== undefined && seen < flushes) throw new GitProtocolError(`${what}: ended before its closing flush`);
  return { lines, end: at };
}

/** A pkt-line's text without its trailing newline; control characters make it malformed. */
function text(line: Buffer, what: string): string {
  const s = line.toString("utf8").replace(/\n$/, "");
  if ([...s].some((c) => c !== "\t" && isControl(c))) throw new GitProtocolError(`${what}: a line with control characters: ${JSON.stringify(s.slice(0, 120))}`);
  return s;
}

function isControl(c: string): boolean {
  const code = c.charCodeAt(0);
  return code < 0x20 || code === 0x7f;
}

/** A server's words in an error message: one line, printable, bounded. */
export function said(s: string, max = 300): string {
  const clean = [...s].map((c) => (isControl(c) ? " " : c)).join("").replace(/\s+/g, " ").trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

export interface Advertisement {
  /** Ref name (e.g. refs/heads/main) → the sha it points at; peeled tags (^{}) left out. */
  refs: Map<string, string>;
  capabilities: Set<string>;
}

/**
 * The refs advertisement of `GET info/refs?service=git-receive-pack`. Lines the push does not use
 * (".have" alternates, peeled tags, "shallow") are skipped; anything else malformed is an error.
 */
export function parseAdvertisement(body: Buffer, service = "git-receive-pack"): Advertisement {
  const what = `the ${service} advertisement`;
  // gitprotocol-http: a smart server's answer starts with a pkt-line whose data starts with "#".
  if (!/^[0-9a-f]{4}#/i.test(body.subarray(0, 5).toString("latin1"))) {
    throw new GitProtocolError(`${what} does not start with "# service=": not a smart HTTP git server (${JSON.stringify(said(body.subarray(0, 60).toString("latin1"), 60))})`);
  }
  const head = readPktLines(body, what, 1);
  const first = head.lines[0];
  if (!first || text(first, what) !== `# service=${service}`) throw new GitProtocolError(`${what}: the first line is not "# service=${service}"`);
  if (head.lines.length !== 2) throw new GitProtocolError(`${what}: no flush after "# service=${service}"`);
  const { lines } = readPktLines(body.subarray(head.end), what);
  // A server that refuses says so in an "ERR" line, with nothing after it.
  const err = lines.find((l) => l?.toString("latin1").startsWith("ERR "));
  if (err) throw new GitProtocolError(`the server refused: ${said(err.toString("utf8").slice(4))}`);
  const flush = lines.indexOf(null);
  if (flush === -1) throw new GitProtocolError(`${what}: ended before its closing flush`);
  if (flush !== lines.length - 1) throw new GitProtocolError(`${what}: more after its closing flush`);
  const refs = new Map<string, string>();
  let capabilities = new Set<string>();
  let i = 0;
  // A server that speaks protocol version 1 says so first; its refs are version 0's.
  if (lines[0]?.toString("latin1").replace(/\n$/, "") === "version 1") i++;
  for (let n = 0; i < lines.length; i++, n++) {
    const line = lines[i];
    if (line === null || line === undefined) break;
    let s = text(line.subarray(0, line.indexOf(0) === -1 ? line.length : line.indexOf(0)), what);
    if (n === 0) {
      const nul = line.indexOf(0);
      if (nul === -1) throw new GitProtocolError(`${what}: the first ref line has no capabilities`);
      capabilities = new Set(text(line.subarray(nul + 1), what).split(" ").filter(Boolean));
      if (capabilities.size > 200) throw new GitProtocolError(`${what}: more than 200 capabilities`);
    } else if (line.includes(0)) {
      throw new GitProtocolError(`${what}: capabilities after the first ref line`);
    }
    if (s.startsWith("shallow ")) continue;
    const m = /^([0-9a-f]{40}) (\S+)$/.exec(s);
    if (!m) throw new GitProtocolError(`${what}: not a ref line: ${JSON.stringify(said(s, 120))}`);
    const [, sha, ref] = m as unknown as [string, string, string];
    if (n === 0 && ref === "capabilities^{}") {
      // An empty repository: no refs, only capabilities.
      if (sha !== ZERO_SHA) throw new GitProtocolError(`${what}: capabilities^{} with a sha other than zeros`);
      continue;
    }
    s = ref;
    if (s === ".have" || s.endsWith("^{}")) continue;
    if (!validRef(s)) throw new GitProtocolError(`${what}: not a ref name: ${JSON.stringify(said(s, 120))}`);
    refs.set(s, sha);
  }
  return { refs, capabilities };
}

/**
 * Whether `ref` is a name git accepts for a ref (git-check-ref-format's rules, for a full name
 * under refs/): nothing that could end a protocol line or be read as an option or a revision.
 */
export function validRef(ref: string): boolean {
  if (ref.length > 1024 || !ref.startsWith("refs/")) return false;
  if (/[\0-\x20\x7f~^:?*[\\]/.test(ref) || ref.includes("..") || ref.includes("@{") || ref.includes("//")) return false;
  if (ref.endsWith("/") || ref.endsWith(".") || ref.endsWith(".lock")) return false;
  return ref.split("/").every((part) => part !== "" && !part.startsWith(".") && !part.endsWith(".lock"));
}

export interface Command {
  /** The sha the ref is at now (zeros: it does not exist yet). */
  old: string;
  /** The sha it is to point at (zeros: delete it). */
  new: string;
  ref: string;
}

/**
 * The body of `POST git-receive-pack`: the commands, the first with `capabilities`, a flush, and
 * the packfile of `objects` unless every command is a deletion (git sends no pack then).
 */
export function receivePackRequest(commands: Command[], capabilities: string[], objects: GitObject[]): Buffer {
  if (!commands.length) throw new GitProtocolError("a push needs at least one command");
  if (commands.length > MAX_COMMANDS) throw new GitProtocolError(`${commands.length} commands in one push: at most ${MAX_COMMANDS}`);
  const parts: Buffer[] = [];
  commands.forEach((c, i) => {
    if (!SHA.test(c.old) || !SHA.test(c.new)) throw new GitProtocolError(`not a sha in a push command: ${JSON.stringify(`${c.old} ${c.new}`.slice(0, 100))}`);
    if (!validRef(c.ref)) throw new GitProtocolError(`not a ref name: ${JSON.stringify(c.ref.slice(0, 120))}`);
    const caps = i === 0 ? `\0${capabilities.join(" ")}` : "";
    parts.push(pktLine(`${c.old} ${c.new} ${c.ref}${caps}\n`));
  });
  parts.push(FLUSH);
  if (commands.some((c) => c.new !== ZERO_SHA)) parts.push(packfile(objects));
  return Buffer.concat(parts);
}

const PACK_TYPE = { commit: 1, tree: 2, blob: 3 } as const;

/** A version-2 packfile of whole objects (no deltas): what receive-pack stores or unpacks as is. */
export function packfile(objects: GitObject[]): Buffer {
  const head = Buffer.alloc(12);
  head.write("PACK", 0, "ascii");
  head.writeUInt32BE(2, 4);
  head.writeUInt32BE(objects.length, 8);
  const parts: Buffer[] = [head];
  for (const obj of objects) {
    const body = obj.raw.subarray(obj.raw.indexOf(0) + 1);
    parts.push(objectHeader(PACK_TYPE[obj.type], body.length), deflateSync(body));
  }
  const pack = Buffer.concat(parts);
  return Buffer.concat([pack, createHash("sha1").update(pack).digest()]);
}

/**
 * A pack entry's header: the type in bits 4-6 and the size's low four bits in the first byte,
 * then seven more bits of the size per byte, the high bit saying another byte follows.
 */
function objectHeader(type: number, size: number): Buffer {
  const bytes: number[] = [];
  let c = (type << 4) | (size & 0x0f);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(c | 0x80);
    c = rest & 0x7f;
    rest = Math.floor(rest / 128);
  }
  bytes.push(c);
  return Buffer.from(bytes);
}

export interface ReportStatus {
  /** "ok", or why the server could not unpack the pack (then no ref was updated). */
  unpack: string;
  /** Ref → null when updated, or the server's reason it was not. */
  refs: Map<string, string | null>;
}

/** The answer of `POST git-receive-pack` with report-status (and no side-band). */
export function parseReportStatus(body: Buffer): ReportStatus {
  const what = "the push's report-status";
  if (!body.length) throw new GitProtocolError(`${what} is empty`);
  const { lines, end } = readPktLines(body, what, 1);
  if (end !== body.length) throw new GitProtocolError(`${what}: ${body.length - end} bytes after its closing flush`);
  const texts = lines.filter((l): l is Buffer => l !== null).map((l) => text(l, what));
  if (texts[0]?.startsWith("ERR ")) throw new GitProtocolError(`the server refused: ${said(texts[0].slice(4))}`);
  const first = /^unpack (.+)$/.exec(texts[0] ?? "");
  if (!first) throw new GitProtocolError(`${what} does not start with "unpack": ${JSON.stringify(said(texts[0] ?? "", 120))}`);
  const refs = new Map<string, string | null>();
  for (const s of texts.slice(1)) {
    const m = /^ok (\S+)$/.exec(s) ?? /^(?:ng) (\S+)(?: (.*))?$/.exec(s);
    if (!m) throw new GitProtocolError(`${what}: not a status line: ${JSON.stringify(said(s, 120))}`);
    const [, ref, reason] = m as unknown as [string, string, string | undefined];
    if (!validRef(ref)) throw new GitProtocolError(`${what}: not a ref name: ${JSON.stringify(said(ref, 120))}`);
    refs.set(ref, s.startsWith("ok ") ? null : said(reason || "refused"));
  }
  return { unpack: said(first[1]!), refs };
}

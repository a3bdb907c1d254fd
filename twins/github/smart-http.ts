// Git over smart HTTP, as GitHub serves it: http(s)://host/{owner}/{repo}.git/info/refs and
// /git-upload-pack, /git-receive-pack (also without .git), never under /api/v3. The exchange itself
// is git's own `git http-backend` (CGI) on the repository's bare directory, so clients talk real
// git: protocol v2, shallow and partial clones, fetches by SHA, atomic pushes and deletions.
//
// Credentials are GitHub's: HTTP Basic with the token as password (any username, e.g.
// x-access-token:<token>), or `Authorization: Bearer|token <token>`. A git request is not an API
// request: it is logged with `git: true` and passes no rate limit.

import type { IncomingMessage } from "node:http";
import { gunzipSync } from "node:zlib";
import { basename, dirname } from "node:path";
import { roleAtLeast, type TwinCore } from "./core.js";
import { runGit, type GitRepo } from "./git.js";
import { permSatisfies, type AuthInfo } from "./routes.js";
import type { RepoRecord } from "./state.js";

export type GitService = "upload-pack" | "receive-pack";

/** A request for a repository's git: the refs advertisement (GET info/refs) or the exchange (POST). */
export interface GitPath {
  owner: string;
  repo: string;
  /** Null when info/refs names no smart service (a dumb-protocol client: not served). */
  service: GitService | null;
  step: "refs" | "rpc";
}

/** An answer to send as is (the CGI's, or the twin's own refusal). */
export interface GitAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

// GitHub's owner and repository names; a repository's path may end in .git.
const GIT_PATH = /^\/([A-Za-z0-9][A-Za-z0-9-]{0,38})\/([A-Za-z0-9._-]{1,100}?)(?:\.git)?\/(info\/refs|git-upload-pack|git-receive-pack)$/;

/** A body larger than this is refused (413) instead of held in memory. */
export const MAX_GIT_BODY = 100 * 1024 * 1024;

/** The git request a method and request target (path and query) make, or null for anything else. */
export function matchGitPath(method: string, target: string): GitPath | null {
  const q = target.indexOf("?");
  const m = GIT_PATH.exec(q === -1 ? target : target.slice(0, q));
  if (!m) return null;
  const [, owner = "", repo = "", tail] = m;
  if (tail === "info/refs") {
    if (method !== "GET") return null;
    const asked = new URLSearchParams(q === -1 ? "" : target.slice(q + 1)).get("service");
    const service = asked === "git-upload-pack" ? "upload-pack" : asked === "git-receive-pack" ? "receive-pack" : null;
    return { owner, repo, service, step: "refs" };
  }
  if (method !== "POST") return null;
  return { owner, repo, service: tail === "git-upload-pack" ? "upload-pack" : "receive-pack", step: "rpc" };
}

/** The request log's route of a git request, e.g. "GIT receive-pack {owner}/{repo}". */
export function gitRoute(p: GitPath): string {
  return `GIT ${p.service ?? "dumb"}${p.step === "refs" ? " refs" : ""} {owner}/{repo}`;
}

/**
 * The token a git client sent: the password of HTTP Basic (or the username when the password is
 * empty, as GitHub also accepts), or a Bearer/token credential. Null when none was sent; "bad"
 * when the header is not a credential at all.
 */
export function gitToken(header: string | undefined): string | null | "bad" {
  if (!header) return null;
  const m = /^(basic|bearer|token)\s+(\S+)\s*$/i.exec(header);
  if (!m) return "bad";
  let token = m[2] ?? "";
  if (m[1]?.toLowerCase() === "basic") {
    const decoded = Buffer.from(token, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon === -1) return "bad";
    token = decoded.slice(colon + 1) || decoded.slice(0, colon);
  }
  // Tokens are short printable words; anything else cannot match one and is not passed on.
  return /^[\x21-\x7e]{1,1024}$/.test(token) ? token : "bad";
}

export function gitText(status: number, message: string, headers: Record<string, string> = {}): GitAnswer {
  // git shows a text/plain body of a failed request to its user ("remote: ...").
  return { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers }, body: Buffer.from(`${message}\n`) };
}

/** 401 the way GitHub asks a git client for credentials. */
export function gitUnauthorized(message: string): GitAnswer {
  return gitText(401, message, { "www-authenticate": 'Basic realm="GitHub"' });
}

/**
 * Whether `auth` may fetch from (upload-pack) or push to (receive-pack) the repository, GitHub's
 * way: anyone fetches a public repository; an installation token needs the repository and
 * `contents` (write to push); a personal token needs the user's role (write to push). Missing
 * credentials are asked for (401) wherever they would matter, so that a private repository's
 * existence is not told to strangers. Null when allowed.
 */
export function gitDenied(core: TwinCore, repo: RepoRecord | undefined, fullName: string, auth: AuthInfo, service: GitService): GitAnswer | null {
  const push = service === "receive-pack";
  if (auth.kind === "anonymous") {
    return !repo || repo.private || push ? gitUnauthorized("Authentication is required: send an installation token as the password (x-access-token:<token>).") : null;
  }
  if (!repo) return gitText(404, `Repository not found: ${fullName}.`);
  let read = !repo.private;
  let write = false;
  let who = "";
  if (auth.kind === "installation") {
    const ids = auth.token.repoIds ?? new Set(core.reposOf(auth.installation).map((r) => r.id));
    const covered = ids.has(repo.id);
    read ||= covered && permSatisfies(auth.token.permissions, "contents", "read");
    write = covered && permSatisfies(auth.token.permissions, "contents", "write");
    who = auth.app.bot.login;
  } else if (auth.kind === "token") {
    const role = core.roleOf(repo, auth.user);
    read ||= role !== "none";
    write = roleAtLeast(role, "write");
    who = auth.user.login;
  }
  if (push ? write : read) return null;
  return gitText(403, `Permission to ${repo.owner.login}/${repo.name}.git denied to ${who}: ${push ? "pushing needs contents: write on this repository" : "fetching needs contents: read on this repository"}.`);
}

/** The request's body, or null past `max` bytes (read to the end either way, to answer cleanly). */
export function readBounded(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
    });
    req.on("end", () => resolve(size <= max ? Buffer.concat(chunks) : null));
    req.on("error", reject);
  });
}

// Each item a pair of git config key and value, handed to http-backend and the upload-pack or
// receive-pack it runs. Fetch by SHA and partial clone as on GitHub; no automatic gc after a push,
// so that the repository only changes by what was pushed.
const SERVE_CONFIG: Array<[string, string]> = [
  ["uploadpack.allowAnySHA1InWant", "true"],
  ["uploadpack.allowFilter", "true"],
  ["receive.autogc", "false"],
];

export interface BackendRequest {
  method: string;
  path: GitPath;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  /** The client's Git-Protocol header (e.g. version=2). */
  gitProtocol: string | undefined;
  /** Who pushes (http-backend serves receive-pack only to an authenticated user). */
  remoteUser: string | null;
  body: Buffer;
}

/** Runs `git http-backend` for one request on the bare repository `git` and parses its CGI answer. */
export async function httpBackend(git: GitRepo, req: BackendRequest): Promise<GitAnswer> {
  if (req.path.service === "receive-pack" && req.path.step === "refs") {
    const known = pushAdvertisements.get(git)?.get(protocolKey(req));
    if (known) return advertisePushRefs(git, known);
  }
  const answer = await runBackend(git, req);
  if (req.path.service === "receive-pack" && req.path.step === "refs" && answer.status === 200) learnPushAdvertisement(git, req, answer);
  return answer;
}

/**
 * What git's receive-pack advertisement is made of, besides the refs: its headers, what comes
 * before the first ref (the service line, the protocol version) and the capabilities after it.
 * Learned from git's own answer, once per repository and protocol a client asks for.
 */
interface PushAdvertisement {
  headers: Record<string, string>;
  prelude: Buffer;
  capabilities: string;
}

const pushAdvertisements = new WeakMap<GitRepo, Map<string, PushAdvertisement>>();

/** The client's Git-Protocol words, if they are only the protocol's own key=value words (else ""). */
const protocolKey = (req: BackendRequest) => (req.gitProtocol && /^[\w.=:-]{1,200}$/.test(req.gitProtocol) ? req.gitProtocol : "");

function learnPushAdvertisement(git: GitRepo, req: BackendRequest, answer: GitAnswer): void {
  // The pkt-lines up to the first that names a ref ("<sha> <ref>\0<capabilities>\n").
  const body = answer.body;
  for (let at = 0; at + 4 <= body.length; ) {
    const size = Number.parseInt(body.subarray(at, at + 4).toString("latin1"), 16);
    if (!Number.isInteger(size) || (size !== 0 && size < 4) || at + size > body.length) return;
    if (size === 0) {
      at += 4;
      continue;
    }
    const line = body.subarray(at + 4, at + size);
    const nul = line.indexOf(0);
    if (/^[0-9a-f]{40} /.test(line.subarray(0, 41).toString("latin1")) && nul > 0) {
      const capabilities = line.subarray(nul + 1).toString("utf8").replace(/\n$/, "");
      let known = pushAdvertisements.get(git);
      if (!known) pushAdvertisements.set(git, (known = new Map()));
      known.set(protocolKey(req), { headers: answer.headers, prelude: Buffer.from(body.subarray(0, at)), capabilities });
      return;
    }
    at += size;
  }
}

/**
 * receive-pack's advertisement from the repository's listing of refs, as git writes it: every
 * ref in byte order, the first with the capabilities (none: a "capabilities^{}" line), then a
 * flush. Each push asks for one before it sends its pack; a git process for each was a good
 * part of what a push cost the twin.
 */
async function advertisePushRefs(git: GitRepo, known: PushAdvertisement): Promise<GitAnswer> {
  const refs = (await git.listRefs("refs/")).sort((a, b) => Buffer.compare(Buffer.from(a.ref), Buffer.from(b.ref)));
  const pkt = (text: string) => {
    const data = Buffer.from(text, "utf8");
    return Buffer.concat([Buffer.from((data.length + 4).toString(16).padStart(4, "0"), "latin1"), data]);
  };
  const lines = refs.length
    ? refs.map((r, i) => pkt(i === 0 ? `${r.sha} ${r.ref}\0${known.capabilities}\n` : `${r.sha} ${r.ref}\n`))
    : [pkt(`${"0".repeat(40)} capabilities^{}\0${known.capabilities}\n`)];
  return { status: 200, headers: { ...known.headers }, body: Buffer.concat([known.prelude, ...lines, Buffer.from("0000", "latin1")]) };
}

async function runBackend(git: GitRepo, req: BackendRequest): Promise<GitAnswer> {
  const service = req.path.service ?? "upload-pack";
  // The CGI environment; called cgi, not env, because it is written for git, not read from ours.
  const cgi: Record<string, string> = {
    GIT_PROJECT_ROOT: dirname(git.dir),
    PATH_INFO: `/${basename(git.dir)}/${req.path.step === "refs" ? "info/refs" : `git-${service}`}`,
    REQUEST_METHOD: req.method,
    QUERY_STRING: req.path.step === "refs" ? `service=git-${service}` : "",
    CONTENT_LENGTH: String(req.body.length),
    GIT_HTTP_EXPORT_ALL: "1",
    REMOTE_ADDR: "127.0.0.1",
    GIT_CONFIG_COUNT: String(SERVE_CONFIG.length),
  };
  SERVE_CONFIG.forEach(([key, value], i) => {
    cgi[`GIT_CONFIG_KEY_${i}`] = key;
    cgi[`GIT_CONFIG_VALUE_${i}`] = value;
  });
  if (req.contentType) cgi.CONTENT_TYPE = req.contentType;
  if (req.contentEncoding) cgi.HTTP_CONTENT_ENCODING = req.contentEncoding;
  // Only the protocol's own key=value words are passed on (git ignores what it does not know).
  const protocol = protocolKey(req);
  if (protocol) cgi.GIT_PROTOCOL = protocol;
  if (req.remoteUser) cgi.REMOTE_USER = req.remoteUser;
  // receive-pack moves refs behind the repository's back: those its commands name (it runs no
  // hook that could move others) are read again for the next listing of them; all of them
  // where the commands cannot be read.
  const pushes = service === "receive-pack" && req.path.step === "rpc";
  const named = pushes ? pushCommands(req.body, req.contentEncoding).map((c) => c.ref) : [];
  const moved = named.length ? named : undefined;
  if (pushes) git.refsChanged(moved);
  try {
    const { stdout } = await runGit(dirname(git.dir), ["http-backend"], { input: req.body, env: cgi, ok: [0, 1, 128] });
    return parseCgi(stdout);
  } finally {
    if (pushes) git.refsChanged(moved);
  }
}

/** A CGI answer: header lines, a blank line, the body; `Status: 403 Forbidden` sets the status. */
export function parseCgi(out: Buffer): GitAnswer {
  let end = out.indexOf("\r\n\r\n");
  let sep = 4;
  const lf = out.indexOf("\n\n");
  if (end === -1 || (lf !== -1 && lf < end)) [end, sep] = [lf, 2];
  if (end === -1) return gitText(500, "git http-backend gave no answer");
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of out.subarray(0, end).toString("latin1").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "status") status = Number(/^\d{3}/.exec(value)?.[0] ?? 500);
    else headers[name] = value;
  }
  return { status, headers, body: out.subarray(end + sep) };
}

const ZERO_SHA = "0".repeat(40);

/** One ref update a push asks for: where the client says the ref is (null: absent) and where it goes (null: deleted). */
export interface PushCommand {
  ref: string;
  old: string | null;
  new: string | null;
}

/**
 * The ref updates of a receive-pack request: its pkt-lines up to the first flush, each
 * "<old> <new> <ref>" (the first with "\0<capabilities>" after it); "shallow" lines and a push
 * certificate are skipped. What cannot be read ends the list: git itself refuses such a push.
 */
export function pushCommands(body: Buffer, contentEncoding?: string): PushCommand[] {
  let data = body;
  if (contentEncoding && /gzip/i.test(contentEncoding)) {
    try {
      data = gunzipSync(body);
    } catch {
      return [];
    }
  }
  const out: PushCommand[] = [];
  let cert = false;
  for (let at = 0; at + 4 <= data.length; ) {
    const size = Number.parseInt(data.subarray(at, at + 4).toString("latin1"), 16);
    if (!Number.isInteger(size) || (size !== 0 && size < 4) || at + size > data.length) break;
    if (size === 0) {
      if (cert) {
        at += 4; // a push certificate is its own block before the commands' flush
        cert = false;
        continue;
      }
      break;
    }
    let line = data.subarray(at + 4, at + size).toString("utf8");
    at += size;
    const nul = line.indexOf("\0");
    if (nul >= 0) line = line.slice(0, nul);
    line = line.replace(/\n$/, "");
    if (line === "push-cert") cert = true;
    if (cert || line.startsWith("shallow ")) continue;
    const m = /^([0-9a-f]{40}) ([0-9a-f]{40}) (refs\/\S+)$/.exec(line);
    if (!m) break;
    out.push({ ref: m[3]!, old: m[1] === ZERO_SHA ? null : m[1]!, new: m[2] === ZERO_SHA ? null : m[2]! });
  }
  return out;
}

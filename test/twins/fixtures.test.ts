// Real GitHub, replayed against the twin. @octokit/fixtures holds exchanges recorded against
// api.github.com (normalized: ids, SHAs, dates and tokens replaced by placeholders). For the
// endpoints the bot uses, each recorded request is sent to the twin, with the twin's state set up
// as the recording's was, and its answer must have the recorded status, the headers a client acts
// on (content-type, location, link, x-ratelimit-*, retry-after) and the recorded body's shape:
// every key, recursively, with its JSON type (values differ: ids, dates, SHAs, hosts).
//
// Scenarios replayed: git-refs, labels, add-labels-to-issue, errors, branch-protection (its 404
// only), get-repository, get-content, create-file, get-archive, paginate-issues. Exchanges of
// endpoints the bot does not use are listed in NOT_USED and not replayed. No scenario records a
// 401, a 422 for a ref that exists or is missing, a pull request, a check run, a comment or an
// installation token: the ref errors are checked against the recorded error shape below.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitHubTwin } from "../../twins/github/index.js";

const require = createRequire(import.meta.url);
const SCENARIOS = join(dirname(require.resolve("@octokit/fixtures/package.json")), "scenarios/api.github.com");

const ORG = "octokit-fixture-org";
const USER = "octokit-fixture-user-a";
const TOKEN = "ghp_fixtureuseratoken";

interface Exchange {
  method: string;
  path: string;
  body?: unknown;
  status: number;
  response: unknown;
  reqheaders: Record<string, string | number>;
  headers: Record<string, string | number>;
}

function scenario(name: string): Exchange[] {
  return JSON.parse(readFileSync(join(SCENARIOS, name, "normalized-fixture.json"), "utf8")) as Exchange[];
}

/**
 * Exchanges of the scenarios above whose endpoint the bot never calls (so the twin does not
 * serve it): they are skipped, and this list is checked so it cannot go stale.
 */
const NOT_USED = new Set([
  "labels PATCH /repos/{owner}/{repo}/labels/{name}",
  "labels DELETE /repos/{owner}/{repo}/labels/{name}",
  "branch-protection PUT /repos/{owner}/{repo}/branches/{branch}/protection",
  "branch-protection DELETE /repos/{owner}/{repo}/branches/{branch}/protection",
]);

/**
 * Keys the twin sends that the recordings (2022) lack because GitHub added them since: each is
 * in today's answers and in GitHub's current OpenAPI description. A path is `$`-rooted, `[]` for
 * any element.
 */
const ADDED_SINCE_RECORDING = [
  // Error bodies carry the status as a string (e.g. "404").
  /^\$\.status: string$/,
  // A repository's discussions, custom properties and merge commit defaults.
  /^\$\.(has_discussions|custom_properties|squash_merge_commit_title|squash_merge_commit_message|merge_commit_title|merge_commit_message): /,
  // When a commit's signature was verified.
  /^\$\.commit\.verification\.verified_at: null$/,
];

// ---- shapes -----------------------------------------------------------------------------------

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** Every key path of a JSON value with its type, e.g. "$.user.login: string" ("[]": any element). */
function shapeOf(v: unknown, path = "$", out = new Set<string>()): Set<string> {
  out.add(`${path}: ${typeOf(v)}`);
  if (Array.isArray(v)) for (const item of v) shapeOf(item, `${path}[]`, out);
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) shapeOf(x, `${path}.${k}`, out);
  return out;
}

/** `unreproducible`: paths whose recorded state the twin cannot set up (see each replay). */
function shapeDiff(recorded: unknown, got: unknown, unreproducible: string[] = []): string[] {
  const want = shapeOf(recorded);
  const have = shapeOf(got);
  const skip = (s: string) => unreproducible.some((p) => s.startsWith(p));
  const missing = [...want].filter((s) => !have.has(s) && !skip(s)).map((s) => `missing ${s}`);
  const extra = [...have].filter((s) => !want.has(s) && !skip(s) && !ADDED_SINCE_RECORDING.some((re) => re.test(s))).map((s) => `unexpected ${s}`);
  return [...missing, ...extra];
}

// ---- headers ----------------------------------------------------------------------------------

/** Placeholders of the normalized recordings and the twin's values, for locations and links. */
interface Subst {
  twinOrigin: string;
  /** Recorded repository id (in /repositories/{id} links) → the twin's. */
  repoIds: Map<string, string>;
}

/** A URL of either side in one comparable form: GitHub's hosts, twin ids and SHAs replaced. */
function canonicalUrl(raw: string, s: Subst): string {
  let u = raw
    .replace(`${s.twinOrigin}/api/v3`, "https://api.github.com")
    .replace(`${s.twinOrigin}/_codeload`, "https://codeload.github.com")
    .replace(s.twinOrigin, "https://github.com");
  for (const [recorded, twin] of s.repoIds) u = u.replace(`/repositories/${twin}/`, `/repositories/${recorded}/`);
  return u.replace(/\b[0-9a-f]{40}\b/g, "{sha}");
}

function parseLink(header: string): Array<{ rel: string; url: string }> {
  return header.split(/,\s*(?=<)/).map((part) => {
    const m = /^<([^>]+)>;\s*rel="([^"]+)"$/.exec(part.trim());
    if (!m) throw new Error(`not a link: ${part}`);
    return { url: m[1] ?? "", rel: m[2] ?? "" };
  });
}

const mediaType = (v: string) => v.replace(/\s+/g, "").toLowerCase();

function headerDiff(recorded: Record<string, string | number>, got: Headers, s: Subst): string[] {
  const diffs: string[] = [];
  const rec = (name: string) => (recorded[name] === undefined ? null : String(recorded[name]));
  const ct = rec("content-type");
  const gotCt = got.get("content-type");
  if (ct === null ? gotCt !== null && Number(got.get("content-length") ?? 0) > 0 : gotCt === null || mediaType(gotCt) !== mediaType(ct)) {
    diffs.push(`content-type: recorded ${ct}, twin ${gotCt}`);
  }
  const location = rec("location");
  const gotLocation = got.get("location");
  if ((location === null) !== (gotLocation === null) || (location && gotLocation && canonicalUrl(gotLocation, s) !== location.replace(/\b0{39}\d\b/g, "{sha}"))) {
    diffs.push(`location: recorded ${location}, twin ${gotLocation}`);
  }
  const link = rec("link");
  const gotLink = got.get("link");
  if (link !== null || gotLink !== null) {
    const want = link ? parseLink(link).map((l) => `${l.rel} ${l.url}`) : [];
    const have = gotLink ? parseLink(gotLink).map((l) => `${l.rel} ${canonicalUrl(l.url, s)}`) : [];
    if (JSON.stringify(want) !== JSON.stringify(have)) diffs.push(`link:\n  recorded ${want.join("\n           ")}\n  twin     ${have.join("\n           ")}`);
  }
  for (const name of Object.keys(recorded).filter((h) => h.startsWith("x-ratelimit-") || h === "retry-after")) {
    const value = got.get(name);
    const ok = name === "x-ratelimit-resource" ? value === rec(name) : value !== null && /^\d+$/.test(value);
    if (!ok) diffs.push(`${name}: recorded ${rec(name)}, twin ${value}`);
  }
  return diffs;
}

// ---- replay -----------------------------------------------------------------------------------

let twin: GitHubTwin;
let subst: Subst;

beforeAll(async () => {
  twin = new GitHubTwin({ limits: false, personalTokens: { [TOKEN]: USER } });
  const { origin } = await twin.start();
  twin.user(ORG, { type: "Organization" });
  twin.user(USER);
  subst = { twinOrigin: origin, repoIds: new Map() };
});

afterAll(async () => {
  await twin.stop();
});

async function repoFor(name: string, files: Record<string, string> = { "README.md": `# ${name}` }, opts: { defaultBranch?: string } = {}) {
  const info = await twin.createRepo(ORG, name, files, { private: false, ...opts });
  twin.setPermission(ORG, name, USER, "admin");
  return info;
}

/** The OpenAPI-style template of a recorded path, for NOT_USED (numbers and names generalized). */
function templateOf(method: string, path: string): string {
  const p = path
    .split("?")[0]!
    .replace(/^\/repos\/[^/]+\/[^/]+/, "/repos/{owner}/{repo}")
    .replace(/\/labels\/[^/]+$/, "/labels/{name}")
    .replace(/\/branches\/[^/]+\/protection$/, "/branches/{branch}/protection");
  return `${method.toUpperCase()} ${p}`;
}

interface ReplayOptions {
  /** Recorded placeholder SHA → the twin's SHA (in paths and bodies). */
  shas?: Record<string, string>;
  /** Recorded path → the path to send (e.g. a /repositories/{id} link of the twin). */
  path?: (recorded: string) => string;
  /** Body paths (prefixes) whose recorded state the twin cannot set up. */
  unreproducible?: string[];
}

/** Sends one recorded request to the twin (credentials: the fixture user's token) and compares. */
async function replay(x: Exchange, opts: ReplayOptions = {}): Promise<{ res: Response; data: unknown; diffs: string[] }> {
  const sub = (text: string) => Object.entries(opts.shas ?? {}).reduce((t, [from, to]) => t.split(from).join(to), text);
  const path = sub(opts.path ? opts.path(x.path) : x.path);
  const headers: Record<string, string> = { authorization: `token ${TOKEN}`, accept: String(x.reqheaders.accept ?? "application/vnd.github.v3+json") };
  const body = x.body === undefined || x.body === "" ? undefined : typeof x.body === "string" ? x.body : sub(JSON.stringify(x.body));
  if (body !== undefined) headers["content-type"] = "application/json; charset=utf-8";
  const res = await fetch(`${twin.url}${path}`, { method: x.method.toUpperCase(), headers, body, redirect: "manual" });
  const text = await res.text();
  const data = text && (res.headers.get("content-type") ?? "").includes("json") ? (JSON.parse(text) as unknown) : text;
  const diffs: string[] = [];
  if (res.status !== x.status) diffs.push(`status: recorded ${x.status}, twin ${res.status} ${text.slice(0, 200)}`);
  diffs.push(...headerDiff(x.headers, res.headers, subst));
  if (x.response !== "" && typeof x.response === "object") diffs.push(...shapeDiff(x.response, data, opts.unreproducible));
  else if (x.response === "" && text !== "") diffs.push(`body: recorded none, twin ${text.slice(0, 200)}`);
  return { res, data, diffs: diffs.map((d) => `${x.method.toUpperCase()} ${x.path} → ${d}`) };
}

/** Replays every exchange of a scenario the bot's endpoints cover; returns every difference. */
async function replayAll(name: string, opts: ReplayOptions = {}, only?: (x: Exchange, i: number) => boolean): Promise<string[]> {
  const diffs: string[] = [];
  for (const [i, x] of scenario(name).entries()) {
    if (NOT_USED.has(`${name} ${templateOf(x.method, x.path)}`) || (only && !only(x, i))) continue;
    diffs.push(...(await replay(x, opts)).diffs);
  }
  return diffs;
}

describe("GitHub's recorded answers replayed against the twin", () => {
  it("lists only exchanges that the scenarios really hold as not used by the bot", () => {
    const all = new Set(
      ["labels", "branch-protection"].flatMap((name) => scenario(name).map((x) => `${name} ${templateOf(x.method, x.path)}`)),
    );
    expect([...NOT_USED].filter((k) => !all.has(k))).toEqual([]);
  });

  it("git refs: list, create, fast-forward and delete (git-refs)", async () => {
    // Recorded: a repository with two commits on main (1.md, then 2.md); `test` is created at
    // the first (placeholder …2) and moved to main's head (…1).
    await repoFor("git-refs", { "1.md": "# git-refs\ncreated with initial commit" });
    const head = await twin.pushCommit(ORG, "git-refs", "main", { "2.md": "# git-refs\ncreated with 2nd commit" }, "2nd commit");
    const [first] = (await twin.log(ORG, "git-refs", "main")).slice(1);
    const shas = { ["0".repeat(39) + "1"]: head, ["0".repeat(39) + "2"]: first!.sha };
    expect(await replayAll("git-refs", { shas })).toEqual([]);
    expect(await twin.branches(ORG, "git-refs")).toEqual({ main: head });
  });

  it("a ref that exists or is missing: 422 and 404 in the recorded error shape", async () => {
    // No scenario records these; the bot relies on their status (src/github/octokit.ts: putBranch,
    // deleteBranch), and their body has the shape of every recorded error without `errors`.
    const [notFound] = scenario("branch-protection");
    const info = await repoFor("git-refs-errors");
    const base = `/repos/${ORG}/git-refs-errors/git`;
    const cases: Array<[string, string, unknown, number]> = [
      ["POST", `${base}/refs`, { ref: "refs/heads/main", sha: info.headSha }, 422],
      ["GET", `${base}/ref/heads/missing`, undefined, 404],
      ["PATCH", `${base}/refs/heads/missing`, { sha: info.headSha, force: true }, 422],
      ["DELETE", `${base}/refs/heads/missing`, undefined, 422],
    ];
    for (const [method, path, body, status] of cases) {
      const r = await replay({ ...notFound!, method, path, body, status });
      expect(r.diffs).toEqual([]);
    }
  });

  it("the repository, a folder listing and a raw file (get-repository, get-content)", async () => {
    await repoFor("hello-world", { "README.md": "# hello-world" }, { defaultBranch: "master" });
    // The recorded repository has topics, which no endpoint of the twin sets.
    expect(await replayAll("get-repository", { unreproducible: ["$.topics[]"] })).toEqual([]);
    expect(await replayAll("get-content")).toEqual([]);
  });

  it("a file committed through the contents API (create-file)", async () => {
    // Recorded in an empty repository (its first commit has no parents); the twin's repositories
    // start with a commit.
    await repoFor("create-file");
    expect(await replayAll("create-file", { unreproducible: ["$.commit.parents[]"] })).toEqual([]);
    expect(await twin.readFile(ORG, "create-file", "main", "test.txt")).toBe("Test content");
  });

  it("labels: list, create and read (labels)", async () => {
    await repoFor("labels");
    expect(await replayAll("labels")).toEqual([]);
    expect(twin.repoLabels(ORG, "labels").map((l) => l.name)).toContain("test-label");
  });

  it("an issue is opened and labels are added to it, created on the way (add-labels-to-issue)", async () => {
    await repoFor("add-labels-to-issue");
    expect(await replayAll("add-labels-to-issue")).toEqual([]);
    expect(twin.labels(ORG, "add-labels-to-issue", 1)).toEqual(["Foo", "bAr", "baZ"]);
  });

  it("a 422 names what is wrong in `errors`: an invalid colour (errors), and a label that exists", async () => {
    await repoFor("errors");
    expect(await replayAll("errors")).toEqual([]);
    // The bot relies on the same answer for a label that exists already (`already_exists`).
    const [invalid] = scenario("errors");
    const dup = await replay({ ...invalid!, body: { name: "bug", color: "d73a4a" } });
    expect(dup.diffs).toEqual([]);
    expect(dup.data).toMatchObject({ message: "Validation Failed", errors: [{ resource: "Label", code: "already_exists", field: "name" }] });
  });

  it("a 404 is { message, documentation_url } (branch-protection)", async () => {
    await repoFor("branch-protection");
    expect(await replayAll("branch-protection")).toEqual([]);
  });

  it("the archive: a 302 to the download, which is a gzip tarball named after the commit (get-archive)", async () => {
    await repoFor("get-archive", { "README.md": "# get-archive" });
    const [redirect, download] = scenario("get-archive");
    const r = await replay(redirect!);
    expect(r.diffs).toEqual([]);
    const location = r.res.headers.get("location")!;
    const res = await fetch(location, { headers: { accept: "application/vnd.github.v3+json" } });
    expect(res.status).toBe(download!.status);
    expect(headerDiff(download!.headers, res.headers, subst)).toEqual([]);
    const disposition = /^attachment; filename=(.+)$/.exec(res.headers.get("content-disposition") ?? "")?.[1];
    expect(disposition?.replace(/-[0-9a-f]{7}\.tar\.gz$/, "-{sha7}.tar.gz")).toBe(String(download!.headers["content-disposition"]).split("filename=")[1]?.replace(/-0{7}\.tar\.gz$/, "-{sha7}.tar.gz"));
    const tar = gunzipSync(Buffer.from(await res.arrayBuffer())).toString("latin1");
    expect(tar).toContain("# get-archive");
  });

  it("pagination: Link rel=next/last/prev/first through /repositories/{id} (paginate-issues)", async () => {
    const info = await repoFor("paginate-issues");
    // As recorded: 13 issues opened with a title only (their body is null).
    for (let i = 1; i <= 13; i++) {
      const res = await fetch(`${twin.url}/repos/${ORG}/paginate-issues/issues`, {
        method: "POST",
        headers: { authorization: `token ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ title: `Test issue ${i}` }),
      });
      expect(res.status).toBe(201);
    }
    const recordedId = /\/repositories\/(\d+)\//.exec(scenario("paginate-issues")[1]!.path)![1]!;
    subst.repoIds.set(recordedId, String(info.id));
    const diffs = await replayAll("paginate-issues", { path: (p) => p.replace(`/repositories/${recordedId}/`, `/repositories/${info.id}/`) });
    expect(diffs).toEqual([]);
  });
});

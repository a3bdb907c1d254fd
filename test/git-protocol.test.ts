// Git's push protocol as bytes (src/github/git-protocol.ts): what real git writes is read, what
// the bot writes is what real git reads, and anything malformed a server might answer is refused
// with an error that says what is wrong.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { commitObjects, gitObject, type Trees } from "../src/github/git-objects.js";
import {
  FLUSH,
  GitProtocolError,
  packfile,
  parseAdvertisement,
  parseReportStatus,
  pktLine,
  readPktLines,
  receivePackRequest,
  ZERO_SHA,
} from "../src/github/git-protocol.js";

const scratch = mkdtempSync(path.join(tmpdir(), "git-protocol-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const ENV = { PATH: process.env.PATH ?? "", HOME: scratch, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1", LC_ALL: "C" };
function git(cwd: string, args: string[], input?: Buffer): Buffer {
  return execFileSync("git", args, { cwd, env: ENV, input, maxBuffer: 64 * 1024 * 1024 });
}
let n = 0;
function bareRepo(): string {
  const dir = path.join(scratch, `r${++n}.git`);
  git(scratch, ["init", "-q", "--bare", "--initial-branch=main", dir]);
  return dir;
}

const A = "a".repeat(40);
const B = "b".repeat(40);
const pkts = (...lines: Array<string | null>) => Buffer.concat(lines.map((l) => (l === null ? FLUSH : pktLine(l))));
const advert = (...lines: Array<string | null>) => pkts("# service=git-receive-pack\n", null, ...lines);

/** What `git http-backend` answers for info/refs: the service line and flush, then receive-pack's own advertisement. */
function realAdvertisement(dir: string): Buffer {
  return Buffer.concat([pkts("# service=git-receive-pack\n", null), git(dir, ["receive-pack", "--stateless-rpc", "--advertise-refs", "."])]);
}

describe("pkt-lines", () => {
  it("encodes the length in four hex digits, itself included, and reads them back up to a flush", () => {
    expect(pktLine("hello\n").toString()).toBe("000ahello\n");
    const { lines, end } = readPktLines(Buffer.concat([pkts("a\n", "bc\n", null), Buffer.from("PACK")]), "test", 1);
    expect(lines.map((l) => l?.toString() ?? null)).toEqual(["a\n", "bc\n", null]);
    expect(end).toBe(17);
  });

  it("refuses what is not a pkt-line: bad digits, a length under 4, past the end or past git's largest, a missing flush", () => {
    expect(() => readPktLines(Buffer.from("zzzzhello"), "x")).toThrow(/x: not a pkt-line at byte 0/);
    expect(() => readPktLines(Buffer.from("0001"), "x")).toThrow(/pkt-line of length 1.*version 2/);
    expect(() => readPktLines(Buffer.from("0010abc"), "x")).toThrow(/cut off inside a pkt-line of 16 bytes/);
    expect(() => readPktLines(Buffer.from("00"), "x")).toThrow(/cut off inside a pkt-line length/);
    expect(() => readPktLines(Buffer.from("fff5"), "x")).toThrow(/longer than git allows/);
    expect(() => readPktLines(pkts("a\n"), "x", 1)).toThrow(/ended before its closing flush/);
    expect(() => pktLine(Buffer.alloc(65517))).toThrow(GitProtocolError);
  });
});

describe("the receive-pack advertisement", () => {
  it("reads what real git advertises: each branch's sha and the capabilities; an empty repository's capabilities^{} form", () => {
    const empty = parseAdvertisement(realAdvertisement(bareRepo()));
    expect(empty.refs.size).toBe(0);
    expect(empty.capabilities).toContain("report-status");
    expect(empty.capabilities).toContain("delete-refs");

    const dir = bareRepo();
    const blob = git(dir, ["hash-object", "-w", "--stdin"], Buffer.from("x\n")).toString().trim();
    const tree = git(dir, ["mktree"], Buffer.from(`100644 blob ${blob}\tx.txt\n`)).toString().trim();
    const commit = git(dir, ["-c", "user.name=a", "-c", "user.email=a@b", "commit-tree", tree, "-m", "one"]).toString().trim();
    git(dir, ["update-ref", "refs/heads/main", commit]);
    git(dir, ["update-ref", "refs/heads/autoresearch/1-lr", commit]);
    git(dir, ["-c", "user.name=a", "-c", "user.email=a@b", "tag", "-a", "-m", "v1", "v1", commit]);
    const adv = parseAdvertisement(realAdvertisement(dir));
    expect(adv.refs.get("refs/heads/main")).toBe(commit);
    expect(adv.refs.get("refs/heads/autoresearch/1-lr")).toBe(commit);
    expect(adv.refs.has("refs/tags/v1")).toBe(true);
    expect(adv.capabilities).toContain("report-status");
  });

  it("skips peeled tags and .have lines", () => {
    const adv = parseAdvertisement(advert(`${A} refs/heads/main\0report-status delete-refs\n`, `${B} refs/tags/v1\n`, `${A} refs/tags/v1^{}\n`, `${B} .have\n`, null));
    expect([...adv.refs]).toEqual([["refs/heads/main", A], ["refs/tags/v1", B]]);
    expect([...adv.capabilities]).toEqual(["report-status", "delete-refs"]);
  });

  it("refuses a malformed advertisement with a clear error", () => {
    const bad: Array<[Buffer, RegExp]> = [
      [Buffer.from("<html>Sign in</html>"), /does not start with "# service=": not a smart HTTP git server/],
      [pkts("# service=git-upload-pack\n", null, `${A} refs/heads/main\0report-status\n`, null), /first line is not "# service=git-receive-pack"/],
      [pkts("# service=git-receive-pack\n", `${A} refs/heads/main\0x\n`, null), /no flush after/],
      [advert(`${A} refs/heads/main\n`, null), /first ref line has no capabilities/],
      [advert(`${A} refs/heads/main\0report-status\n`, `${B} refs/heads/x\0more\n`, null), /capabilities after the first ref line/],
      [advert(`nothex refs/heads/main\0report-status\n`, null), /not a ref line/],
      [advert(`${A} refs/heads/main\0report-status\n`, `${B} refs/heads/a b\n`, null), /not a ref line/],
      [advert(`${A} refs/heads/main\0report-status\n`, `${B} refs/heads/../x\n`, null), /not a ref name/],
      [advert(`${A} refs/heads/main\0report-status\n`, `${B} refs/heads/x\r\n`, null), /control characters/],
      [advert(`${A} capabilities^{}\0report-status\n`, null), /capabilities\^\{\} with a sha other than zeros/],
      [advert(`${A} refs/heads/main\0report-status\n`), /ended before its closing flush/],
      [Buffer.concat([advert(`${A} refs/heads/main\0report-status\n`, null), Buffer.from("0008junk")]), /more after its closing flush/],
      [advert("ERR access denied or repository not exported\n"), /the server refused: access denied/],
    ];
    for (const [body, error] of bad) expect(() => parseAdvertisement(body), body.toString("latin1")).toThrow(error);
  });
});

describe("the receive-pack request", () => {
  it("puts the capabilities on the first command only, then a flush and the packfile; deletions only: no packfile", () => {
    const blob = gitObject("blob", Buffer.from("x\n"));
    const req = receivePackRequest(
      [
        { old: ZERO_SHA, new: A, ref: "refs/heads/autoresearch/1-x" },
        { old: B, new: A, ref: "refs/heads/autoresearch/2-y" },
      ],
      ["report-status", "agent=git/test"],
      [blob],
    );
    const { lines, end } = readPktLines(req, "request", 1);
    expect(lines.map((l) => l?.toString() ?? null)).toEqual([`${ZERO_SHA} ${A} refs/heads/autoresearch/1-x\0report-status agent=git/test\n`, `${B} ${A} refs/heads/autoresearch/2-y\n`, null]);
    expect(req.subarray(end, end + 4).toString()).toBe("PACK");

    const del = receivePackRequest([{ old: A, new: ZERO_SHA, ref: "refs/heads/autoresearch/1-x" }], ["report-status"], []);
    expect(del.toString()).toBe(`${pktLine(`${A} ${ZERO_SHA} refs/heads/autoresearch/1-x\0report-status\n`).toString()}0000`);
  });

  it("refuses a command git could misread: a bad sha or ref name, or none at all", () => {
    expect(() => receivePackRequest([{ old: "-f", new: A, ref: "refs/heads/x" }], [], [])).toThrow(/not a sha/);
    for (const ref of ["refs/heads/a b", "refs/heads/x\n0000", "refs/heads/../x", "refs/heads/x.lock", "heads/x", "refs/heads/x/"]) {
      expect(() => receivePackRequest([{ old: A, new: ZERO_SHA, ref }], [], []), ref).toThrow(/not a ref name/);
    }
    expect(() => receivePackRequest([], [], [])).toThrow(/at least one command/);
  });

  it("writes a version-2 packfile that git's own index-pack and verify-pack accept, with every object intact", () => {
    const big = randomBytes(300_000).toString("base64"); // a size past several header bytes
    const trees: Trees = new Map([["", [{ mode: "100644", name: "keep.txt", sha: gitObject("blob", Buffer.from("keep\n")).sha }]]]);
    const objects = commitObjects({
      parent: A,
      trees,
      files: { "train.py": "LR = 0.05\n", "data/big.txt": big, "empty.txt": "" },
      message: "a commit",
      author: { name: "bot", email: "bot@example.com" },
      at: new Date(0),
    });
    const pack = packfile(objects);
    const dir = bareRepo();
    // index-pack reads the whole pack, checks its trailer and every object's sha, and indexes it.
    const keep = git(dir, ["index-pack", "--stdin"], pack).toString().trim();
    expect(keep).toMatch(/^pack\t[0-9a-f]{40}$/);
    const idx = path.join(dir, "objects/pack", `pack-${keep.slice(5)}.idx`);
    expect(git(dir, ["verify-pack", "-v", idx]).toString()).toMatch(/non delta: 6 objects/);
    const commit = objects[objects.length - 1]!.sha;
    expect(git(dir, ["cat-file", "-t", commit]).toString().trim()).toBe("commit");
    expect(git(dir, ["cat-file", "blob", `${commit}:data/big.txt`]).toString()).toBe(big);
    expect(git(dir, ["cat-file", "blob", `${commit}:empty.txt`]).toString()).toBe("");
    for (const o of objects) expect(git(dir, ["cat-file", "-t", o.sha]).toString().trim()).toBe(o.type);
  });
});

describe("report-status", () => {
  it("reads each ref's status: ok, or ng with the server's reason", () => {
    const report = parseReportStatus(pkts("unpack ok\n", "ok refs/heads/a\n", "ng refs/heads/b stale info\n", null));
    expect(report.unpack).toBe("ok");
    expect([...report.refs]).toEqual([["refs/heads/a", null], ["refs/heads/b", "stale info"]]);
    expect(parseReportStatus(pkts("unpack index-pack abnormal exit\n", "ng refs/heads/a unpacker error\n", null)).unpack).toBe("index-pack abnormal exit");
  });

  it("refuses a malformed report with a clear error", () => {
    const bad: Array<[Buffer, RegExp]> = [
      [Buffer.alloc(0), /is empty/],
      [pkts("ok refs/heads/a\n", null), /does not start with "unpack"/],
      [pkts("unpack ok\n", "maybe refs/heads/a\n", null), /not a status line/],
      [pkts("unpack ok\n", "ok refs/heads/a b\n", null), /not a status line/],
      [pkts("unpack ok\n", "ok refs/../a\n", null), /not a ref name/],
      [pkts("unpack ok\n", "ok refs/heads/a\n"), /ended before its closing flush/],
      [Buffer.concat([pkts("unpack ok\n", null), Buffer.from("0005x")]), /bytes after its closing flush/],
      [Buffer.from("\u0002progress 50%"), /not a pkt-line/],
      [pkts("ERR pre-receive hook declined\n", null), /the server refused: pre-receive hook declined/],
    ];
    for (const [body, error] of bad) expect(() => parseReportStatus(body), body.toString("latin1")).toThrow(error);
  });
});

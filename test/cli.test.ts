// `autoresearch-bot results OWNER/REPO`: the ledger rebuilt from GitHub alone (every page of
// experiment PRs) and printed as autoresearch's results.tsv.
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { main } from "../src/cli.js";
import { labelsFor, renderBody } from "../src/ledger/index.js";
import type { ExperimentRecord, TrainerResult } from "../src/types.js";
import { GitHubTwin } from "../twins/github/index.js";

const twin = new GitHubTwin({ personalTokens: { "ghp_reader": "alice" } });
let url = "";

function result(valBpb: number | null, status: TrainerResult["status"] = "ok"): TrainerResult {
  return { status, val_bpb: valBpb, exit_code: status === "ok" ? 0 : 1, reason: status === "ok" ? "" : "ValueError: bad", log_tail: "", summary: { peak_vram_mb: 2048 } };
}

function record(n: number, state: ExperimentRecord["state"], sha: string, valBpb: number | null, status: TrainerResult["status"] = "ok"): ExperimentRecord {
  const verdict = state === "kept" ? "keep" : state === "crashed" ? "crash" : "discard";
  return {
    v: 1, n, kind: n === 1 ? "baseline" : "experiment", title: `experiment ${n}`, hypothesis: "h", proposer: "mutate",
    baseSha: sha, headSha: sha, edits: [], treeHash: `t${n}`, baseTreeHash: "t0", guidanceSha: null, baselineBpb: n === 1 ? null : 1.0,
    attempt: 1, state, measurements: [{ runId: `r${n}`, sha, result: result(valBpb, status), finishedAt: "2026-01-01T00:00:00Z" }],
    decision: { verdict, delta: null, reasons: [] }, createdAt: "2026-01-01T00:00:00Z", updatedAt: "2026-01-01T00:00:00Z",
  };
}

beforeAll(async () => {
  ({ url } = await twin.start());
  await twin.createRepo("alice", "research", { "train.py": "LR = 1\n" });
  // 105 experiments: more than one page of 100.
  for (let n = 1; n <= 105; n++) {
    const sha = await twin.pushCommit("alice", "research", `autoresearch/${n}-x`, { "train.py": `LR = ${n}\n` }, `experiment ${n}`);
    const state = n === 1 || n % 10 === 0 ? "kept" : n % 7 === 0 ? "crashed" : "discarded";
    const r = record(n, state, sha, state === "crashed" ? null : 1 - n / 1000, state === "crashed" ? "crash" : "ok");
    const number = await twin.openPull("alice", "research", { head: `autoresearch/${n}-x`, title: r.title, body: renderBody(r) });
    await twin.addLabels("alice", "research", number, labelsFor(r));
  }
}, 120_000);

afterAll(() => twin.stop());

it("prints results.tsv for every experiment PR, across pages", async () => {
  const out: string[] = [];
  const write = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
  process.env.GITHUB_TOKEN = "ghp_reader";
  try {
    // Here alice opened the experiment PRs, so she plays the app's bot user.
    expect(await main(["results", "alice/research", "--api-url", url, "--author", "alice"])).toBe(0);
  } finally {
    write.mockRestore();
    delete process.env.GITHUB_TOKEN;
  }
  const lines = out.join("").trimEnd().split("\n");
  expect(lines[0]).toBe("commit\tval_bpb\tmemory_gb\tstatus\tdescription");
  expect(lines).toHaveLength(106);
  expect(lines[1]).toMatch(/^[0-9a-f]{7}\t0\.999000\t2\.0\tkeep\texperiment 1$/);
  expect(lines[7]).toMatch(/^[0-9a-f]{7}\t0\.000000\t0\.0\tcrash\texperiment 7$/);
  expect(lines[104]).toMatch(/\t0\.896000\t2\.0\tdiscard\texperiment 104$/);
  expect(lines[105]).toMatch(/\tcrash\texperiment 105$/);
}, 60_000);

it("counts only the PRs of the app's bot user: anyone else's labelled PRs are left out, and said so", async () => {
  const out: string[] = [];
  const write = vi.spyOn(process.stdout, "write").mockImplementation((s) => (out.push(String(s)), true));
  const err = vi.spyOn(console, "error").mockImplementation(() => undefined);
  process.env.GITHUB_TOKEN = "ghp_reader";
  try {
    expect(await main(["results", "alice/research", "--api-url", url])).toBe(0);
    expect(out.join("").trimEnd().split("\n")).toEqual(["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]);
    expect(err.mock.calls.flat().join("\n")).toMatch(/ignored: opened by @alice, not by autoresearch-bot\[bot\]/);
  } finally {
    write.mockRestore();
    err.mockRestore();
    delete process.env.GITHUB_TOKEN;
  }
}, 60_000);

it("says what is wrong with a bad target or a failed read, with a non-zero exit", async () => {
  const err = vi.spyOn(console, "error").mockImplementation(() => undefined);
  try {
    expect(await main(["results", "not-a-repo"])).toBe(2);
    expect(await main(["results", "alice/missing", "--api-url", url])).toBe(1);
    expect(err.mock.calls.flat().join("\n")).toMatch(/expected OWNER\/REPO[\s\S]*could not read the ledger of alice\/missing/);
    // Options are parsed strictly: an unknown one, one without its value, a second target.
    err.mockClear();
    expect(await main(["results", "alice/research", "--bogus"])).toBe(2);
    expect(await main(["results", "alice/research", "--out"])).toBe(2);
    expect(await main(["results", "alice/research", "bob/other"])).toBe(2);
    expect(await main(["doctor", "--fix"])).toBe(2);
    expect(err.mock.calls.flat().join("\n")).toMatch(/Unknown option '--bogus'[\s\S]*'--out <value>' argument missing[\s\S]*unexpected argument 'bob\/other'[\s\S]*Unknown option '--fix'/);
  } finally {
    err.mockRestore();
  }
});

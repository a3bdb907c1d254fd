// What a pass costs on GitHub as the ledger grows: the Octokit port against the GitHub twin.
// A listing reads the pull requests newest-updated first and stops at what it holds already, so
// a pass with a long history costs one request; a change to any pull request (an old one too)
// is still seen on the next listing; an experiment is committed with two writes.
import { generateKeyPairSync } from "node:crypto";
import { ProbotOctokit } from "probot";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clearGitHubCaches, OctokitGitHub } from "../src/github/octokit.js";
import { branchName, renderBody } from "../src/ledger/index.js";
import type { ExperimentRecord } from "../src/types.js";
import { GitHubTwin } from "../twins/github/index.js";

const OWNER = "alice";
const REPO = "research";
const TRAIN = "LR = 0.04\nWARMUP = 10\n";

function record(n: number, baseSha: string): ExperimentRecord {
  return {
    v: 1, n, kind: "experiment", title: `idea ${n}`, hypothesis: "h", proposer: "test", baseSha, baseTreeHash: "t", headSha: "",
    treeHash: `t${n}`, guidanceSha: null, edits: [], attempt: 1, state: "discarded", measurements: [], decision: { verdict: "discard", delta: 0.01, reasons: ["r"] },
    baselineBpb: 1, createdAt: "2026-03-01T23:00:00Z", updatedAt: "2026-03-01T23:00:00Z",
  };
}

describe("the ledger on GitHub as it grows", () => {
  // The twin's clock: the history is written ten seconds apart, as over a night.
  let t = Date.parse("2026-03-01T22:00:00Z");
  const twin = new GitHubTwin({ limits: false, deliveries: false, now: () => new Date(t) });
  let gh: OctokitGitHub;
  let base: string;
  const HISTORY = 150;

  beforeAll(async () => {
    const { url } = await twin.start();
    twin.createApp({ appId: 77, privateKey: generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: { type: "pkcs1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey, webhookSecret: "s", webhookUrl: "http://127.0.0.1:9/", slug: "autoresearch" });
    await twin.createRepo(OWNER, REPO, { "train.py": TRAIN });
    const installationId = await twin.installApp(OWNER, [REPO]);
    const token = await twin.installationToken(installationId);
    clearGitHubCaches();
    gh = new OctokitGitHub(new ProbotOctokit({ auth: { token }, baseUrl: url, throttle: { enabled: false } }), { owner: OWNER, repo: REPO }, { botLogin: "alice" });
    base = await gh.getBranchSha("main");
    // A long history: experiment PRs opened (and closed) the way the bot does it.
    for (let n = 1; n <= HISTORY; n++) {
      const branch = branchName(n, `idea ${n}`);
      const sha = await gh.commitFiles(branch, base, { "train.py": TRAIN.replace("0.04", `0.04${n}`) }, `idea ${n}`);
      const number = await gh.createPull({ title: `idea ${n}`, head: branch, base: "main", body: renderBody({ ...record(n, base), headSha: sha }), labels: [] });
      await gh.updatePull(number, { state: "closed", labels: ["autoresearch", "autoresearch:discard"] });
      t += 10_000;
    }
  }, 120_000);

  afterAll(async () => {
    await twin.stop();
  });

  it("costs one request per listing however long the history, and still sees a change to an old pull request", async () => {
    clearGitHubCaches();
    twin.resetRequests();
    const first = await gh.listExperimentPulls();
    expect(first).toHaveLength(HISTORY);
    expect(first.every((p) => p.record !== null && p.state === "closed")).toBe(true);
    // The first listing of a process reads everything: 100 a page.
    expect(twin.requests.length).toBe(Math.ceil(HISTORY / 100));

    twin.resetRequests();
    const again = await gh.listExperimentPulls();
    expect(again.map((p) => p.number)).toEqual(first.map((p) => p.number));
    expect(twin.requests.map((r) => r.route)).toEqual(["GET /repos/{owner}/{repo}/pulls"]);

    // A person relabels the oldest experiment: the next listing (one request) has it.
    const oldest = first[0]!;
    await gh.updatePull(oldest.number, { labels: ["autoresearch", "autoresearch:discard", "interesting"] });
    twin.resetRequests();
    const after = await gh.listExperimentPulls();
    expect(after.find((p) => p.number === oldest.number)!.labels).toContain("interesting");
    expect(twin.requests).toHaveLength(1);
  });

  it("commits a one-file change with two writes, and finds an experiment whose PR is not labelled yet", async () => {
    twin.resetRequests();
    const n = HISTORY + 1;
    const branch = branchName(n, "unlabelled");
    const sha = await gh.commitFiles(branch, base, { "train.py": TRAIN.replace("0.04", "0.05") }, "unlabelled");
    const writes = twin.requests.filter((r) => r.write).map((r) => r.route);
    expect(writes).toEqual(["POST /repos/{owner}/{repo}/git/refs", "PUT /repos/{owner}/{repo}/contents/{path}"]);
    expect((await gh.readFile("train.py", sha))!.text).toBe(TRAIN.replace("0.04", "0.05"));
    const number = await gh.createPull({ title: "unlabelled", head: branch, base: "main", body: renderBody({ ...record(n, base), state: "queued", decision: null, headSha: sha }), labels: [] });
    const listed = (await gh.listExperimentPulls()).find((p) => p.number === number);
    expect(listed).toMatchObject({ state: "open", headRef: branch, headSha: sha, labels: [] });
    expect(listed!.record?.n).toBe(n);
  });
});

// GitHub failing the way it does now and then, met by the bot's own GitHub adapter: an
// OctokitGitHub on Probot's installation client with its retry and throttling plugins, wired
// through the installation's backoff gate, write budget and per-attempt deadline exactly as
// src/app.ts wires it (throughGate), against the GitHub twin with its rate limits on.
//
// - a 502/503 on a write is retried and the write lands once (no duplicate branch, commit, pull
//   request, label or comment), also when GitHub had carried it out before answering 5xx;
// - a 403 secondary limit with and without retry-after, and a 429: nothing of the installation
//   goes out inside the window GitHub named (a minute when it named none), then the write lands
//   once (a 429 in the same call, retried; a 403 in the next call, as Probot does not retry it);
// - a request that hangs past the client's deadline fails the call cleanly, and the next call
//   succeeds.

import { generateKeyPairSync } from "node:crypto";
import Bottleneck from "bottleneck";
import { pino } from "pino";
import { Probot, ProbotOctokit } from "probot";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { throughGate } from "../src/app.js";
import { BackoffGate } from "../src/github/backoff.js";
import { WriteBudget } from "../src/github/budget.js";
import { GitHubError, OctokitGitHub, clearGitHubCaches } from "../src/github/octokit.js";
import { GitHubTwin, type Fault } from "../twins/github/index.js";

const APP_ID = 5151;
const OWNER = "alice";
const REPO = "research";
const LABEL = { name: "autoresearch", color: "5319e7", description: "An experiment" };

/** Faults to inject, by route ("POST /repos/{owner}/{repo}/pulls"): each answers one attempt. */
const planned = new Map<string, Fault[]>();
/** A route that hangs on every attempt while it is listed here. */
const hanging = new Set<string>();

function inject(route: string, ...faults: Fault[]): void {
  planned.set(route, [...(planned.get(route) ?? []), ...faults]);
}

const twin = new GitHubTwin({
  faults: ({ route }) => (hanging.has(route) ? "hang" : planned.get(route)?.shift()),
});
let probot: Probot;
let installationId: number;
let head: string;

beforeAll(async () => {
  await twin.start();
  const privateKey = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  }).privateKey;
  twin.createApp({ appId: APP_ID, privateKey, webhookSecret: "s", webhookUrl: null, slug: "autoresearch" });
  head = (await twin.createRepo(OWNER, REPO, { "train.py": "LR = 0.01\n", "program.md": "Go.\n" })).headSha;
  installationId = await twin.installApp(OWNER, [REPO]);
  probot = new Probot({
    appId: APP_ID,
    privateKey,
    baseUrl: twin.url,
    log: pino({ level: "silent" }),
    // Probot's plugins as in production (test/support/bot.ts): only the throttling plugin's fixed
    // spacing of writes (1 s, 3 s for those that notify) is shortened; writes stay one at a time.
    Octokit: ProbotOctokit.defaults((o: Record<string, unknown>) => ({
      ...o,
      throttle: {
        ...(o.throttle as object),
        write: new Bottleneck.Group({ maxConcurrent: 1, minTime: 5 }),
        notifications: new Bottleneck.Group({ maxConcurrent: 1, minTime: 5 }),
      },
    })),
  });
});

afterAll(async () => {
  hanging.clear();
  await twin.stop();
});

/** A fresh adapter as src/app.ts builds one for an installation (deadline: `timeoutMs` an attempt). */
async function adapter(timeoutMs = 30_000): Promise<{ gh: OctokitGitHub; gate: BackoffGate }> {
  clearGitHubCaches();
  const octokit = await probot.auth(installationId);
  const gate = new BackoffGate();
  const budget = new WriteBudget();
  throughGate(octokit, gate, timeoutMs, budget);
  return { gh: new OctokitGitHub(octokit, { owner: OWNER, repo: REPO }, { botLogin: "autoresearch[bot]", budget, gate }), gate };
}

/** Statuses the twin answered on a route since `from` (0: no answer, the client gave up). */
function answers(route: string, from: number): number[] {
  return twin.requests.filter((r, i) => i >= from && r.route === route).map((r) => r.status);
}

const R = (method: string, path: string) => `${method} /repos/{owner}/{repo}${path}`;

describe("GitHub's 5xx, secondary limits and hangs, through the bot's GitHub adapter", () => {
  it("a 502 or 503 on a write is retried, and every write lands once", async () => {
    const { gh } = await adapter();
    const from = twin.requests.length;
    inject(R("POST", "/git/refs"), { status: 502 });
    inject(R("PUT", "/contents/{path}"), { status: 503 });
    inject(R("POST", "/labels"), { status: 502 });
    inject(R("POST", "/pulls"), { status: 503 });
    inject(R("PUT", "/issues/{issue_number}/labels"), { status: 502 });
    inject(R("POST", "/issues/{issue_number}/comments"), { status: 503 });

    const branch = "autoresearch/1-lr";
    const sha = await gh.commitFiles(branch, head, { "train.py": "LR = 0.02\n" }, "Raise the learning rate");
    await gh.ensureLabels([LABEL]);
    const number = await gh.createPull({ title: "Raise the learning rate", head: branch, base: "main", body: "Faster.", labels: [LABEL.name] });
    await gh.comment(number, "Measuring.");

    for (const [method, path] of [
      ["POST", "/git/refs"],
      ["PUT", "/contents/{path}"],
      ["POST", "/labels"],
      ["POST", "/pulls"],
      ["PUT", "/issues/{issue_number}/labels"],
      ["POST", "/issues/{issue_number}/comments"],
    ] as const) {
      // One 5xx, then the retry plugin's second attempt carried it out.
      const seen = answers(R(method, path), from);
      expect(seen.length === 2 && seen[0]! >= 500 && seen[1]! < 300, `${method} ${path}: ${seen.join(", ")}`).toBe(true);
    }
    expect(await twin.branchSha(OWNER, REPO, branch)).toBe(sha);
    expect((await twin.log(OWNER, REPO, branch)).map((c) => c.message)).toEqual(["Raise the learning rate", "Initial commit"]);
    expect(twin.pulls(OWNER, REPO).map((p) => [p.number, p.headRef, p.labels])).toEqual([[number, branch, [LABEL.name]]]);
    expect(twin.repoLabels(OWNER, REPO).filter((l) => l.name === LABEL.name)).toHaveLength(1);
    expect(twin.comments(OWNER, REPO, number).map((c) => c.body)).toEqual(["Measuring."]);
  });

  it("a write GitHub carried out before answering 5xx is not done twice", async () => {
    const { gh } = await adapter();
    const from = twin.requests.length;
    // The branch, the label and the pull request exist once the first attempt is answered 503:
    // the retry meets "already exists" (422), which the adapter takes for done, or which fails
    // the call so that the next pass finds the pull request by its branch.
    inject(R("POST", "/git/refs"), { status: 503, carriedOut: true });
    inject(R("POST", "/labels"), { status: 502, carriedOut: true });
    inject(R("POST", "/pulls"), { status: 503, carriedOut: true });
    const branch = "autoresearch/2-depth";
    const sha = await gh.commitFiles(branch, head, { "train.py": "LR = 0.01\nDEPTH = 6\n" }, "Deeper");
    await gh.ensureLabels([{ ...LABEL, name: "autoresearch-2" }]);
    const opened = gh.createPull({ title: "Deeper", head: branch, base: "main", body: "More capacity.", labels: [] });
    await expect(opened).rejects.toMatchObject({ name: "GitHubError", status: 422 });
    expect(answers(R("POST", "/pulls"), from)).toEqual([503, 422]);

    expect(await twin.branchSha(OWNER, REPO, branch)).toBe(sha);
    expect(twin.repoLabels(OWNER, REPO).filter((l) => l.name === "autoresearch-2")).toHaveLength(1);
    expect(twin.pulls(OWNER, REPO).filter((p) => p.headRef === branch)).toHaveLength(1);
    // The next pass sees it, once.
    const { gh: next } = await adapter();
    expect((await next.listExperimentPulls()).filter((p) => p.headRef === branch)).toHaveLength(1);
  });

  it("a comment or an issue GitHub carried out before answering 5xx appears once (they are not idempotent: looked for, not sent again)", async () => {
    const { gh } = await adapter();
    const [pull] = twin.pulls(OWNER, REPO);
    const from = twin.requests.length;
    inject(R("POST", "/issues/{issue_number}/comments"), { status: 502, carriedOut: true });
    await gh.comment(pull!.number, "Measured twice; keeping it.");
    expect(twin.comments(OWNER, REPO, pull!.number).filter((c) => c.body === "Measured twice; keeping it.")).toHaveLength(1);
    expect(answers(R("POST", "/issues/{issue_number}/comments"), from)).toEqual([502]);

    inject(R("POST", "/issues"), { status: 503, carriedOut: true });
    const number = await gh.createIssue({ title: "autoresearch morning report: night of 2026-03-01", body: "The night is over.", labels: [] });
    const reports = twin.issues(OWNER, REPO).filter((i) => i.title === "autoresearch morning report: night of 2026-03-01");
    expect(reports.map((i) => i.number)).toEqual([number]);

    // Not carried out (a 503 before anything was done): sent again, and it lands once.
    inject(R("POST", "/issues/{issue_number}/comments"), { status: 503 });
    await gh.comment(pull!.number, "Measuring again.");
    expect(twin.comments(OWNER, REPO, pull!.number).filter((c) => c.body === "Measuring again.")).toHaveLength(1);
  });

  it("a request that hangs past the deadline fails the call cleanly; the next call succeeds", async () => {
    const { gh } = await adapter(1000);
    const list = R("GET", "/pulls");
    const from = twin.requests.length;
    hanging.add(list);
    const failed = await gh.listExperimentPulls().catch((err: unknown) => err);
    hanging.delete(list);
    expect(failed).toBeInstanceOf(GitHubError);
    expect((failed as Error).message).toMatch(/^GitHub list pull requests failed/);
    // Every attempt (the first and the retry plugin's) was given up by the client, none answered.
    await twin.waitForIdle(50);
    const hung = answers(list, from);
    expect(hung.length).toBeGreaterThan(1);
    expect(hung.every((s) => s === 0)).toBe(true);

    expect((await gh.listExperimentPulls()).map((p) => p.number).sort()).toEqual(twin.pulls(OWNER, REPO).map((p) => p.number));
    // A write that hangs once is sent again after the deadline and lands once.
    const comments = R("POST", "/issues/{issue_number}/comments");
    inject(comments, "hang");
    const [pull] = twin.pulls(OWNER, REPO);
    await gh.comment(pull!.number, "Still measuring.");
    expect(twin.comments(OWNER, REPO, pull!.number).filter((c) => c.body === "Still measuring.")).toHaveLength(1);
  });

  for (const variant of [
    { status: 429 as const, retryAfter: true },
    { status: 403 as const, retryAfter: true },
    { status: 403 as const, retryAfter: false },
  ]) {
    it(`a ${variant.status} secondary limit ${variant.retryAfter ? "with" : "without"} retry-after: nothing goes out inside the window, then the write lands once`, async () => {
      const { gh, gate } = await adapter();
      const [pull] = twin.pulls(OWNER, REPO);
      const identity = `installation:${installationId}`;
      const before = twin.limiter!.events.length;
      twin.limiter!.storm({ durationMs: 2000, status: variant.status, retryAfter: variant.retryAfter, identity });
      const body = `Noted (${variant.status}, ${variant.retryAfter ? "with" : "without"} retry-after).`;
      if (variant.status === 429) {
        // Probot's retry plugin sends a 429 again; the gate holds it until the window has passed.
        await gh.comment(pull!.number, body);
      } else {
        // Probot's throttling answer to a secondary limit only logs, and a 403 is not retried:
        // the call fails, and the next pass's write waits at the gate until the window has passed.
        await expect(gh.comment(pull!.number, body)).rejects.toMatchObject({ name: "GitHubError", status: 403 });
        await gh.comment(pull!.number, body);
      }

      const refused = twin.limiter!.events.slice(before).filter((e) => e.identity === identity);
      const first = refused[0]!;
      expect(first).toMatchObject({ kind: "storm", status: variant.status });
      expect(first.retryAfter === null).toBe(!variant.retryAfter);
      // The window GitHub named, or a minute when it named none (GitHub's guidance).
      const windowMs = first.retryAfter === null ? 60_000 : first.retryAfter * 1000;
      expect(gate.events[0]).toMatchObject({ status: variant.status, kind: "secondary" });
      expect(gate.events[0]!.until - gate.events[0]!.at).toBeGreaterThanOrEqual(windowMs - 1000);
      const inside = twin.requests.filter((r) => r.installationId === installationId && r.atMs > first.at + 250 && r.atMs < first.at + windowMs - 50);
      expect(inside.map((r) => `+${r.atMs - first.at} ms ${r.route} ${r.status}`)).toEqual([]);
      expect(twin.comments(OWNER, REPO, pull!.number).filter((c) => c.body === body)).toHaveLength(1);
    }, 180_000);
  }
});

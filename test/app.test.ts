// The Probot app's webhook handlers, fed GitHub's example payloads (@octokit/webhooks-examples)
// with the GitHub API mocked by nock: a webhook only triggers a reconcile pass, the pass
// talks to GitHub through Octokit, and the bot's own echoes are ignored.
import { generateKeyPairSync } from "node:crypto";
import nock from "nock";
import { pino } from "pino";
import { Probot, ProbotOctokit } from "probot";
import examples from "@octokit/webhooks-examples";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../src/app.js";
import type { Controller } from "../src/controller.js";
import { clearGitHubCaches } from "../src/github/octokit.js";
import { FakeRunner } from "./support/fakes.js";

type Example = Record<string, unknown> & { action?: string; installation?: { id: number } };

function example(event: string, pick: (e: Example) => boolean): Example {
  const group = (examples as unknown as { name: string; examples: Example[] }[]).find((g) => g.name === event);
  const found = group?.examples.find(pick);
  if (!found) throw new Error(`no ${event} example`);
  return structuredClone(found);
}

const API = "https://api.github.com";
const REPO = "/repos/Codertocat/Hello-World";
const HEAD = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const PEM = privateKey.export({ type: "pkcs1", format: "pem" }).toString();

let probot: Probot;
let controller: Controller;
let unmatched: string[];

beforeEach(async () => {
  // A new bot process: nothing read from GitHub yet.
  clearGitHubCaches();
  nock.disableNetConnect();
  unmatched = [];
  nock.emitter.on("no match", (req: { method?: string; path?: string }) => unmatched.push(`${req.method} ${req.path}`));
  // The resync timer's first look: no installations, so only webhooks start passes here.
  const installations = nock(API).get("/app/installations").query(true).reply(200, []);
  probot = new Probot({
    appId: 1,
    privateKey: PEM,
    secret: "test",
    log: pino({ level: "silent" }),
    Octokit: ProbotOctokit.defaults((o: Record<string, unknown>) => ({
      ...o,
      retry: { enabled: false },
      throttle: { ...(o.throttle as object), enabled: false },
    })),
  });
  await probot.load(
    createApp({ runner: new FakeRunner(), resyncMs: 3_600_000, env: { AUTORESEARCH_APP_SLUG: "autoresearch-bot" }, onController: (c) => (controller = c) }),
  );
  while (!installations.isDone()) await new Promise((r) => setTimeout(r, 10));
  await controller.idle();
});

afterEach(async () => {
  await controller.stop();
  nock.cleanAll();
  nock.emitter.removeAllListeners("no match");
  nock.enableNetConnect();
});

function tokenFor(installationId: number) {
  return nock(API)
    .post(`/app/installations/${installationId}/access_tokens`)
    .reply(201, { token: "ghs_test", expires_at: "2099-01-01T00:00:00Z", permissions: {}, repository_selection: "selected" });
}

describe("webhook handlers", () => {
  it("turn a push into a reconcile pass that reports a missing program.md on the default branch head", async () => {
    const sample = example("push", (e) => e.installation?.id === 1);
    // A push to the default branch (pushes to other branches are the bot's own commits, or seen
    // as their pull request's synchronize event).
    const push = { ...sample, ref: "refs/heads/main", repository: { ...(sample.repository as object), default_branch: "main" } };
    let checkRun: Record<string, unknown> | null = null;
    tokenFor(1);
    const github = nock(API)
      // Commands and notes first: no comments yet.
      .get(`${REPO}/issues/comments`)
      .query(true)
      .reply(200, [])
      .get(`${REPO}/pulls/comments`)
      .query(true)
      .reply(200, [])
      .get(REPO)
      .reply(200, { default_branch: "main" })
      .get(`${REPO}/git/ref/heads%2Fmain`)
      .reply(200, { ref: "refs/heads/main", object: { sha: HEAD, type: "commit" } })
      // The config as Probot reads it: the repository's file at the head, raw, then the
      // owner's .github repository's (at its default branch).
      .get(`${REPO}/contents/.github%2Fautoresearch.yml`)
      .query({ ref: HEAD })
      .matchHeader("accept", /application\/vnd\.github\.v3\.raw/)
      .reply(404, { message: "Not Found" })
      .get("/repos/Codertocat/.github/contents/.github%2Fautoresearch.yml")
      .reply(404, { message: "Not Found" })
      .get(`${REPO}/contents/program.md`)
      .query({ ref: HEAD })
      .reply(404, { message: "Not Found" })
      .get(`${REPO}/contents/train.py`)
      .query({ ref: HEAD })
      .reply(200, { type: "file", encoding: "base64", sha: "abc", content: Buffer.from("LR = 1\n").toString("base64") })
      .get(`${REPO}/commits/${HEAD}/check-runs`)
      .query(true)
      .reply(200, { total_count: 0, check_runs: [] })
      .post(`${REPO}/check-runs`, (body) => {
        checkRun = body;
        return true;
      })
      .reply(201, { id: 7 });

    await probot.receive({ id: "1", name: "push", payload: push as never });
    await controller.idle();

    expect(unmatched).toEqual([]);
    expect(github.isDone()).toBe(true);
    expect(checkRun).toMatchObject({ name: "autoresearch", head_sha: HEAD, status: "completed", conclusion: "failure" });
    expect(JSON.stringify(checkRun)).toContain("program.md was not found on main");
  });

  it("start a pass on every repository of a new installation", async () => {
    const created = example("installation", (e) => e.action === "created");
    const id = created.installation!.id;
    tokenFor(id);
    // The pass starts by reading the repository; failing it here is enough to show it ran.
    const github = nock(API).get(REPO).reply(500, { message: "boom" });

    await probot.receive({ id: "2", name: "installation", payload: created as never });
    await controller.idle();

    expect(github.isDone()).toBe(true);
  });

  it("ignore the bot's own pull request, check run and experiment-branch echoes (no API call at all)", async () => {
    const closed = example("pull_request", (e) => e.action === "closed" && e.installation?.id === 1);
    (closed.sender as { type: string }).type = "Bot";
    const rerequested = example("check_run", (e) => e.action === "rerequested" && !!e.installation);
    (rerequested.sender as { type: string }).type = "Bot";

    // The bot's commit on an experiment branch: not the default branch, nothing to do.
    const sample = example("push", (e) => e.installation?.id === 1);
    const branchPush = { ...sample, ref: "refs/heads/autoresearch/3-deeper", repository: { ...(sample.repository as object), default_branch: "main" } };

    await probot.receive({ id: "3", name: "pull_request", payload: closed as never });
    await probot.receive({ id: "4", name: "check_run", payload: rerequested as never });
    await probot.receive({ id: "5", name: "push", payload: branchPush as never });
    await controller.idle();

    expect(unmatched).toEqual([]);
    expect(nock.pendingMocks()).toEqual([]);
  });

  it("ignore events without an installation (nothing to act for)", async () => {
    const push = example("push", (e) => !e.installation);
    await probot.receive({ id: "5", name: "push", payload: push as never });
    await controller.idle();
    expect(unmatched).toEqual([]);
  });
});

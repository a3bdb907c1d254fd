// Whole nights in miniature through the twins: the bot's real HTTP server receives signed
// webhooks from the GitHub twin, talks to it with Octokit, asks the OpenAI-compatible twin
// for proposals, and trains through the real harness with the local runner. The research
// repository's train.py is a stand-in whose val_bpb follows from its constants, so each
// scripted proposal has a known outcome.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ProbotOctokit } from "probot";
import { afterEach, describe, expect, it } from "vitest";
import { OctokitGitHub } from "../../src/github/octokit.js";
import { toResultsTsv } from "../../src/ledger/index.js";
import {
  APP_ID,
  OPENAI_KEY,
  OWNER,
  REPO,
  ROOT,
  SECRET,
  proposal,
  readTree,
  settled,
  startNight,
  waitFor,
  type Night,
} from "../support/night.js";

let night: Night | null = null;
afterEach(async () => {
  await night?.close();
  night = null;
});

const LR_UP = proposal(
  "Raise LEARNING_RATE to 1e-3",
  "The learning rate is far too low for this budget; ten times higher should train much further.",
  "LEARNING_RATE = 0.0001",
  "LEARNING_RATE = 0.001",
);
const LR_DOWN = proposal(
  "Lower LEARNING_RATE to 1e-5",
  "A smaller step might be more stable.",
  "LEARNING_RATE = 0.001",
  "LEARNING_RATE = 0.00001",
);
const CRASH = proposal(
  "Assert the depth",
  "Checking the depth early should be harmless.",
  "DEPTH = 4\n",
  'DEPTH = 4\nraise RuntimeError("depth check failed")\n',
);
const NOISE = proposal(
  "Two more warmup steps",
  "Slightly longer warmup may smooth the start.",
  "WARMUP_STEPS = 10",
  "WARMUP_STEPS = 12",
);

async function checkRunsOf(n: Night, sha: string) {
  return n.twin.checkRuns(OWNER, REPO, { headSha: sha, name: "val_bpb" });
}

describe("a night through the GitHub and OpenAI twins", () => {
  it("measures a baseline, merges an improvement, closes a regression, a crash and a change within noise", async () => {
    night = await startNight({ startBot: false });
    const n = night;
    n.openai.script(LR_UP, LR_DOWN, CRASH, NOISE);
    await n.startBot();
    await n.install();

    for (let i = 1; i <= 5; i++) await waitFor(`experiment ${i} to finish`, () => settled(n, i));
    await n.stopBot();
    await n.twin.waitForIdle();

    const [baseline, up, down, crash, noise] = n.experiments();
    expect(n.experiments()).toHaveLength(5);

    // The baseline measures the unchanged train.py and is closed, not merged.
    expect(baseline!.record.kind).toBe("baseline");
    expect(baseline!.merged).toBe(false);
    expect(baseline!.labels).toContain("autoresearch:baseline");
    expect(baseline!.record.measurements[0]!.result.val_bpb).toBeCloseTo(1.105, 6);

    // The improvement is merged: the default branch now has it.
    expect(up!.merged).toBe(true);
    expect(up!.labels).toContain("autoresearch:keep");
    expect(up!.record.decision?.verdict).toBe("keep");
    expect(up!.record.decision?.delta).toBeCloseTo(-0.1, 6);
    const mainTrain = await n.twin.readFile(OWNER, REPO, "main", "train.py");
    expect(mainTrain).toContain("LEARNING_RATE = 0.001\n");
    const [upCheck] = await checkRunsOf(n, up!.record.headSha);
    expect(upCheck).toMatchObject({ status: "completed", conclusion: "success" });
    expect(upCheck!.output.title).toContain("1.005000");

    // The regression is closed with a reason, measured against the new baseline.
    expect(down!.merged).toBe(false);
    expect(down!.labels).toContain("autoresearch:discard");
    expect(down!.record.baselineBpb).toBeCloseTo(1.005, 6);
    expect((await checkRunsOf(n, down!.record.headSha))[0]).toMatchObject({ conclusion: "failure" });
    // The PR body says why, written with the closing: no comment (a write GitHub counts).
    expect(n.twin.pulls(OWNER, REPO).find((p) => p.number === down!.number)!.body).toMatch(/Discarded: the change did not improve val_bpb enough/);
    expect(n.twin.comments(OWNER, REPO, down!.number)).toEqual([]);

    // The crash is closed with the exception in the check run.
    expect(crash!.labels).toContain("autoresearch:crash");
    const [crashCheck] = await checkRunsOf(n, crash!.record.headSha);
    expect(crashCheck!.conclusion).toBe("failure");
    expect(`${crashCheck!.output.title} ${crashCheck!.output.text}`).toContain("RuntimeError: depth check failed");

    // Within noise: discarded with a neutral check run.
    expect(noise!.labels).toContain("autoresearch:discard");
    expect((await checkRunsOf(n, noise!.record.headSha))[0]).toMatchObject({ conclusion: "neutral" });

    // Every experiment commit touches train.py only.
    for (const e of [up!, down!, crash!, noise!]) {
      const before = await readTreeAt(n, e.record.baseSha);
      const after = await readTreeAt(n, e.record.headSha);
      const changed = Object.keys({ ...before, ...after }).filter((p) => before[p] !== after[p]);
      expect(changed).toEqual(["train.py"]);
    }

    // Branches and commits went up by git push, not as API writes, and the finished
    // experiments' branches are deleted (by push too).
    const routes = n.twin.requestStats((q) => q.auth === "installation").byRoute;
    expect(Object.keys(routes).filter((r) => /git\/refs|\/contents\/|git\/commits|git\/trees/.test(r) && !r.startsWith("GET"))).toEqual([]);
    expect(routes["GIT receive-pack {owner}/{repo}"]).toBeGreaterThanOrEqual(5);
    // (The last one's may still be there: the bot was stopped as soon as it was decided.)
    const left = Object.keys(await n.twin.branches(OWNER, REPO)).filter((b) => b.startsWith("autoresearch/"));
    expect(left.length).toBeLessThanOrEqual(1);
    const [upCommit] = await n.twin.log(OWNER, REPO, up!.record.headSha, 1);
    expect(upCommit!.author.name).toMatch(/\[bot\]$/);

    // Each experiment trained exactly once (the crash included).
    const runs = (await readFile(n.runLog, "utf8")).trim().split("\n");
    expect(runs).toHaveLength(5);
    expect(new Set(runs).size).toBe(5);

    // The ledger rebuilds from GitHub alone as autoresearch's results.tsv.
    const token = await n.twin.installationToken(n.installationId!);
    const gh = new OctokitGitHub(new ProbotOctokit({ auth: token, baseUrl: n.apiUrl }), { owner: OWNER, repo: REPO });
    const tsv = toResultsTsv((await gh.listExperimentPulls()).flatMap((p) => (p.record ? [p.record] : [])));
    const rows = tsv.trim().split("\n").slice(1).map((r) => r.split("\t"));
    expect(rows.map((r) => r[3])).toEqual(["keep", "keep", "discard", "crash", "discard"]);
    expect(rows.map((r) => r[1])).toEqual(["1.105000", "1.005000", "1.405000", "0.000000", "1.005200"]);
  }, 180_000);

  it("with AUTORESEARCH_GIT_PUSH=off, commits and deletes branches through the REST API", async () => {
    night = await startNight({ startBot: false, env: { AUTORESEARCH_GIT_PUSH: "off" } });
    const n = night;
    n.openai.script(LR_UP);
    await n.startBot();
    await n.install();
    for (let i = 1; i <= 2; i++) await waitFor(`experiment ${i} to finish`, () => settled(n, i));
    const [baseline, up] = n.experiments();
    expect(up!.merged).toBe(true);
    expect(await n.twin.readFile(OWNER, REPO, "main", "train.py")).toContain("LEARNING_RATE = 0.001\n");
    // The baseline's branch is deleted once it is decided (with writes to spare).
    const baseRef = n.twin.pulls(OWNER, REPO).find((p) => p.number === baseline!.number)!.headRef;
    await waitFor("the baseline's branch to be deleted", async () => !(baseRef in (await n.twin.branches(OWNER, REPO))));
    const routes = n.twin.requestStats((q) => q.auth === "installation").byRoute;
    expect(routes["POST /repos/{owner}/{repo}/git/refs"]).toBeGreaterThanOrEqual(2);
    expect(routes["PUT /repos/{owner}/{repo}/contents/{path}"]).toBe(1);
    expect(routes["DELETE /repos/{owner}/{repo}/git/refs/{ref}"]).toBeGreaterThanOrEqual(1);
    expect(Object.keys(routes).filter((r) => r.startsWith("GIT"))).toEqual([]);
  }, 180_000);

  it("re-measures a kept change when the default branch moved while it trained, and merges only then", async () => {
    const files = await readTree(path.join(ROOT, "test/fixtures/research-repo"));
    files["train.py"] = files["train.py"]!.replace("RUN_SECONDS = 2.0", "RUN_SECONDS = 4.0");
    night = await startNight({ files, startBot: false });
    const n = night;
    n.openai.script(LR_UP);
    await n.startBot();
    await n.install();

    // While experiment 2 trains, a person pushes new guidance to main.
    await waitFor("experiment 2 to train", () =>
      n.experiments().find((e) => e.record.n === 2 && e.state === "open" && e.record.state === "queued"),
    );
    const humanSha = await n.twin.pushCommit(OWNER, REPO, "main", { "program.md": "# Research program\n\nFocus on the optimizer.\n" }, "Steer: optimizer", { user: OWNER });

    const done = await waitFor("experiment 2 to be merged", () => n.experiments().find((e) => e.record.n === 2 && e.merged), 120_000);
    await n.stopBot();
    await n.twin.waitForIdle();

    // It was measured on top of the person's commit, and that measured commit is what merged.
    expect(done.record.baseSha).toBe(humanSha);
    expect(done.record.attempt).toBe(2);
    expect(done.record.reapplied).toMatch(/moved .* re-applied .* measured again/s);
    const checks = n.twin.checkRuns(OWNER, REPO, { name: "val_bpb" }).filter((c) => c.externalId.endsWith("-2-1") || c.externalId.endsWith("-2-2"));
    expect(checks).toHaveLength(2);
    expect(new Set(checks.map((c) => c.headSha)).size).toBe(2);
    const log = await n.twin.log(OWNER, REPO, "main", 5);
    expect(log[0]!.parents).toEqual([humanSha]);
    expect(await n.twin.readFile(OWNER, REPO, "main", "program.md")).toContain("optimizer");
    expect(await n.twin.readFile(OWNER, REPO, "main", "train.py")).toContain("LEARNING_RATE = 0.001\n");
    // baseline + the first measurement + the re-measurement
    expect((await readFile(n.runLog, "utf8")).trim().split("\n")).toHaveLength(3);
  }, 180_000);

  it("finishes an experiment exactly once when the bot process is killed mid-run and started again", async () => {
    const files = await readTree(path.join(ROOT, "test/fixtures/research-repo"));
    files["train.py"] = files["train.py"]!.replace("RUN_SECONDS = 2.0", "RUN_SECONDS = 5.0");
    night = await startNight({ files, startBot: false });
    const n = night;
    n.openai.script(LR_UP);
    const env = {
      ...process.env,
      BOT_BASE_URL: n.apiUrl,
      BOT_APP_ID: String(APP_ID),
      BOT_PRIVATE_KEY: n.privateKey,
      BOT_SECRET: SECRET,
      BOT_RUNS_DIR: n.runsDir,
      BOT_CACHE_DIR: path.join(n.workDir, "cache"),
      AUTORESEARCH_TEST_RUN_LOG: n.runLog,
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_BASE_URL: n.openaiBaseURL,
      TMPDIR: n.workDir,
    };
    // Each bot process listens on a port of its own; webhooks go to the one running.
    const first = await spawnBot(env);
    n.twin.setWebhookUrl(APP_ID, first.webhookUrl);
    await n.install();

    await waitFor("the baseline to train", () => n.experiments().find((e) => e.record.n === 1 && e.record.state === "queued"));
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));

    const second = await spawnBot(env);
    n.twin.setWebhookUrl(APP_ID, second.webhookUrl);
    try {
      await waitFor("experiment 2 to be merged", () => n.experiments().find((e) => e.record.n === 2 && e.merged), 120_000);
    } finally {
      second.kill("SIGTERM");
      await new Promise((r) => second.once("exit", r));
    }
    await n.twin.waitForIdle();
    const baseline = n.experiments()[0]!;
    expect(baseline.record.measurements).toHaveLength(1);
    const checks = n.twin.checkRuns(OWNER, REPO, { headSha: baseline.record.headSha, name: "val_bpb" });
    expect(checks).toHaveLength(1);
    expect(checks[0]).toMatchObject({ status: "completed", conclusion: "success" });
    // The baseline and experiment 2 each trained once, the kill notwithstanding.
    expect((await readFile(n.runLog, "utf8")).trim().split("\n")).toHaveLength(2);
  }, 180_000);
});

async function readTreeAt(n: Night, sha: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of await n.twin.listFiles(OWNER, REPO, sha)) out[p] = (await n.twin.readFile(OWNER, REPO, sha, p)) ?? "";
  return out;
}

/** The bot in a process of its own, once it listens: the process and its webhook URL. */
async function spawnBot(env: NodeJS.ProcessEnv): Promise<ChildProcess & { webhookUrl: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "test/support/bot-main.ts")], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const webhookUrl = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const ready = /^ready (\S+)\n/m.exec(out); // the whole line: a chunk can end inside the URL
      if (ready) resolve(ready[1]!);
    });
    child.once("exit", (code) => reject(new Error(`bot exited with ${code}: ${err.slice(-2000)}`)));
  });
  return Object.assign(child, { webhookUrl });
}

// Two bot processes on one installation (two real HTTP servers with their own local runners on
// one run folder, as two bots started on one machine would be), with the webhooks going to one
// and then the other: the lock file elects one leader, so every experiment number, pull request
// and run exists once. Halfway the leader stops and the other one finishes the night.
import path from "node:path";
import { readFile } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { newIdentity, timing, type LeaderElector } from "../../src/leader/elector.js";
import { LockFileElector } from "../../src/leader/lockfile.js";
import { LocalRunner } from "../../src/runner/local.js";
import { startBot, type BotHandle } from "../../twins/bot.js";
import { APP_ID, COUNTING_HARNESS, OPENAI_KEY, OWNER, REPO, ROOT, SECRET, proposal, readTree, settled, startNight, waitFor, type Night } from "../support/night.js";

let night: Night | null = null;
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  await night?.close();
  night = null;
});

const PROPOSALS = [
  proposal("Raise LEARNING_RATE to 1e-3", "Ten times higher should train further.", "LEARNING_RATE = 0.0001", "LEARNING_RATE = 0.001"),
  proposal("Two more warmup steps", "Slightly longer warmup may smooth the start.", "WARMUP_STEPS = 10", "WARMUP_STEPS = 12"),
  proposal("Lower LEARNING_RATE to 1e-5", "A smaller step might be more stable.", "LEARNING_RATE = 0.001", "LEARNING_RATE = 0.00001"),
  // Two more than the night uses: a proposal the leader was waiting for when it stopped is lost
  // with it (as with any bot that stops), and the other bot asks for the next one.
  proposal("Three more warmup steps", "A longer warmup again.", "WARMUP_STEPS = 10", "WARMUP_STEPS = 13"),
  proposal("Four more warmup steps", "A longer warmup still.", "WARMUP_STEPS = 10", "WARMUP_STEPS = 14"),
];

interface Replica {
  bot: BotHandle;
  leader: LeaderElector;
  stop(): Promise<void>;
}

async function replica(n: Night, i: number): Promise<Replica> {
  const log = (m: string) => n.logs.push(`[bot ${i}] ${m}`);
  const leader = new LockFileElector(path.join(n.runsDir, "leader.lock"), newIdentity(), timing(3000), { info: log, warn: log });
  const runner = new LocalRunner({
    runsDir: n.runsDir,
    harnessPath: COUNTING_HARNESS,
    cacheDir: path.join(n.workDir, "cache"),
    pollMs: 200,
    env: { AUTORESEARCH_TEST_RUN_LOG: n.runLog, TMPDIR: n.workDir },
    active: () => leader.isLeader(),
    logger: { info: log, warn: log, error: log },
  });
  const bot = await startBot({
    baseUrl: n.apiUrl,
    appId: APP_ID,
    privateKey: n.privateKey,
    secret: SECRET,
    runner,
    leader,
    resyncMs: 1000,
    env: { OPENAI_API_KEY: OPENAI_KEY, OPENAI_BASE_URL: n.openaiBaseURL },
    logSink: (line) => n.logs.push(`[bot ${i}] ${line}`),
  });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    runner.close();
    await bot.stop();
    await leader.stop();
  };
  stops.push(stop);
  return { bot, leader, stop };
}

describe("two bots on one installation", () => {
  it("run every experiment once: one leads, the other drops its webhooks, and takes over when the leader stops", async () => {
    // Four experiments make the night: no run of a fifth outlives the test.
    const files = await readTree(path.join(ROOT, "test/fixtures/research-repo"));
    files[".github/autoresearch.yml"] = `${(files[".github/autoresearch.yml"] ?? "").trimEnd()}\nnight:\n  max_experiments: 4\n`;
    night = await startNight({ startBot: false, files });
    const n = night;
    n.openai.script(...PROPOSALS);
    const bots = [await replica(n, 0), await replica(n, 1)];
    // Webhooks arrive at either: they go to one bot, then the other, all night.
    let turn = 0;
    const flip = setInterval(() => n.twin.setWebhookUrl(APP_ID, bots[turn++ % 2]!.bot.webhookUrl), 300);
    stops.push(async () => clearInterval(flip));
    n.twin.setWebhookUrl(APP_ID, bots[0]!.bot.webhookUrl);
    await n.install();

    await waitFor("experiment 2 to finish", () => settled(n, 2));
    const leading = bots.findIndex((b) => b.leader.isLeader());
    expect(leading).toBeGreaterThanOrEqual(0);
    expect(bots.filter((b) => b.leader.isLeader())).toHaveLength(1);
    // The leader stops (an update, a restart): the other one finishes the night.
    await bots[leading]!.stop();
    for (let i = 3; i <= 4; i++) await waitFor(`experiment ${i} to finish`, () => settled(n, i));
    expect(bots[1 - leading]!.leader.isLeader()).toBe(true);
    await bots[1 - leading]!.stop();
    await n.twin.waitForIdle();

    // Every experiment number, pull request and run exactly once (a night that crossed
    // midnight UTC may have opened a fifth).
    const pulls = n.twin.pulls(OWNER, REPO);
    const numbers = n.experiments().map((e) => e.record.n);
    expect(pulls.length).toBeGreaterThanOrEqual(4);
    expect(numbers).toEqual(pulls.map((_, i) => i + 1));
    expect(new Set(pulls.map((p) => p.headRef)).size).toBe(pulls.length);
    const runs = (await readFile(n.runLog, "utf8")).trim().split("\n").map((l) => l.split(" ")[0]);
    expect(new Set(runs).size).toBe(runs.length);
    expect(runs.length).toBeGreaterThanOrEqual(4);
    expect(runs.length).toBeLessThanOrEqual(pulls.length);
    // Each led in turn: the first until it stopped, then the other.
    const led = (i: number) => n.logs.filter((l) => l.startsWith(`[bot ${i}] leader election: this bot`) && / leads:/.test(l));
    expect(led(leading)).toHaveLength(1);
    expect(led(1 - leading)).toHaveLength(1);
  }, 180_000);
});

// npm run chaos -- --experiments 20 --kills 10 --seed S [--slots N] [--json FILE]
//
// A night through the twins (GitHub, Kubernetes with its kubelet running the real harness on a
// stub research project), with the bot in its own process (scripts/chaos-bot.ts) killed with
// SIGKILL at seeded points and started again. Each kill lands on one of the bot's writes (to
// GitHub, or a Job or Secret created or deleted): either the write is cut before it is carried
// out ("drop"), or after, before the bot hears the answer ("cut-after"); that covers every
// window between two writes of a pass. At the end it
// checks what a night must never show, prints it, and writes it as JSON:
//   lost              experiments the night owed that were never decided
//   duplicated        PRs of one experiment number, training Jobs created twice, merges of one experiment
//   unfinishedChecks  check runs left in progress or queued
//   orphans           autoresearch/ branches without an open PR, and Jobs left behind
//   decided           experiments decided (the goal: the number asked for)
// The exit code is 0 when everything but `decided` is 0 and `decided` is the number asked for.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { decodeRecord } from "../src/ledger/index.js";
import { mulberry32 } from "../src/proposers/mutate.js";
import { singleRun } from "../test/support/fakes.js";
import { startKubeTwin } from "../twins/kube.js";
import { newAppKey, readTree } from "../test/support/night.js";
import { GitHubTwin } from "../twins/github/index.js";
import { ROOT } from "./demo-project.js";

const OWNER = "chaos";
const REPO = "research";
const APP_ID = 9200;
const SECRET = "chaos-secret";

const { values } = parseArgs({
  options: {
    experiments: { type: "string", default: "20" },
    kills: { type: "string", default: "10" },
    seed: { type: "string", default: "1" },
    slots: { type: "string", default: "2" },
    json: { type: "string" },
    "timeout-seconds": { type: "string", default: "900" },
  },
});
const experiments = Number(values.experiments);
const kills = Number(values.kills);
const seed = Number(values.seed);
const slots = Number(values.slots);
const timeoutMs = Number(values["timeout-seconds"]) * 1000;
for (const [name, v, lo] of [["--experiments", experiments, 1], ["--kills", kills, 0], ["--seed", seed, 0], ["--slots", slots, 1], ["--timeout-seconds", timeoutMs / 1000, 1]] as const) {
  if (!Number.isInteger(v) || v < lo) {
    console.error(`${name} must be a whole number of at least ${lo}`);
    process.exit(2);
  }
}

// A seed names one schedule of kills.
const random = mulberry32(seed);
const t0 = Date.now();
const log = (line: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${line}`);

// The kills: distinct write numbers spread over the writes a night of this size makes (about
// eighteen an experiment here, Jobs and Secrets included, with the baseline and the labels of
// every start), each cut before or after the write is carried out.
const span = Math.max(kills + 1, 14 * experiments);
const plan = new Map<number, "drop" | "cut-after">();
while (plan.size < Math.min(kills, span - 1)) plan.set(2 + Math.floor(random() * (span - 1)), random() < 0.5 ? "drop" : "cut-after");

/** The bot process running now (null between a kill and the next start). */
const current: { bot: ChildProcess | null } = { bot: null };
let writes = 0;
const done: { write: number; route: string; mode: string }[] = [];
/** Planned kills not carried out yet. One whose write comes from a process already killed (a
 * request it sent before SIGKILL, served after) waits for the next write of a live bot, so that
 * every planned kill happens. */
const owed: ("drop" | "cut-after")[] = [];
/** Every write of the bot, to GitHub or to Kubernetes, counts; a planned one kills the bot. */
function chaosPoint(route: string): "drop" | "cut-after" | undefined {
  writes += 1;
  const planned = plan.get(writes);
  if (planned) owed.push(planned);
  if (!owed.length) return undefined;
  if (!current.bot) {
    if (planned) log(`write ${writes} (${route}) came from a process already killed: the kill planned there moves to the next write`);
    return undefined;
  }
  const mode = owed.shift()!;
  done.push({ write: writes, route, mode });
  log(`kill ${done.length}/${plan.size}: SIGKILL at write ${writes} (${route}), ${mode === "drop" ? "before it is carried out" : "after it was carried out"}`);
  current.bot.kill("SIGKILL");
  current.bot = null;
  return mode;
}
const twin = new GitHubTwin({ limits: false, writeHook: (route) => chaosPoint(route) });
const { url } = await twin.start();
const kube = await startKubeTwin({ writeHook: (method, kind) => chaosPoint(`${method} kubernetes ${kind}`) });
const privateKey = newAppKey();
twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: null, slug: "autoresearch-bot" });
const files = await readTree(path.join(ROOT, "test/fixtures/research-repo"));
files[".github/autoresearch.yml"] = singleRun(
  ["runner: kubernetes", `slots: ${slots}`, "proposer:\n  kind: mutate", "noise:\n  baseline_runs: 1\n  max_runs: 1\n  rebaseline_every: 1000", `night:\n  max_experiments: ${experiments + 1}`].join("\n"),
);
await twin.createRepo(OWNER, REPO, files);

let starts = 0;
async function startBot(): Promise<void> {
  starts += 1;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts/chaos-bot.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      BOT_BASE_URL: url, BOT_APP_ID: String(APP_ID), BOT_PRIVATE_KEY: privateKey, BOT_SECRET: SECRET,
      KUBE_URL: kube.url, KUBE_TOKEN: kube.twin.token, BOT_RESYNC_MS: "1000", BOT_LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? "",
      AUTORESEARCH_APP_SLUG: "autoresearch-bot",
    },
    stdio: ["ignore", "pipe", process.env.CHAOS_LOG_LEVEL ? "inherit" : "ignore"],
  });
  current.bot = child;
  child.once("exit", (code, signal) => {
    if (current.bot !== child) return; // killed by the plan
    current.bot = null;
    log(`the bot exited by itself (${signal ?? `code ${code}`}); starting it again`);
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    if (process.env.CHAOS_LOG_LEVEL) process.stderr.write(d);
  });
  for (const t = Date.now(); !/^ready (\S+)\n/m.test(out); ) {
    if (child.exitCode !== null || child.signalCode !== null) return; // killed while starting: the loop starts another
    if (Date.now() - t > 60_000) throw new Error(`the bot did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  twin.setWebhookUrl(APP_ID, /^ready (\S+)\n/m.exec(out)![1]!);
}

type Pull = ReturnType<GitHubTwin["pulls"]>[number];
const ownPulls = (): { pull: Pull; n: number; kind: string; decided: boolean }[] =>
  twin.pulls(OWNER, REPO).flatMap((pull) => {
    const r = pull.user === "autoresearch-bot[bot]" ? decodeRecord(pull.body ?? "") : null;
    return r ? [{ pull, n: r.n, kind: r.kind, decided: r.decision !== null && pull.state === "closed" }] : [];
  });
/** autoresearch/ branches that no open PR uses. */
async function leftBranches(): Promise<string[]> {
  const open = new Set(twin.pulls(OWNER, REPO).filter((p) => p.state === "open").map((p) => p.headRef));
  return Object.keys(await twin.branches(OWNER, REPO)).filter((b) => b.startsWith("autoresearch/") && !open.has(b));
}
const decidedCount = () => new Set(ownPulls().filter((p) => p.kind === "experiment" && p.decided).map((p) => p.n)).size;

log(`chaos: ${experiments} experiments, ${slots} slot(s), ${plan.size} kills (seed ${seed}) at writes ${[...plan.keys()].sort((a, b) => a - b).join(", ")}`);
await startBot();
await twin.installApp(OWNER, [REPO]);
let lastShown = 0;
let quietSince: number | null = null;
for (;;) {
  if (!current.bot) {
    // Killed: a new process after a pause, as a restarted pod would come back.
    await new Promise((r) => setTimeout(r, 200 + Math.floor(random() * 800)));
    await startBot();
    continue;
  }
  const n = decidedCount();
  const settled = n >= experiments && ownPulls().every((p) => p.pull.state === "closed") && kube.twin.jobs.size === 0;
  // Settled, then what the bot does when it is idle: finished branches are deleted when the
  // write budget has room (within the minute), so they count as left behind only after that.
  quietSince = settled ? (quietSince ?? Date.now()) : null;
  if (quietSince !== null && Date.now() - quietSince > 5000 && ((await leftBranches()).length === 0 || Date.now() - quietSince > 90_000)) break;
  if (Date.now() - t0 > timeoutMs) {
    log(`timed out after ${Math.round(timeoutMs / 1000)} s`);
    break;
  }
  if (Date.now() - lastShown > 10_000) {
    lastShown = Date.now();
    log(`${n} of ${experiments} experiments decided, ${writes} writes, ${starts} bot start(s)`);
  }
  await new Promise((r) => setTimeout(r, 250));
}
const running = current.bot;
current.bot = null;
if (running) {
  running.kill("SIGTERM");
  await new Promise((r) => running.once("exit", r));
}

// What the night left behind.
const pulls = ownPulls();
const byN = new Map<number, Pull[]>();
for (const p of pulls) byN.set(p.n, [...(byN.get(p.n) ?? []), p.pull]);
const duplicatePulls = [...byN.values()].reduce((sum, list) => sum + list.length - 1, 0);
const jobNames = kube.twin.created.filter((j) => j.metadata?.labels?.["autoresearch.dev/role"] === "trainer").map((j) => String(j.metadata.name));
const duplicateRuns = jobNames.length - new Set(jobNames).size;
const duplicateMerges = [...byN.values()].reduce((sum, list) => sum + Math.max(0, list.filter((p) => p.merged).length - 1), 0);
const unfinished = twin.checkRuns(OWNER, REPO).filter((c) => c.status !== "completed");
const orphanBranches = await leftBranches();
const decided = decidedCount();
const result = {
  seed,
  experiments,
  kills: done.length,
  killsBefore: done.filter((k) => k.mode === "drop").length,
  killsAfter: done.filter((k) => k.mode === "cut-after").length,
  botStarts: starts,
  writes,
  wallSeconds: Math.round((Date.now() - t0) / 100) / 10,
  lost: Math.max(0, experiments - decided),
  duplicated: duplicatePulls + duplicateRuns + duplicateMerges,
  unfinishedChecks: unfinished.length,
  orphans: orphanBranches.length + kube.twin.jobs.size,
  decided,
  details: {
    duplicatePulls,
    duplicateRuns: jobNames.filter((name, i) => jobNames.indexOf(name) !== i),
    duplicateMerges,
    unfinishedChecks: unfinished.map((c) => `${c.name} on ${c.headSha.slice(0, 7)}: ${c.status}`),
    orphanBranches,
    leftoverJobs: [...kube.twin.jobs.keys()],
    killedAt: done.map((k) => `${k.write} ${k.route} (${k.mode})`),
    lastWrites: twin.requests.filter((q) => q.write && q.auth === "installation").slice(-8).map((q) => `${q.at.slice(11, 19)} ${q.method} ${q.path} ${q.status}`),
  },
};
log(`lost ${result.lost}, duplicated ${result.duplicated}, unfinishedChecks ${result.unfinishedChecks}, orphans ${result.orphans}, decided ${decided} of ${experiments}` +
  ` (${result.kills} kills, ${starts} bot starts, ${writes} writes, ${result.wallSeconds} s)`);
for (const [k, v] of Object.entries(result.details)) if (Array.isArray(v) ? v.length : v) log(`  ${k}: ${Array.isArray(v) ? v.join("; ") : v}`);
if (values.json) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
await kube.twin.stop();
await twin.stop();
const clean = result.lost === 0 && result.duplicated === 0 && result.unfinishedChecks === 0 && result.orphans === 0 && decided === experiments;
process.exit(clean ? 0 : 1);

// npm run bench:scale -- --slots 64 --experiments 500 --json FILE
//
// What the bot costs at cluster scale, in three parts; it prints its figures and writes them as
// JSON. Figures depend on the machine: compare runs on one machine only.
//
// 1. The bot's own cost. The GitHub twin's limits, the client's throttling and the bot's own
//    write budget are off (set to their maximum); a runner
//    double with --slots slots runs each experiment for --run-seconds (default 1-5 s), holding
//    those submitted beyond its slots until one frees (the repository's queue_ahead is
//    --queue-ahead, default the slots); a stand-in model answers proposals after
//    --model-latency seconds. The bot runs as its own process (scripts/bench-scale-bot.ts), so
//    its CPU time and memory are its own, compiled to JavaScript first as `npm start` runs it
//    (under tsx, the transpiler's own memory would count as the bot's). Keys: slotDuty (% of slot time spent training;
//    slotDutyReachable: the most it could be, as only the first baseline trains until the model first answers),
//    cpuMsPerExperiment, peakRssMb, readsPerExperiment, writesPerExperiment, passP50Ms,
//    passP99Ms; and what the twins cost beside it on this machine (twinCpuMsPerExperiment,
//    machineCpuPercent: where that nears 100, the machine, not the bot, sets the slot duty).
// 2. Within GitHub's limits. The twin enforces them and the bot throttles as in production, for
//    --limited-seconds of wall time. Keys: experimentsPerHour (the rate sustained), limitErrors.
//    BENCH_CPU_PROF=DIR writes the bot process's V8 CPU profile there.
// 3. Reads as the ledger grows: a ledger of --ledger (default 1,000) closed experiments, read by the
//    Octokit port: the first listing of a process and the ones after. Keys: ledger.
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { ProbotOctokit } from "probot";
import { clearGitHubCaches, OctokitGitHub } from "../src/github/octokit.js";
import { branchName, decodeRecord, renderBody } from "../src/ledger/index.js";
import type { ExperimentRecord } from "../src/types.js";
import { newAppKey } from "../twins/bot.js";
import { GitHubTwin } from "../twins/github/index.js";
import { ROOT } from "./demo-project.js";
import { perExperimentByEndpoint } from "./demo-summary.js";
import { quantile } from "./demo-slots.js";
import { procCpuMs } from "./proc-cpu.js";
import { ModelDouble } from "./model-double.js";

const OWNER = "bench";
const REPO = "research";
const APP_ID = 9100;
const SECRET = "bench-secret";
const TRAIN = [
  "# constants for the proposals to change",
  ...["LR = 0.04", "WARMUP = 100", "DEPTH = 8", "WIDTH = 512", "HEADS = 8", "BATCH = 64", "DROPOUT = 0.1", "DECAY = 0.01", "BETA1 = 0.9", "BETA2 = 0.95", "CLIP = 1.0", "STEPS = 1000"],
  "",
].join("\n");

const { values } = parseArgs({
  options: {
    slots: { type: "string", default: "64" },
    experiments: { type: "string", default: "500" },
    json: { type: "string" },
    "model-latency": { type: "string", default: "2" },
    "limited-seconds": { type: "string", default: "120" },
    "run-seconds": { type: "string", default: "1-5" },
    ledger: { type: "string", default: "1000" },
    "queue-ahead": { type: "string" },
  },
});
const slots = Number(values.slots);
const experiments = Number(values.experiments);
const latencyMs = Number(values["model-latency"]) * 1000;
const limitedSeconds = Number(values["limited-seconds"]);
const ledgerSize = Number(values.ledger);
// Runs of seconds want as many queued as there are slots (README, "Parallel slots").
const queueAhead = values["queue-ahead"] === undefined ? slots : Number(values["queue-ahead"]);
const runSeconds = /^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(values["run-seconds"]);
if (!runSeconds || Number(runSeconds[1]) <= 0 || Number(runSeconds[1]) > Number(runSeconds[2]) || Number(runSeconds[2]) > 3600) {
  console.error("--run-seconds must be MIN-MAX in seconds, e.g. 1-5 (at most 3600)");
  process.exit(2);
}
const runMs: [number, number] = [Number(runSeconds[1]) * 1000, Number(runSeconds[2]) * 1000];
for (const [name, v, lo, hi] of [["--slots", slots, 1, 64], ["--experiments", experiments, 1, 100_000], ["--ledger", ledgerSize, 0, 100_000], ["--queue-ahead", queueAhead, 0, 64]] as const) {
  if (!Number.isInteger(v) || v < lo || v > hi) {
    console.error(`${name} must be a whole number from ${lo} to ${hi}`);
    process.exit(2);
  }
}

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const round = (x: number | null, d = 1) => (x === null ? null : +x.toFixed(d));

function config(extra: string[] = []): string {
  return [`slots: ${slots}`, `queue_ahead: ${queueAhead}`, "budget_seconds: 10", "min_delta: auto", "proposer:", "  kind: openai", "  model: bench-double", ...extra, ""].join("\n");
}

/** CPU time of this process (the twins and the benchmark) and of its finished children (the bot once it exited, the twin's git processes). */
const processTreeCpuMs = () => procCpuMs({ self: true, children: true });

interface BotStats {
  cpuMs: number;
  /** Of cpuMs, in the kernel (the bot's sockets, mostly). */
  cpuSystemMs: number;
  /** Of its child processes (git). */
  childCpuMs: number;
  peakRssMb: number;
  /** The V8 heap (used and reserved) and memory outside it when the resident size peaked, MB. */
  atPeak: { heapUsed: number; heapTotal: number; external: number };
  passes: number[];
  busyMs: number;
  /** Slot time spent training over the night, and from the first experiment after the night's first baseline. */
  duty: number;
  dutyAfterBaseline: number;
  /** The most slot time that could have trained: one slot (the first baseline's) until the first experiment started, all after. */
  reachableDuty: number;
  /** Slot idle time between runs, ms: from a run's end to the start of the run that took its slot. */
  idle: { p50: number | null; p90: number | null; mean: number | null };
  runs: number;
  first: number;
  last: number;
}

// BENCH_CPU_PROF=DIR: the bot process writes a V8 CPU profile there (open it in Chrome's DevTools).
const profile = process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];

/**
 * The bot compiled to JavaScript, as `npm start` runs it: the project's TypeScript into a folder
 * under the package (so that its node_modules resolve), once per benchmark.
 */
async function compiledBot(): Promise<string> {
  const out = path.join(ROOT, ".cache", "bench-scale");
  log("compiling the bot (tsc)");
  await new Promise<void>((resolve, reject) => {
    const tsc = spawn(process.execPath, [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json", "--outDir", out, "--noEmit", "false", "--sourceMap", "false", "--declaration", "false", "--incremental", "false"], { cwd: ROOT, stdio: "inherit" });
    tsc.once("error", reject);
    tsc.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tsc exited ${code}`))));
  });
  return path.join(out, "scripts/bench-scale-bot.js");
}
const botEntry = await compiledBot();

/** A night against the twin with the bot in its own process; ends when `done` says so (or at `deadline`). */
async function night(o: { limits: boolean; done: (decided: number) => boolean; deadlineMs: number; runMs: [number, number] }) {
  const twin = new GitHubTwin({ limits: o.limits ? {} : false });
  const { url } = await twin.start();
  const privateKey = newAppKey();
  twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: null, slug: "autoresearch-bot" });
  await twin.createRepo(OWNER, REPO, { "program.md": "# Research program\n\nLower val_bpb.\n", "train.py": TRAIN, ".github/autoresearch.yml": config(["prepare_command: null", "prepare_files: []"]) });
  const model = new ModelDouble(latencyMs, async () => ({ "train.py": (await twin.readFile(OWNER, REPO, "main", "train.py")) ?? "" }), ["train.py"]).twin;
  const { baseURL } = await model.start();
  const child: ChildProcess = spawn(process.execPath, [...profile, botEntry], {
    cwd: ROOT,
    env: {
      ...process.env,
      BOT_BASE_URL: url, BOT_APP_ID: String(APP_ID), BOT_PRIVATE_KEY: privateKey, BOT_SECRET: SECRET,
      BENCH_SLOTS: String(slots), BENCH_RUN_MIN_MS: String(o.runMs[0]), BENCH_RUN_MAX_MS: String(o.runMs[1]),
      BENCH_THROTTLE: o.limits ? "on" : "off", OPENAI_API_KEY: model.apiKey, OPENAI_BASE_URL: baseURL, BOT_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error",
      AUTORESEARCH_RESYNC_SECONDS: "300",
      // Part 1 measures the bot, not GitHub's limits: its own write budget (80 a minute, 500 an
      // hour by default) would hold every pass at its first write once the minute is spent.
      ...(o.limits ? {} : { AUTORESEARCH_WRITES_PER_MINUTE: "10000", AUTORESEARCH_WRITES_PER_HOUR: "100000" }),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  // BENCH_LOG_FILE: the bot's log as it comes (a night that stalls can be looked at while it
  // does); part 2's night in the same name with ".limited" after it.
  const logFile = process.env.BENCH_LOG_FILE && `${process.env.BENCH_LOG_FILE}${o.limits ? ".limited" : ""}`;
  if (logFile) writeFileSync(logFile, "");
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    if (logFile) appendFileSync(logFile, d);
  });
  for (const t0 = Date.now(); !/^ready (\S+)\n/m.test(out); ) {
    if (Date.now() - t0 > 60_000 || child.exitCode !== null) throw new Error(`the bot did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  twin.setWebhookUrl(APP_ID, /^ready (\S+)\n/m.exec(out)![1]!);
  twin.resetRequests();
  const started = Date.now();
  const cpu0 = processTreeCpuMs();
  await twin.installApp(OWNER, [REPO]);
  const decided = () =>
    twin.pulls(OWNER, REPO).filter((p) => {
      const r = decodeRecord(p.body ?? "");
      return r?.kind === "experiment" && r.decision !== null && p.state === "closed";
    }).length;
  let lastShown = 0;
  for (;;) {
    const n = decided();
    if (o.done(n) || Date.now() - started > o.deadlineMs) break;
    if (Date.now() - lastShown > 10_000) {
      lastShown = Date.now();
      log(`  ${n} experiments decided after ${Math.round((Date.now() - started) / 1000)} s`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const wallMs = Date.now() - started;
  const n = decided();
  const stats = twin.requestStats((q) => q.auth === "installation");
  const limitErrors = twin.limiter?.events.filter((e) => e.identity.startsWith("installation:")).length ?? 0;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
  // Everything on the machine this night ran: the bot, its git, the twins and their git.
  const allCpuMs = processTreeCpuMs() - cpu0;
  const line = /^stats (.*)$/m.exec(out)?.[1];
  if (!line) throw new Error(`the bot printed no stats:\n${out.slice(-2000)}`);
  await model.stop();
  await twin.stop();
  return { decided: n, wallMs, stats, limitErrors, allCpuMs, bot: JSON.parse(line) as BotStats };
}

/** Reads of the Octokit port's ledger listing over `size` closed experiments. */
async function ledgerReads(size: number) {
  let t = Date.parse("2026-03-01T00:00:00Z");
  const twin = new GitHubTwin({ limits: false, deliveries: false, now: () => new Date(t) });
  const { url } = await twin.start();
  twin.createApp({ appId: APP_ID, privateKey: newAppKey(), webhookSecret: SECRET, webhookUrl: null, slug: "autoresearch-bot" });
  await twin.createRepo(OWNER, REPO, { "train.py": TRAIN });
  const installation = await twin.installApp(OWNER, [REPO]);
  const main = (await twin.branchSha(OWNER, REPO, "main"))!;
  // Every experiment branch points at one commit on top of main (a pull request needs a commit).
  const head = await twin.pushCommit(OWNER, REPO, "autoresearch/0-base", { "train.py": TRAIN.replace("LR = 0.04", "LR = 0.05") }, "a change");
  const record = (n: number): ExperimentRecord => ({
    v: 1, n, kind: "experiment", title: `idea ${n}`, hypothesis: "h", proposer: "bench", baseSha: main, baseTreeHash: "t", headSha: main, treeHash: `t${n}`,
    guidanceSha: null, edits: [], attempt: 1, state: "discarded", measurements: [], decision: { verdict: "discard", delta: 0.01, reasons: ["r"] },
    baselineBpb: 1, createdAt: "2026-03-01T00:00:00Z", updatedAt: "2026-03-01T00:00:00Z",
  });
  const out: { ledger: number; firstListingRequests: number; laterListingRequests: number; listingMs: number }[] = [];
  let made = 0;
  for (const target of [100, 1000, size].filter((x, i, a) => x <= size && a.indexOf(x) === i)) {
    for (; made < target; made++) {
      const branch = branchName(made + 1, `idea ${made + 1}`);
      await twin.setBranch(OWNER, REPO, branch, head);
      const number = await twin.openPull(OWNER, REPO, { head: branch, title: `idea ${made + 1}`, body: renderBody(record(made + 1)) });
      await twin.setIssueState(OWNER, REPO, number, "closed");
      t += 5_000;
    }
    clearGitHubCaches();
    // A token from now on the twin's clock (the history moved it on by hours).
    const token = await twin.installationToken(installation);
    const gh = new OctokitGitHub(new ProbotOctokit({ auth: { token }, baseUrl: url, throttle: { enabled: false } }), { owner: OWNER, repo: REPO });
    twin.resetRequests();
    await gh.listExperimentPulls();
    const first = twin.requests.length;
    twin.resetRequests();
    const t0 = performance.now();
    const listed = await gh.listExperimentPulls();
    const listingMs = performance.now() - t0;
    if (listed.length !== target) throw new Error(`listed ${listed.length} of ${target} experiments`);
    out.push({ ledger: target, firstListingRequests: first, laterListingRequests: twin.requests.length, listingMs: round(listingMs)! });
    log(`  ledger of ${target}: the first listing of a process ${first} requests, each later one ${twin.requests.length} (${round(listingMs)} ms)`);
  }
  await twin.stop();
  return out;
}

log(`part 1: the bot's own cost: ${slots} slots and ${queueAhead} queued ahead, ${experiments} experiments of ${values["run-seconds"]} s, the model answering after ${latencyMs / 1000} s`);
const cost = await night({ limits: false, done: (n) => n >= experiments, deadlineMs: 60 * 60_000, runMs });


const part1 = {
  experiments: cost.decided,
  wallSeconds: round(cost.wallMs / 1000),
  slotDuty: round(100 * cost.bot.duty),
  // Once the night's first baseline is measured (its runs go one after another, to learn the
  // noise, and nothing else can start on the head before): how well the bot keeps slots busy.
  slotDutyAfterBaseline: round(100 * cost.bot.dutyAfterBaseline),
  // What slotDuty could have been at most: before the model's first proposals come back (after
  // --model-latency) only the night's first baseline has anything to train.
  slotDutyReachable: round(100 * cost.bot.reachableDuty),
  // From a run's end to the next run's start on its slot: what the bot costs a slot between runs.
  slotIdleP50Ms: round(cost.bot.idle.p50, 0),
  slotIdleP90Ms: round(cost.bot.idle.p90, 0),
  slotIdleMeanMs: round(cost.bot.idle.mean, 0),
  // The bot's own process and its git children together: both are what the bot costs.
  cpuMsPerExperiment: round((cost.bot.cpuMs + cost.bot.childCpuMs) / cost.decided),
  gitCpuMsPerExperiment: round(cost.bot.childCpuMs / cost.decided),
  systemCpuMsPerExperiment: round(cost.bot.cpuSystemMs / cost.decided),
  peakRssMb: round(cost.bot.peakRssMb),
  heapAtPeakMb: { used: round(cost.bot.atPeak.heapUsed), reserved: round(cost.bot.atPeak.heapTotal), external: round(cost.bot.atPeak.external) },
  readsPerExperiment: round(cost.stats.reads / cost.decided, 2),
  writesPerExperiment: round(cost.stats.writes / cost.decided, 2),
  // git fetches and pushes (commits, branch deletions): no API requests, shown apart.
  gitRequestsPerExperiment: round(cost.stats.git / cost.decided, 2),
  passP50Ms: round(quantile(cost.bot.passes, 0.5)),
  passP99Ms: round(quantile(cost.bot.passes, 0.99)),
  passes: cost.bot.passes.length,
  runSeconds: values["run-seconds"],
  queueAhead,
  // What the rest of the machine spent per experiment (the twins and their git processes, which
  // share it with the bot here), and how busy all of it was: where this nears 100, the figures
  // above measure the machine, not the bot.
  twinCpuMsPerExperiment: round((cost.allCpuMs - cost.bot.cpuMs - cost.bot.childCpuMs) / cost.decided),
  machineCpuPercent: round((100 * cost.allCpuMs) / (cost.wallMs * availableParallelism())),
  runs: cost.bot.runs,
  perExperimentByEndpoint: perExperimentByEndpoint(cost.stats.byRoute, cost.decided),
};
log(
  `  ${part1.experiments} experiments in ${part1.wallSeconds} s: slot duty ${part1.slotDuty}% (goal ≥ 97; of ${part1.slotDutyReachable}% reachable, as only the first baseline trains until the model's first proposals come back; ${part1.slotDutyAfterBaseline}% after the first baseline; slots idle ${part1.slotIdleP50Ms} ms between runs at the median, ${part1.slotIdleP90Ms} ms at p90), ` +
    `${part1.cpuMsPerExperiment} ms of bot CPU per experiment (goal ≤ 50), peak RSS ${part1.peakRssMb} MB (goal ≤ 300; heap ${part1.heapAtPeakMb.used} MB used of ${part1.heapAtPeakMb.reserved} then), ` +
    `${part1.readsPerExperiment} reads and ${part1.writesPerExperiment} writes per experiment (and ${part1.gitRequestsPerExperiment} git requests), passes p50 ${part1.passP50Ms} ms, p99 ${part1.passP99Ms} ms; ` +
    `the twins took ${part1.twinCpuMsPerExperiment} ms of CPU per experiment, and the machine's ${availableParallelism()} cores were ${part1.machineCpuPercent}% busy`,
);

log(`part 2: within GitHub's limits, for ${limitedSeconds} s`);
const limited = await night({ limits: true, done: () => false, deadlineMs: limitedSeconds * 1000, runMs });
const part2 = {
  wallSeconds: round(limited.wallMs / 1000),
  experiments: limited.decided,
  experimentsPerHour: round((limited.decided * 3_600_000) / limited.wallMs),
  limitErrors: limited.limitErrors,
  writesPerExperiment: limited.decided ? round(limited.stats.writes / limited.decided, 2) : null,
};
log(`  ${part2.experiments} experiments decided: ${part2.experimentsPerHour} an hour, ${part2.limitErrors} limit errors, ${part2.writesPerExperiment} writes per experiment`);

log(`part 3: reads as the ledger grows to ${ledgerSize}`);
const ledger = await ledgerReads(ledgerSize);

const figures = { ...part1, limited: part2, experimentsPerHour: part2.experimentsPerHour, limitErrors: part2.limitErrors, ledger, machine: `${process.platform} node ${process.version}` };
if (values.json) {
  writeFileSync(values.json, JSON.stringify(figures, null, 2) + "\n");
  log(`wrote ${values.json}`);
}
process.exit(0);

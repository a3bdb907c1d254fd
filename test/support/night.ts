// A miniature night for end-to-end tests: the GitHub twin with a research repository, the
// OpenAI-compatible twin, the bot's real HTTP server and the local runner running the real
// harness. Used by test/e2e/*.test.ts.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isMap, parseDocument } from "yaml";
import { CONFIG_PATH, windowFrom } from "../../src/config.js";
import { decodeRecord } from "../../src/ledger/index.js";
import type { KubernetesRunnerOptions } from "../../src/runner/kubernetes.js";
import { LocalRunner } from "../../src/runner/local.js";
import type { ExperimentRecord, RunnerPort } from "../../src/types.js";
import { GitHubTwin } from "../../twins/github/index.js";
import type { KubernetesTwin } from "../../twins/kubernetes/index.js";
import { kubeRunner, startKubeTwin } from "../../twins/kube.js";
import { OpenAITwin } from "../../twins/openai.js";
import { startBot, type BotHandle } from "../../twins/bot.js";
import { newAppKey } from "../../twins/bot.js";

export { newAppKey };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** trainer/harness.py behind a wrapper that counts harness starts in the night's runLog. */
export const COUNTING_HARNESS = path.join(ROOT, "test/fixtures/counting-harness.py");
export const OWNER = "alice";
export const REPO = "research";
export const APP_ID = 4242;
export const SECRET = "night-webhook-secret";
export const OPENAI_KEY = "sk-night-test";

/**
 * The repository's files with a night that starts now where the config counts experiments per
 * night (`night.max_experiments`) without a window: without one the night is the UTC date, and
 * a test running over midnight would see the count start again and more experiments than asked.
 */
export function nightStartingNow(files: Record<string, string>, now = new Date()): Record<string, string> {
  const text = files[CONFIG_PATH];
  if (text === undefined) return files;
  const doc = parseDocument(text);
  const night = doc.get("night");
  if (!isMap(night) || night.get("max_experiments") == null || night.get("window") != null) return files;
  night.set("window", windowFrom(now, night.get("timezone")));
  return { ...files, [CONFIG_PATH]: doc.toString() };
}

/** Every file under `dir` (relative path → text), hidden folders included. */
export async function readTree(dir: string, prefix = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name === "__pycache__") continue;
    const full = path.join(dir, e.name);
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, await readTree(full, rel));
    else out[rel] = await readFile(full, "utf8");
  }
  return out;
}



/** A structured proposal as the LLM would send it. */
export function proposal(title: string, hypothesis: string, search: string, replace: string): string {
  return JSON.stringify({ title, hypothesis, edits: [{ path: "train.py", search, replace }] });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface Night {
  twin: GitHubTwin;
  openai: OpenAITwin;
  apiUrl: string;
  openaiBaseURL: string;
  privateKey: string;
  installationId: number | null;
  /** Install the app on the research repository (delivers installation.created). */
  install(): Promise<number>;
  workDir: string;
  runsDir: string;
  /** One line per harness start that trains ("<run id> <commit>"), counted outside the sandbox. */
  runLog: string;
  /** Every line the bot and its runner logged (info and above). */
  logs: string[];
  bot: BotHandle | null;
  /** Reconcile passes the bot has finished, over every bot process of the night. */
  passes: number;
  runner: (RunnerPort & { close(): void }) | null;
  /** The Kubernetes twin, when the night runs with the Kubernetes runner. */
  kube: { twin: KubernetesTwin; url: string } | null;
  startBot(): Promise<BotHandle>;
  stopBot(): Promise<void>;
  /** Experiment PRs with their decoded records, by number. */
  experiments(): { number: number; state: string; merged: boolean; labels: string[]; record: ExperimentRecord }[];
  close(): Promise<void>;
}

export async function startNight(
  opts: {
    files?: Record<string, string>;
    startBot?: boolean;
    /** Train through the Kubernetes twin with the Kubernetes runner instead of the local runner. */
    runner?: "local" | "kubernetes";
    kubeRunner?: Partial<KubernetesRunnerOptions>;
    /** More of the bot's environment (settings). */
    env?: Record<string, string>;
  } = {},
): Promise<Night> {
  const workDir = await mkdtemp(path.join(tmpdir(), "autoresearch-night-"));
  const runsDir = path.join(workDir, "runs");
  const runLog = path.join(workDir, "train-runs.log");
  const twin = new GitHubTwin();
  const { url: apiUrl } = await twin.start();
  const openai = new OpenAITwin({ apiKey: OPENAI_KEY });
  const { baseURL } = await openai.start();
  const privateKey = newAppKey();
  twin.createApp({ appId: APP_ID, privateKey, webhookSecret: SECRET, webhookUrl: null });
  const files = nightStartingNow(opts.files ?? (await readTree(path.join(ROOT, "test/fixtures/research-repo"))));
  await twin.createRepo(OWNER, REPO, files);
  const kube =
    opts.runner === "kubernetes"
      ? await startKubeTwin()
      : null;

  const night: Night = {
    twin,
    openai,
    apiUrl,
    openaiBaseURL: baseURL,
    privateKey,
    installationId: null,
    async install() {
      night.installationId = await twin.installApp(OWNER, [REPO]);
      return night.installationId;
    },
    workDir,
    runsDir,
    runLog,
    logs: [],
    bot: null,
    passes: 0,
    runner: null,
    kube,
    async startBot() {
      let runner: RunnerPort & { close(): void };
      if (kube) {
        const k = kubeRunner(kube.twin, kube.url, opts.kubeRunner);
        k.start();
        runner = k;
      } else {
        runner = new LocalRunner({
          runsDir,
          harnessPath: COUNTING_HARNESS,
          logger: { info: (m) => night.logs.push(m), warn: (m) => night.logs.push(m), error: (m) => night.logs.push(m) },
          cacheDir: path.join(workDir, "cache"),
          pollMs: 200,
          env: { AUTORESEARCH_TEST_RUN_LOG: runLog, TMPDIR: workDir },
        });
      }
      const bot = await startBot({
        baseUrl: apiUrl,
        appId: APP_ID,
        privateKey,
        secret: SECRET,
        runner,
        resyncMs: 2000,
        env: { OPENAI_API_KEY: OPENAI_KEY, OPENAI_BASE_URL: baseURL, ...opts.env },
        logSink: (line) => night.logs.push(line),
        onPass: () => {
          night.passes += 1;
        },
      });
      twin.setWebhookUrl(APP_ID, bot.webhookUrl);
      night.bot = bot;
      night.runner = runner;
      return bot;
    },
    async stopBot() {
      night.runner?.close();
      await night.bot?.stop();
      night.bot = null;
      night.runner = null;
    },
    experiments() {
      return twin
        .pulls(OWNER, REPO)
        .flatMap((p) => {
          const record = decodeRecord(p.body);
          return record ? [{ number: p.number, state: p.state, merged: p.merged, labels: p.labels, record }] : [];
        })
        .sort((a, b) => a.record.n - b.record.n);
    },
    async close() {
      await night.stopBot();
      await openai.stop();
      await kube?.twin.stop();
      await twin.stop();
      await rm(workDir, { recursive: true, force: true });
    },
  };
  await showLogOnFailure(night);
  if (opts.startBot !== false) await night.startBot();
  return night;
}

/** How much of a failed night's log a test prints: its last lines, each cut to a length. */
const FAILED_LOG_LINES = 150;
const FAILED_LOG_LINE_CHARS = 400;

/**
 * A test that fails prints the end of its night's log (the bot's and the runner's lines; not the
 * HTTP server's request lines), so that a failure on CI, which keeps nothing else, says why.
 * Imported here, not at the top: scripts (the chaos night) use this module outside vitest.
 */
async function showLogOnFailure(night: Night): Promise<void> {
  const { onTestFailed } = await import("vitest");
  try {
    onTestFailed(() => {
      const lines = night.logs.map((l) => l.trimEnd()).filter((l) => l && !l.includes('"name":"http"'));
      const tail = lines.slice(-FAILED_LOG_LINES).map((l) => (l.length > FAILED_LOG_LINE_CHARS ? `${l.slice(0, FAILED_LOG_LINE_CHARS)}…` : l));
      process.stderr.write(`--- the night's log: the last ${tail.length} of ${lines.length} lines ---\n${tail.join("\n")}\n--- end of the night's log ---\n`);
    });
  } catch {
    // Not within a test (a hook or a script): nothing to print on failure.
  }
}

/** The experiment is finished: its PR is closed (merged or not). */
export function settled(night: Night, n: number) {
  return night.experiments().find((e) => e.record.n === n && e.state === "closed");
}

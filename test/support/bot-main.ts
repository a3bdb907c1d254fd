// The bot as its own process, for tests that kill it mid-run and start it again.
// Configured by environment: BOT_BASE_URL, BOT_APP_ID, BOT_PRIVATE_KEY, BOT_SECRET,
// BOT_RUNS_DIR, BOT_CACHE_DIR, and OPENAI_API_KEY / OPENAI_BASE_URL. Prints `ready <webhook URL>`
// once it listens (on a port the system picked).
import { LocalRunner } from "../../src/runner/local.js";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { appFromEnv, need, startBot } from "../../twins/bot.js";

const COUNTING_HARNESS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/counting-harness.py");

const runner = new LocalRunner({
  runsDir: need("BOT_RUNS_DIR"),
  harnessPath: COUNTING_HARNESS,
  cacheDir: process.env.BOT_CACHE_DIR,
  pollMs: 200,
  env: process.env.AUTORESEARCH_TEST_RUN_LOG ? { AUTORESEARCH_TEST_RUN_LOG: process.env.AUTORESEARCH_TEST_RUN_LOG } : {},
});
const bot = await startBot({
  ...appFromEnv(),
  runner,
  resyncMs: 1000,
  env: process.env,
});
console.log(`ready ${bot.webhookUrl}`);
process.on("SIGTERM", () => {
  runner.close();
  void bot.stop().then(() => process.exit(0));
});

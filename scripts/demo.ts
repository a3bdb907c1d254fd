// npm run demo — a miniature night on this machine, offline.
//
// Everything is real except GitHub and the LLM: a GitHub twin holds a research repository
// made from this project's template (program.md + trainer/) or from your project (--repo DIR),
// the bot's real HTTP server receives its signed webhooks, the local runner trains each
// experiment on this machine through trainer/harness.py, and the built-in `mutate` proposer,
// the endpoint in OPENAI_API_KEY / OPENAI_BASE_URL, or a list of proposals (--proposals FILE)
// replayed through the OpenAI-compatible proposer proposes the changes. A maintainer comments
// `/autoresearch rerun` on the first experiment. Prints progress, then a morning summary and
// the morning report issue the bot wrote.
//
// Every flag and input is checked before anything starts (scripts/demo-args.ts and
// scripts/demo-project.ts); the night itself is scripts/demo-night.ts.
import { DemoError, errorText, parseDemoArgs, USAGE } from "./demo-args.js";
import { runNight } from "./demo-night.js";
import { planDemo } from "./demo-project.js";

async function main(): Promise<number> {
  const args = parseDemoArgs(process.argv.slice(2));
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const plan = planDemo(args, process.env);
  const interrupt = new AbortController();
  process.once("SIGINT", () => {
    console.log("\ninterrupted: stopping the runs");
    interrupt.abort();
  });
  await runNight(plan, { signal: interrupt.signal });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof DemoError) {
      console.error(errorText(err));
      process.exit(err.exitCode);
    }
    console.error(`demo failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);

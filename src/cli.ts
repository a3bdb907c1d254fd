// Command-line entry: `results OWNER/REPO` rebuilds the ledger from GitHub alone and prints
// it as autoresearch's results.tsv; `doctor` checks everything the bot needs.
import { parseArgs } from "node:util";
import { Octokit } from "@octokit/rest";
import { defaultDoctorDeps, exitCodeOf, formatReport, runDoctor, runnerKindOf, withDotenv } from "./doctor.js";
import { OctokitGitHub } from "./github/octokit.js";
import { toResultsTsv } from "./ledger/index.js";
import { readLedger } from "./trust.js";

const USAGE = `usage: autoresearch-bot <command> [options]

  results OWNER/REPO   print the experiment ledger as autoresearch's results.tsv
  doctor               check everything the bot needs, with the fix for each problem

  autoresearch-bot <command> --help describes a command.`;

const DOCTOR_USAGE = `usage: autoresearch-bot doctor

  Checks everything the bot needs and prints one line per check (ok, warn or FAIL), with the
  fix under each problem: Node.js, the settings, the runner (local: git, the harness's python3,
  the Python with PyTorch and its BLAS, the bubblewrap sandbox, the run and data folders;
  kubernetes: the kubeconfig, the namespace, the Job template, the RBAC the runner needs), the
  app's credentials (APP_ID, the private key and whether GitHub accepts it, WEBHOOK_SECRET) and,
  with OPENAI_API_KEY, the LLM endpoint. Reads the environment and .env as npm start does.

  Exit status: 0 when this setup can run an experiment (warnings allowed), 1 otherwise.`;

const RESULTS_USAGE = `usage: autoresearch-bot results OWNER/REPO [--api-url URL] [--out FILE] [--author LOGIN]

  Prints the experiment ledger of OWNER/REPO as autoresearch's results.tsv
  (commit, val_bpb, memory_gb, status, description), rebuilt from the repository's
  experiment pull requests: only those the app itself opened count.

  Authentication: GITHUB_TOKEN (a token that can read the repository's pull requests).
  --api-url URL   GitHub API base URL (default: GITHUB_API_URL or https://api.github.com)
  --out FILE      write to FILE instead of standard output
  --author LOGIN  the app's bot user, whose pull requests are the ledger
                  (default: <AUTORESEARCH_APP_SLUG>[bot], or autoresearch-bot[bot])`;

const isHelp = (arg: string | undefined) => arg === "-h" || arg === "--help" || arg === "help";

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd || isHelp(cmd)) {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === "results") return results(args);
  if (cmd === "doctor") return doctor(args);
  console.error(`unknown command: ${cmd}\n\n${USAGE}`);
  return 2;
}

type Options = Record<string, { type: "string" | "boolean"; short?: string }>;

/** util.parseArgs with the usage printed on a mistake or --help: the values, or the exit code to return. */
function parse(args: string[], options: Options, usage: string, positionals = 0): number | { values: Record<string, string | undefined>; positionals: string[] } {
  try {
    const parsed = parseArgs({ args, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: positionals > 0, strict: true });
    const values = parsed.values as Record<string, string | boolean | undefined>;
    if (values.help) {
      console.log(usage);
      return 0;
    }
    if (parsed.positionals.length > positionals) throw new Error(`unexpected argument '${parsed.positionals[positionals]}'`);
    return { values: values as Record<string, string | undefined>, positionals: parsed.positionals };
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${usage}`);
    return 2;
  }
}

async function doctor(args: string[]): Promise<number> {
  const parsed = parse(args, {}, DOCTOR_USAGE);
  if (typeof parsed === "number") return parsed;
  const { env, dotenv } = withDotenv(process.env, process.cwd());
  console.log(`autoresearch-bot doctor: ${runnerKindOf(env) ?? "unknown"} runner${dotenv ? `, with ${dotenv}` : ""}\n`);
  const results = await runDoctor(defaultDoctorDeps(env));
  console.log(formatReport(results));
  return exitCodeOf(results);
}

async function results(args: string[]): Promise<number> {
  const parsed = parse(args, { "api-url": { type: "string" }, out: { type: "string" }, author: { type: "string" } }, RESULTS_USAGE, 1);
  if (typeof parsed === "number") return parsed;
  const target = parsed.positionals[0];
  const m = /^([\w.-]+)\/([\w.-]+)$/.exec(target ?? "");
  if (!m) {
    console.error(`expected OWNER/REPO, got ${target ?? "nothing"}\n\n${RESULTS_USAGE}`);
    return 2;
  }
  const apiUrl = parsed.values["api-url"] ?? process.env.GITHUB_API_URL ?? "https://api.github.com";
  const out = parsed.values.out ?? null;
  const author = parsed.values.author ?? `${process.env.AUTORESEARCH_APP_SLUG || "autoresearch-bot"}[bot]`;
  // A plain token client: the results command is a one-off read outside Probot, with no app.
  const octokit = new Octokit({ auth: process.env.GITHUB_TOKEN, baseUrl: apiUrl, userAgent: "autoresearch-bot results" });
  const gh = new OctokitGitHub(octokit, { owner: m[1]!, repo: m[2]! }, { botLogin: author });
  try {
    const pulls = await readLedger(gh, { warn: (msg) => console.error(msg) });
    const tsv = toResultsTsv(pulls.flatMap((p) => (p.record ? [p.record] : [])));
    if (out) {
      const { writeFile } = await import("node:fs/promises");
      await writeFile(out, tsv);
      console.error(`wrote ${out}`);
    } else process.stdout.write(tsv);
    return 0;
  } catch (err) {
    console.error(`could not read the ledger of ${target}: ${(err as Error).message}`);
    return 1;
  }
}

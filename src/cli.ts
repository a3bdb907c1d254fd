// Command-line entry: `results OWNER/REPO` rebuilds the ledger from GitHub alone and prints
// it as autoresearch's results.tsv; `doctor` checks everything the bot needs.
import { ProbotOctokit } from "probot";
import { defaultDoctorDeps, exitCodeOf, formatReport, runDoctor, runnerKindOf, withDotenv } from "./doctor.js";
import { OctokitGitHub } from "./github/octokit.js";
import { toResultsTsv } from "./ledger.js";
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

async function doctor(args: string[]): Promise<number> {
  if (args.some((a) => a === "-h" || a === "--help")) {
    console.log(DOCTOR_USAGE);
    return 0;
  }
  if (args.length) {
    console.error(`unknown option: ${args[0]}\n\n${DOCTOR_USAGE}`);
    return 2;
  }
  const { env, dotenv } = withDotenv(process.env, process.cwd());
  console.log(`autoresearch-bot doctor: ${runnerKindOf(env) ?? "unknown"} runner${dotenv ? `, with ${dotenv}` : ""}\n`);
  const results = await runDoctor(defaultDoctorDeps(env));
  console.log(formatReport(results));
  return exitCodeOf(results);
}

async function results(args: string[]): Promise<number> {
  // Help first: `results --help` must not read "--help" as OWNER/REPO.
  if (args.some((a) => a === "-h" || a === "--help")) {
    console.log(RESULTS_USAGE);
    return 0;
  }
  const [target, ...rest] = args;
  const m = /^([\w.-]+)\/([\w.-]+)$/.exec(target ?? "");
  if (!m) {
    console.error(`expected OWNER/REPO, got ${target ?? "nothing"}\n\n${RESULTS_USAGE}`);
    return 2;
  }
  let apiUrl = process.env.GITHUB_API_URL ?? "https://api.github.com";
  let out: string | null = null;
  let author = `${process.env.AUTORESEARCH_APP_SLUG || "autoresearch-bot"}[bot]`;
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = rest[i + 1];
    if ((flag === "--api-url" || flag === "--out" || flag === "--author") && value) {
      if (flag === "--api-url") apiUrl = value;
      else if (flag === "--author") author = value;
      else out = value;
      i++;
    } else {
      console.error(`unknown or incomplete option: ${flag}\n\n${RESULTS_USAGE}`);
      return 2;
    }
  }
  const octokit = new ProbotOctokit({ auth: process.env.GITHUB_TOKEN, baseUrl: apiUrl, retry: { enabled: false } });
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

// Command-line entry: `results OWNER/REPO` rebuilds the ledger from GitHub alone and prints
// it as autoresearch's results.tsv.
import { ProbotOctokit } from "probot";
import { OctokitGitHub } from "./github/octokit.js";
import { toResultsTsv } from "./ledger.js";
import { readLedger } from "./trust.js";

const USAGE = `usage: autoresearch-bot results OWNER/REPO [--api-url URL] [--out FILE] [--author LOGIN]

  Prints the experiment ledger of OWNER/REPO as autoresearch's results.tsv
  (commit, val_bpb, memory_gb, status, description), rebuilt from the repository's
  experiment pull requests: only those the app itself opened count.

  Authentication: GITHUB_TOKEN (a token that can read the repository's pull requests).
  --api-url URL   GitHub API base URL (default: GITHUB_API_URL or https://api.github.com)
  --out FILE      write to FILE instead of standard output
  --author LOGIN  the app's bot user, whose pull requests are the ledger
                  (default: <AUTORESEARCH_APP_SLUG>[bot], or autoresearch-bot[bot])`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, target, ...rest] = argv;
  if (!cmd || cmd === "-h" || cmd === "--help" || cmd === "help") {
    console.log(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd !== "results") {
    console.error(`unknown command: ${cmd}\n\n${USAGE}`);
    return 2;
  }
  const m = /^([\w.-]+)\/([\w.-]+)$/.exec(target ?? "");
  if (!m) {
    console.error(`expected OWNER/REPO, got ${target ?? "nothing"}\n\n${USAGE}`);
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
      console.error(`unknown or incomplete option: ${flag}\n\n${USAGE}`);
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

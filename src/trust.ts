// Who wrote what the bot reads back. The ledger is only what the bot itself wrote: a label is
// not proof (anyone with triage access can label any pull request), and a body is not proof (an
// outsider's pull request can carry a record that looks like the bot's). A record counts only
// on a pull request that
//
// - the app's own bot user opened,
// - from a branch of the same repository (never a fork),
// - named `autoresearch/<n>-…` with the record's own n.
//
// Issues the bot keeps (the control issue, morning reports) count only when the bot opened
// them. Anything else that carries the labels is ignored (logged once per process), never
// merged, and never lends its number to the next experiment.
import { parseBranchName } from "./ledger/index.js";
import type { ExperimentPull, GitHubPort, IssueInfo, RepoRef } from "./types.js";
import type { Logger } from "./log.js";

/** Why a labelled pull request is not part of the ledger, or null when it is. */
export function untrustedPull(p: ExperimentPull, botLogin: string, repo: RepoRef): string | null {
  const stranger = notTheBots(p, botLogin, repo);
  if (stranger) return stranger;
  if (!p.record) return "it has no readable experiment record";
  const branch = parseBranchName(p.headRef);
  if (!branch) return `its branch ${p.headRef || "(unknown)"} is not an autoresearch/<n>-… branch`;
  if (branch.n !== p.record.n) return `its branch ${p.headRef} is not experiment ${p.record.n}'s`;
  return null;
}

/** Why a pull request is not one the bot opened from its own repository, or null when it is. */
function notTheBots(p: ExperimentPull, botLogin: string, repo: RepoRef): string | null {
  if (p.author.toLowerCase() !== botLogin.toLowerCase()) return `opened by @${p.author || "(unknown)"}, not by ${botLogin}`;
  const own = `${repo.owner}/${repo.repo}`.toLowerCase();
  if (p.headRepo !== null && p.headRepo.toLowerCase() !== own) return `its branch is in ${p.headRepo || "a deleted repository"}, not ${own}`;
  return null;
}

/** Issues the bot opened (its control issue and reports); others carrying the label are ignored. */
export function ownIssues(issues: IssueInfo[], botLogin: string): IssueInfo[] {
  return issues.filter((i) => i.author.toLowerCase() === botLogin.toLowerCase());
}

const reported = new Set<string>();

/** The bot's logger (src/log.ts), of which trust only warns. */
export type TrustLog = Pick<Logger, "warn">;

/** Log `what` once per process (a pass every few minutes must not repeat it forever). */
export function warnOnce(log: TrustLog | undefined, key: string, what: string): void {
  if (reported.has(key)) return;
  reported.add(key);
  log?.warn(what);
}

/**
 * The ledger: the experiment pull requests the bot opened, with their records. Everything else
 * that carries the label is left out and logged once.
 */
export async function readLedger(gh: GitHubPort, log?: TrustLog): Promise<ExperimentPull[]> {
  return (await readLedgerAll(gh, log)).pulls;
}

/**
 * The ledger, and the experiment numbers of the bot's own PRs whose record cannot be read (a
 * body edited by hand, a write cut short): those numbers are taken, and never given to a new
 * experiment, whose branch and run ids would collide with theirs. `heads`: the branches of this
 * repository that any listed pull request is opened from, trusted or not (no such branch is a
 * stray to delete).
 */
export async function readLedgerAll(gh: GitHubPort, log?: TrustLog): Promise<{ pulls: ExperimentPull[]; unreadable: number[]; heads: string[] }> {
  const botLogin = gh.botLogin;
  if (!botLogin) {
    throw new Error(
      "the app's own login is unknown, so its experiment records cannot be told from forged ones " +
        "(set AUTORESEARCH_APP_SLUG, or check that the app can read its own details)",
    );
  }
  const name = `${gh.repo.owner}/${gh.repo.repo}`;
  const out: ExperimentPull[] = [];
  const unreadable: number[] = [];
  const heads: string[] = [];
  for (const p of await gh.listExperimentPulls()) {
    if (p.headRepo === null || p.headRepo.toLowerCase() === name.toLowerCase()) heads.push(p.headRef);
    const why = untrustedPull(p, botLogin, gh.repo);
    if (why === null) {
      out.push(p);
      continue;
    }
    warnOnce(log, `${name}#${p.number}:${why}`, `${name}#${p.number} carries the autoresearch label but is ignored: ${why}`);
    const branch = parseBranchName(p.headRef);
    if (!p.record && branch && notTheBots(p, botLogin, gh.repo) === null) {
      unreadable.push(branch.n);
    }
  }
  return { pulls: out, unreadable, heads };
}

/** Issues with `label` that the bot opened. */
export async function readOwnIssues(gh: GitHubPort, label: string, log?: TrustLog): Promise<IssueInfo[]> {
  const botLogin = gh.botLogin;
  if (!botLogin) throw new Error("the app's own login is unknown, so its own issues cannot be told from others");
  const all = await gh.listIssues(label);
  const own = ownIssues(all, botLogin);
  const name = `${gh.repo.owner}/${gh.repo.repo}`;
  for (const i of all) {
    if (!own.includes(i)) warnOnce(log, `${name}#${i.number}:issue`, `${name}#${i.number} carries ${label} but is ignored: opened by @${i.author}, not by ${botLogin}`);
  }
  return own;
}

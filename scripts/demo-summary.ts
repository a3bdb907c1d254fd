// The morning after the demo's night: the figures read from the twins once the night is over
// (the summary --json writes), the morning summary printed from them, the morning report issue
// the bot wrote, and what came of the maintainer's commands.
import { bestBpb, treeBpb } from "../src/history.js";
import { isMeasured, meanValBpb } from "../src/policy.js";
import type { GitHubTwin, RequestStats } from "../twins/github/index.js";
import { readLedger, type LedgerEntry, type NightEnd } from "./demo-follow.js";
import type { SlotIdle, SlotWatch } from "./demo-slots.js";
import { OWNER, REPO, type DemoRunner } from "./demo-world.js";
import type { ModelDouble } from "./model-double.js";

type Print = (line: string) => void;

export interface Row {
  n: number;
  pr: number;
  kind: string;
  title: string;
  hypothesis: string;
  /** The mean of the runs the decision used, and how many. */
  valBpb: number | null;
  runs: number;
  delta: number | null;
  /** keep, discard or crash once decided (a held change's verdict is keep); else the state. */
  decision: string;
  /** The record's state: kept, discarded, crashed, review (held for a person), … */
  state: string;
  merged: boolean;
  reason: string | null;
  /** The review rules (src/review.ts) the change matched; empty when none. */
  flags: string[];
}

export interface Summary {
  experiments: Row[];
  bestBefore: number | null;
  bestAfter: number | null;
  kept: number;
  discarded: number;
  crashed: number;
  githubRequests: {
    reads: number;
    writes: number;
    perExperiment: { reads: number; writes: number; git: number };
    /** git fetches and pushes (experiment commits, branch deletions): no API requests. */
    git: number;
    /** Requests per experiment by endpoint ("METHOD /template"), most first. */
    perExperimentByEndpoint: Record<string, number>;
    /** Answers of GitHub's rate limits (the twin enforces them) the bot got. */
    limitErrors: number;
  };
  /** How long a slot sat idle between runs (seconds). */
  slotIdle: SlotIdle;
  /** With --model-latency: proposals asked of the model double, and how many while a run trained. */
  model?: { asked: number; askedWhileTraining: number };
  budgetSeconds: number;
  wallSeconds: number;
}

/** What the figures are read from once the night is over. */
export interface NightRecord {
  twin: GitHubTwin;
  slots: SlotWatch<DemoRunner>;
  slotCount: number;
  double: ModelDouble | null;
  budgetSeconds: number;
  wallSeconds: number;
}

/** The night's figures, read from the pull requests, the twin's request log and the runner's slots. */
export function collectFigures(night: NightRecord): Summary {
  const { twin, slots, double } = night;
  const ledger = readLedger(twin);
  const rows = ledger.map(rowOf);
  // The same figures as the morning report: the mean of every run of a kept tree.
  const all = ledger.map(({ r }) => r);
  const firstBaseline = all.find((r) => r.kind === "baseline");
  const before = firstBaseline ? treeBpb(all, firstBaseline.treeHash) : null;
  const after = bestBpb(all) ?? before;
  return {
    experiments: rows,
    bestBefore: before,
    bestAfter: after,
    kept: rows.filter((r) => r.merged).length,
    discarded: rows.filter((r) => r.decision === "discard").length,
    crashed: rows.filter((r) => r.decision === "crash").length,
    githubRequests: requestFigures(twin, rows.length),
    slotIdle: slots.idle(night.slotCount),
    ...(double ? { model: { asked: double.asked.length, askedWhileTraining: double.asked.filter((t) => slots.training(t)).length } } : {}),
    budgetSeconds: night.budgetSeconds,
    wallSeconds: night.wallSeconds,
  };
}

function rowOf({ pull, r }: LedgerEntry): Row {
  return {
    n: r.n,
    pr: pull.number,
    kind: r.kind,
    title: r.title,
    hypothesis: r.hypothesis,
    valBpb: meanValBpb(r.measurements),
    runs: r.measurements.filter((m) => isMeasured(m.result)).length,
    delta: r.decision?.delta ?? null,
    decision: r.decision?.verdict ?? r.state,
    state: r.state,
    merged: pull.merged,
    reason: r.decision?.reasons.join(" ") ?? null,
    flags: (r.flags ?? []).map((f) => f.rule),
  };
}

/** Requests per experiment by endpoint, the most first (the demo's summary and bench:scale). */
export function perExperimentByEndpoint(byRoute: Record<string, number>, experiments: number): Record<string, number> {
  return Object.fromEntries(
    Object.entries(byRoute)
      .sort((a, b) => b[1] - a[1])
      .map(([route, count]) => [route, +(count / experiments).toFixed(2)]),
  );
}

/** The bot's GitHub API requests (as the app and as the installation), in all and per experiment. */
function requestFigures(twin: GitHubTwin, experiments: number): Summary["githubRequests"] {
  const installation: RequestStats = twin.requestStats((q) => q.auth === "installation" || q.auth === "app");
  return {
    reads: installation.reads,
    writes: installation.writes,
    git: installation.git,
    perExperiment: {
      reads: +(installation.reads / experiments).toFixed(1),
      writes: +(installation.writes / experiments).toFixed(1),
      git: +(installation.git / experiments).toFixed(1),
    },
    perExperimentByEndpoint: perExperimentByEndpoint(installation.byRoute, experiments),
    limitErrors: twin.limiter?.events.filter((e) => e.identity.startsWith("installation:")).length ?? 0,
  };
}

/** The morning summary: a line per experiment, then the best val_bpb, the requests and the slots' idle time. */
export function printSummary(summary: Summary, modelLatency: number | null, out: Print): void {
  out("\nMorning summary");
  out("===============");
  for (const r of summary.experiments) printRow(r, out);
  out(
    `\nbest val_bpb: ${summary.bestBefore?.toFixed(4) ?? "—"} → ${summary.bestAfter?.toFixed(4) ?? "—"}` +
      `   (${summary.kept} kept, ${summary.discarded} discarded, ${summary.crashed} crashed, ${summary.wallSeconds} s)`,
  );
  const requests = summary.githubRequests;
  out(
    `GitHub API requests: ${requests.reads} reads, ${requests.writes} writes ` +
      `(${requests.perExperiment.reads} reads and ${requests.perExperiment.writes} writes per experiment; ` +
      `${requests.limitErrors} rate-limit answers); ${requests.git} git requests (commits and branch deletions by push: no API requests)`,
  );
  const idle = summary.slotIdle;
  if (idle.medianSeconds !== null) {
    out(
      `slot idle between runs: median ${idle.medianSeconds} s, 90th percentile ${idle.p90Seconds} s (${idle.gaps} gaps` +
        `${modelLatency !== null ? `; the model answers after ${modelLatency} s and is asked ahead` : ""})`,
    );
  }
}

function printRow(r: Row, out: Print): void {
  const bpb = r.valBpb === null ? "   —    " : `${r.valBpb.toFixed(4)}${r.runs > 1 ? ` ×${r.runs}` : "   "}`;
  const delta = r.delta === null ? "        " : `${r.delta > 0 ? "+" : ""}${r.delta.toFixed(4)}`.padStart(8);
  const verdict = r.kind === "baseline" ? "baseline" : r.merged ? "kept, merged" : r.state === "review" ? "held for review" : r.decision;
  out(`#${String(r.pr).padEnd(3)} ${bpb} ${delta}  ${verdict.padEnd(13)} ${r.title}`);
  if (r.kind !== "baseline") out(`      ${r.hypothesis}`);
  if (r.flags.length) out(`      touches what decides its score: ${r.flags.join(", ")}`);
  if (r.decision === "crash" && r.reason) out(`      ${r.reason}`);
}

/**
 * The morning report issue the bot wrote for the night, its first lines. A night that ended with
 * its proposals list is shorter than max_experiments, so its report never says it is over: it
 * is not waited for.
 */
export async function printMorningReport(twin: GitHubTwin, url: string, end: NightEnd, out: Print): Promise<void> {
  const reportDeadline = Date.now() + (end.endedByList ? 0 : 30_000);
  const find = () => twin.issues(OWNER, REPO).find((i) => i.labels.includes("autoresearch:report")) ?? null;
  let report = find();
  while (!report?.body?.includes("is over") && Date.now() < reportDeadline) {
    await new Promise((r) => setTimeout(r, 500));
    report = find();
  }
  if (!report) return;
  out(`\nMorning report: issue #${report.number} "${report.title}" (${url}/repos/${OWNER}/${REPO}/issues/${report.number})`);
  const excerpt = (report.body ?? "").split("\n").filter((l) => l.trim() !== "").slice(0, 8);
  for (const l of excerpt) out(`  ${l}`);
  out("  …");
}

/** The maintainer's commands and how the bot acknowledged each (its reactions). */
export function printCommands(twin: GitHubTwin, out: Print): void {
  const ack = twin
    .comments(OWNER, REPO)
    .filter((c) => c.user === "maria")
    .map((c) => `#${c.issueNumber} "${c.body}": ${c.reactions.map((x) => x.content).join(" ") || "no reaction yet"}`);
  for (const a of ack) out(`Command ${a}`);
}

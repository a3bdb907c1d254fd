// The morning report on GitHub: one issue per night (src/report.ts renders it), created or
// updated after the passes that end experiments.
import { inWindow, nightKey, type Config } from "../config.js";
import { renderReport, REPORT_LABEL, reportTitle, type ReportInput } from "../report.js";
import { readOwnIssues } from "../trust.js";
import type { WriteBudgetView } from "../github/budget.js";
import type { ExperimentPull, ExperimentRecord, GitHubPort, IssueInfo } from "../types.js";

/**
 * Whether nothing more runs in the night: a later night has begun, its window has closed, or its
 * max_experiments have started and all ended (no more start in it, window or not).
 */
function nightOver(config: Config, night: string, records: ExperimentRecord[], now: Date): boolean {
  if (nightKey(config, now) !== night) return true;
  if (config.night?.window && !inWindow(config, now)) return true;
  if (config.night?.maxExperiments) {
    return records.length >= config.night.maxExperiments && records.every((r) => r.state !== "queued" && r.state !== "running");
  }
  return false;
}

/**
 * Create or update the report issue of each night named by an experiment that just ended (or,
 * with none named, of the latest night): found by label and title, rewritten only when its text
 * changes, so any number of passes leave one issue per night with the same content.
 */
/** The installation's writes between a night's first experiment and its last update (or now). */
function nightWrites(budget: WriteBudgetView, tonight: ExperimentRecord[], complete: boolean, now: Date): NonNullable<ReportInput["writes"]> {
  const from = Math.min(...tonight.map((r) => Date.parse(r.createdAt)));
  const to = complete ? Math.max(...tonight.map((r) => Date.parse(r.updatedAt))) : now.getTime();
  const u = budget.usage(from, to);
  return {
    total: u.writes,
    peakHour: u.peakHour,
    perHour: budget.limits.perHour,
    heldBack: u.heldBack,
    countedSince: u.since > from ? new Date(u.since).toISOString().slice(0, 16).replace("T", " ") + " UTC" : null,
  };
}

export async function publishReports(
  gh: GitHubPort,
  config: Config,
  pulls: ExperimentPull[],
  finished: number[],
  now: Date,
): Promise<void> {
  const records = pulls.flatMap((p) => (p.record ? [p.record] : []));
  if (!records.length) return;
  const keyOf = (r: ExperimentRecord) => nightKey(config, new Date(r.createdAt));
  const nights = new Set(records.filter((r) => finished.includes(r.n)).map(keyOf));
  if (!nights.size) nights.add(keyOf(records.reduce((a, b) => (b.n > a.n ? b : a))));
  const numbers = new Map(pulls.flatMap((p) => (p.record ? [[p.record.n, p.number] as const] : [])));
  let existing: IssueInfo[] | null = null;
  for (const night of nights) {
    const tonight = records.filter((r) => keyOf(r) === night);
    if (!tonight.some((r) => r.measurements.length > 0 || r.decision)) continue;
    const complete = nightOver(config, night, tonight, now);
    const body = renderReport({
      night,
      records: tonight,
      before: records.filter((r) => keyOf(r) < night),
      pulls: numbers,
      complete,
      ...(gh.budget ? { writes: nightWrites(gh.budget, tonight, complete, now) } : {}),
    });
    existing ??= await readOwnIssues(gh, REPORT_LABEL);
    const title = reportTitle(night);
    const issue = existing.find((i) => i.title === title);
    if (!issue) {
      await gh.ensureLabels([{ name: REPORT_LABEL, color: "0e8a16", description: "autoresearch: the morning report of a night" }]);
      const number = await gh.createIssue({ title, body, labels: [REPORT_LABEL] });
      existing.push({ number, author: gh.botLogin ?? "", title, body, state: "open", labels: [REPORT_LABEL] });
    } else if (issue.body !== body) {
      await gh.updateIssue(issue.number, { body });
      issue.body = body;
    }
  }
}

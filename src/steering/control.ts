// The control issue: pause, queued ideas and reviewer notes, kept on GitHub in one issue
// (label `autoresearch:control`) as a readable body plus a hidden record (src/hidden.ts), and
// the label `autoresearch:paused` while paused. Only an issue the bot opened counts.
import { z } from "zod";
import { decodeHidden, encodeHidden } from "../hidden.js";
import { escapeText } from "../markdown.js";
import { readOwnIssues } from "../trust.js";
import type { Logger } from "../log.js";
import type { ExperimentRecord, GitHubPort, IssueInfo } from "../types.js";

export const CONTROL_LABEL = "autoresearch:control";
export const PAUSED_LABEL = "autoresearch:paused";
export const CONTROL_TITLE = "autoresearch: steering (pause, queued ideas, reviewer notes)";
/** Reviewer notes kept in the control issue (newest). */
export const MAX_NOTES = 30;

export interface Idea {
  /** The comment id of the `/autoresearch try` comment. */
  id: number;
  text: string;
  by: string;
  /** The experiment that used it. */
  usedBy: number | null;
}

export interface Note {
  /** The comment id (a review comment's when `review` is set: its own id sequence). */
  id: number;
  /** From a review comment on the PR's diff. */
  review?: true;
  /** The experiment PR it is on. */
  pull: number;
  by: string;
  text: string;
}

export interface ControlRecord {
  paused: { by: string; at: string } | null;
  ideas: Idea[];
  notes: Note[];
}

export interface Control {
  issue: IssueInfo | null;
  record: ControlRecord;
  /** The issue's hidden record is there but cannot be read: why. Nothing is written over it. */
  malformed?: string;
}

const controlSchema = z.object({
  paused: z.object({ by: z.string(), at: z.string() }).nullable().default(null),
  ideas: z.array(z.object({ id: z.number().int(), text: z.string(), by: z.string(), usedBy: z.number().int().nullable() })).default([]),
  notes: z.array(
    z.object({ id: z.number().int(), review: z.literal(true).optional(), pull: z.number().int(), by: z.string(), text: z.string() }),
  ).default([]),
});

export function emptyControl(): ControlRecord {
  return { paused: null, ideas: [], notes: [] };
}

/** The record in a control issue's body: empty when there is none, `malformed` when it cannot be read. */
export function decodeControl(body: string): ControlRecord & { malformed?: string } {
  const h = decodeHidden("control", body, controlSchema);
  if (!h.found) return emptyControl();
  if (!h.ok) return { ...emptyControl(), malformed: h.error };
  return h.value;
}

export function renderControl(c: ControlRecord): string {
  const out: string[] = [
    "This issue holds what maintainers told the autoresearch bot. The bot keeps it up to date; " +
      "use `/autoresearch help` in a comment for the commands.",
    "",
    c.paused
      ? `**Paused** by @${escapeText(c.paused.by)} at ${c.paused.at}: no new experiments start, and a run in flight was cancelled (it runs again from the start). \`/autoresearch resume\` starts them again.`
      : "**Running**: new experiments start whenever a slot is free. `/autoresearch pause` stops that.",
    "",
    "### Queued ideas (`/autoresearch try`)",
  ];
  const pending = c.ideas.filter((i) => i.usedBy === null);
  const used = c.ideas.filter((i) => i.usedBy !== null);
  if (!c.ideas.length) out.push("", "None.");
  for (const i of pending) out.push(`- [ ] ${escapeText(i.text.replace(/\s+/g, " "))} (by @${escapeText(i.by)})`);
  for (const i of used) out.push(`- [x] ${escapeText(i.text.replace(/\s+/g, " "))} (by @${escapeText(i.by)}; used by experiment ${i.usedBy})`);
  out.push("", `### Reviewer notes the next proposals take into account (newest ${MAX_NOTES})`, "");
  if (!c.notes.length) out.push("None.");
  for (const n of c.notes) out.push(`- #${n.pull} @${escapeText(n.by)}: ${escapeText(n.text.replace(/\s+/g, " ").slice(0, 200))}`);
  out.push("", encodeHidden("control", { paused: c.paused, ideas: c.ideas, notes: c.notes }));
  return out.join("\n") + "\n";
}

/** The control issue and its record (an empty record when there is none yet). */
export async function readControl(gh: GitHubPort, log?: Pick<Logger, "warn">): Promise<Control> {
  const issues = await readOwnIssues(gh, CONTROL_LABEL, log);
  const issue = issues.find((i) => i.state === "open") ?? issues[0] ?? null;
  if (!issue) return { issue, record: emptyControl() };
  const { malformed, ...record } = decodeControl(issue.body);
  if (malformed === undefined) return { issue, record };
  log?.warn(`${gh.repo.owner}/${gh.repo.repo}#${issue.number}: the steering record cannot be read (${malformed}); no experiment starts until it is fixed`);
  return { issue, record, malformed };
}

/** Write the control record (creating the issue on first use); the paused label mirrors it. */
export async function writeControl(gh: GitHubPort, control: Control): Promise<void> {
  if (control.malformed !== undefined) {
    // Writing now would replace what a person may still want back (a pause, ideas, notes).
    throw new Error(
      `the steering record in issue #${control.issue?.number ?? "?"} cannot be read (${control.malformed}); ` +
        "fix it, or delete its hidden autoresearch:control block to start afresh",
    );
  }
  const body = renderControl(control.record);
  const labels = [CONTROL_LABEL, ...(control.record.paused ? [PAUSED_LABEL] : [])];
  if (!control.issue) {
    await gh.ensureLabels([
      { name: CONTROL_LABEL, color: "5319e7", description: "autoresearch: pause state, queued ideas, reviewer notes" },
      { name: PAUSED_LABEL, color: "e99695", description: "autoresearch is paused: no new experiments" },
    ]);
    const number = await gh.createIssue({ title: CONTROL_TITLE, body, labels });
    control.issue = { number, author: gh.botLogin ?? "", title: CONTROL_TITLE, body, state: "open", labels };
    return;
  }
  const same = control.issue.body === body && control.issue.labels.slice().sort().join() === labels.slice().sort().join();
  if (same && control.issue.state === "open") return;
  if (control.record.paused) await gh.ensureLabels([{ name: PAUSED_LABEL, color: "e99695", description: "autoresearch is paused: no new experiments" }]);
  await gh.updateIssue(control.issue.number, { body, labels, state: "open" });
  control.issue = { ...control.issue, body, labels, state: "open" };
}

/** The first queued idea no experiment has used yet. */
export function nextIdea(control: ControlRecord, records: ExperimentRecord[]): Idea | null {
  const used = new Set(records.flatMap((r) => (r.ideaId != null ? [r.ideaId] : [])));
  return control.ideas.find((i) => i.usedBy === null && !used.has(i.id)) ?? null;
}

/** Mark ideas used by experiments (level-triggered: also repairs a mark lost to a crash). */
export function markUsedIdeas(control: ControlRecord, records: ExperimentRecord[]): boolean {
  let changed = false;
  for (const i of control.ideas) {
    if (i.usedBy !== null) continue;
    const r = records.find((x) => x.ideaId === i.id);
    if (r) {
      i.usedBy = r.n;
      changed = true;
    }
  }
  return changed;
}

/** program.md with a queued idea as its first instruction. */
export function guidanceWithIdea(guidance: string, idea: Idea): string {
  return (
    `# Try this idea in this experiment (queued by @${idea.by} with /autoresearch try)\n\n${idea.text.trim()}\n\n` +
    `Design the one change of this experiment around this idea.\n\n---\n\n${guidance}`
  );
}

/** Reviewer notes as the proposer sees them, oldest first. */
export function notesForPrompt(control: ControlRecord): string[] {
  return control.notes.map((n) => `On experiment PR #${n.pull}, @${n.by} wrote: ${n.text}`);
}

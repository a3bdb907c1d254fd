// Steering: what people tell the bot on GitHub, turned into state on GitHub.
//
// - Comments by users with write permission on experiment PRs become reviewer notes for later
//   proposals; comments by anyone else never reach the proposer.
// - `/autoresearch <command>` comments are carried out once: the bot's +1, -1 or confused
//   reaction on the comment is the record that it was handled, so a pass after a restart finds
//   the ones still to do. The bot's own comments are never read as commands.
// - Check-run button clicks come from the `check_run.requested_action` webhook itself
//   (handleClick): the clicker's permission is asked, and the click's delivery id is kept in
//   the experiment's own record, so a redelivered click is a no-op.
// - Pause, queued ideas and the notes live in one "control" issue (label
//   `autoresearch:control`): a readable body plus a hidden JSON record, and the label
//   `autoresearch:paused` while paused.
import OpenAI from "openai";
import { canWrite, HELP, needsWrite, parseCommand, type Command } from "./commands.js";
import { editsAsDiff } from "./edits.js";
import { fmtBpb, meanValBpb, describeFailure, isMeasured } from "./policy.js";
import { inWindow, nightKey, type Config } from "./config.js";
import { labelsFor, renderBody } from "./ledger.js";
import { codeBlock, escapeText } from "./markdown.js";
import { readLedger, readOwnIssues } from "./trust.js";
import { renderReport, REPORT_LABEL, reportTitle, type ReportInput } from "./report.js";
import type { WriteBudgetView } from "./github/budget.js";
import type { ExperimentPull, ExperimentRecord, GitHubPort, IssueComment, IssueInfo } from "./types.js";

export const CONTROL_LABEL = "autoresearch:control";
export const PAUSED_LABEL = "autoresearch:paused";
export const CONTROL_TITLE = "autoresearch: steering (pause, queued ideas, reviewer notes)";

/** Commands older than this are not looked for after a restart. */
export const COMMAND_LOOKBACK_MS = 3 * 24 * 3600_000;
/** Reviewer notes kept in the control issue (newest). */
export const MAX_NOTES = 30;
const MAX_NOTE_CHARS = 1_500;
/** Longest answer to a question that is posted. */
const MAX_ANSWER_CHARS = 4_000;

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
}

const CONTROL_RE = /<!--\s*autoresearch:control\s*([\s\S]*?)-->/;

export function decodeControl(body: string): ControlRecord {
  const empty: ControlRecord = { paused: null, ideas: [], notes: [] };
  const m = CONTROL_RE.exec(body);
  if (!m) return empty;
  try {
    const v = JSON.parse(m[1]!) as Partial<ControlRecord>;
    return {
      paused: v.paused && typeof v.paused.by === "string" ? { by: v.paused.by, at: String(v.paused.at ?? "") } : null,
      ideas: Array.isArray(v.ideas) ? v.ideas.filter((i) => typeof i?.id === "number" && typeof i.text === "string") : [],
      notes: Array.isArray(v.notes) ? v.notes.filter((n) => typeof n?.id === "number" && typeof n.text === "string") : [],
    };
  } catch {
    return empty;
  }
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
  const json = JSON.stringify(c).replace(/</g, "\\u003c").replace(/>/g, "\\u003e");
  out.push("", `<!-- autoresearch:control\n${json}\n-->`);
  return out.join("\n") + "\n";
}

/** The control issue and its record (an empty record when there is none yet). */
export async function readControl(gh: GitHubPort, log?: { warn(m: string): void }): Promise<Control> {
  const issues = await readOwnIssues(gh, CONTROL_LABEL, log);
  const issue = issues.find((i) => i.state === "open") ?? issues[0] ?? null;
  return { issue, record: issue ? decodeControl(issue.body) : { paused: null, ideas: [], notes: [] } };
}

/** Write the control record (creating the issue on first use); the paused label mirrors it. */
export async function writeControl(gh: GitHubPort, control: Control): Promise<void> {
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

// ---------------------------------------------------------------- the scan

export interface SteerOptions {
  gh: GitHubPort;
  /** Look at comments created or edited since this time (ISO). */
  since: string;
  /** The app's slug: mentions of @slug are questions. */
  appSlug?: string | null;
  /** The bot's own login (`<slug>[bot]`): its reactions and click records are trusted. */
  botLogin?: string | null;
  /** Answers a question about an experiment (an LLM), or null for the plain explanation. */
  answer?: ((system: string, user: string) => Promise<string>) | null;
  log?: { info(m: string): void; warn(m: string): void };
}

export interface SteerReport {
  handled: { comment: number; command: Command["kind"]; by: string; outcome: "done" | "denied" | "refused" }[];
  notes: number;
}

const DONE_REACTIONS = new Set(["+1", "-1", "confused"]);

/** Read new comments and carry out commands; record new reviewer notes. */
export async function steer(o: SteerOptions): Promise<SteerReport> {
  const { gh } = o;
  const out: SteerReport = { handled: [], notes: 0 };
  const comments = await gh.listCommentsSince(o.since);
  const isBot = (c: IssueComment) => c.userType === "Bot" || c.user.endsWith("[bot]");
  const ownBot = (login: string) => (o.botLogin ? login === o.botLogin : login.endsWith("[bot]"));

  const candidates: { c: IssueComment; cmd: Command; by: string }[] = [];
  const noteCandidates: IssueComment[] = [];
  // Review comments on a diff are discussion only: notes, never commands.
  for (const c of await gh.listReviewCommentsSince(o.since)) {
    if (!isBot(c) && c.body.trim()) noteCandidates.push(c);
  }
  for (const c of comments) {
    // Bots' comments (the bot's own above all: they quote runs and LLMs) are never commands or notes.
    if (isBot(c)) continue;
    const cmd = parseCommand(c.body, o.appSlug);
    if (cmd) candidates.push({ c, cmd, by: c.user });
    else if (c.body.trim()) noteCandidates.push(c);
  }
  if (!candidates.length && !noteCandidates.length) return out;

  const permissions = new Map<string, string>();
  const permissionOf = async (login: string) => {
    let p = permissions.get(login);
    if (p === undefined) {
      p = await gh.getPermission(login);
      permissions.set(login, p);
    }
    return p;
  };
  let pulls: ExperimentPull[] | null = null;
  const ledger = async () => (pulls ??= await readLedger(gh, o.log));
  let control: Control | null = null;
  const ctl = async () => (control ??= await readControl(gh, o.log));
  let controlDirty = false;

  // Reviewer notes: comments on experiment PRs by people who may write to the repository.
  for (const c of noteCandidates) {
    const pull = (await ledger()).find((p) => p.number === c.issueNumber && p.record);
    if (!pull) continue;
    if (!canWrite(await permissionOf(c.user))) continue; // the prompt-injection boundary
    const rec = (await ctl()).record;
    const where = c.review ? `(on ${c.review.path}${c.review.line ? ` line ${c.review.line}` : ""}) ` : "";
    const text = (where + c.body.trim()).slice(0, MAX_NOTE_CHARS);
    const existing = rec.notes.find((n) => n.id === c.id && !n.review === !c.review);
    if (existing) {
      if (existing.text !== text) {
        existing.text = text;
        controlDirty = true;
      }
      continue;
    }
    rec.notes.push({ id: c.id, pull: c.issueNumber, by: c.user, text, ...(c.review ? { review: true as const } : {}) });
    rec.notes.sort((a, b) => a.id - b.id);
    if (rec.notes.length > MAX_NOTES) rec.notes.splice(0, rec.notes.length - MAX_NOTES);
    controlDirty = true;
    out.notes++;
  }

  for (const { c, cmd, by } of candidates) {
    if (c.reactions > 0) {
      const reactions = await gh.listReactions(c.id);
      if (reactions.some((r) => DONE_REACTIONS.has(r.content) && (r.userType === "Bot" || r.user.endsWith("[bot]")) && ownBot(r.user))) continue;
    }
    if (needsWrite(cmd) && !canWrite(await permissionOf(by))) {
      await gh.react(c.id, "-1");
      await gh.comment(
        c.issueNumber,
        cmd.kind === "ask"
          ? `@${by} only people with write access to this repository can ask the bot questions here.`
          : `@${by} \`/autoresearch ${cmd.kind}\` needs write access to this repository; nothing was done.`,
      );
      out.handled.push({ comment: c.id, command: cmd.kind, by, outcome: "denied" });
      o.log?.info(`${gh.repo.owner}/${gh.repo.repo}#${c.issueNumber}: ${cmd.kind} by ${by} denied (no write access)`);
      continue;
    }
    const result = await carryOut(o, c, cmd, by, ledger, ctl, () => (controlDirty = true));
    // What the command changed is on GitHub before the reaction that says it was carried out: a
    // crash in between must leave the command to be carried out again, not lost.
    const changed = control as Control | null;
    if (controlDirty && changed) {
      await writeControl(gh, changed);
      controlDirty = false;
    }
    if (result.reply) await gh.comment(c.issueNumber, result.reply);
    await gh.react(c.id, result.ok ? "+1" : "confused");
    out.handled.push({ comment: c.id, command: cmd.kind, by, outcome: result.ok ? "done" : "refused" });
    o.log?.info(`${gh.repo.owner}/${gh.repo.repo}#${c.issueNumber}: ${cmd.kind} by ${by}: ${result.ok ? "done" : "refused"}`);
  }

  const finalControl = control as Control | null;
  if (controlDirty && finalControl) await writeControl(gh, finalControl);
  return out;
}

async function carryOut(
  o: SteerOptions,
  c: IssueComment,
  cmd: Command,
  by: string,
  ledger: () => Promise<ExperimentPull[]>,
  ctl: () => Promise<Control>,
  dirty: () => void,
): Promise<{ ok: boolean; reply?: string }> {
  const { gh } = o;
  const now = new Date().toISOString();
  switch (cmd.kind) {
    case "help":
      return { ok: true, reply: HELP };
    case "unknown":
      return { ok: false, reply: `I do not know \`/autoresearch ${cmd.word}\`.\n\n${HELP}` };
    case "pause": {
      const control = await ctl();
      if (!control.record.paused) {
        control.record.paused = { by, at: now };
        dirty();
      }
      return { ok: true };
    }
    case "resume": {
      const control = await ctl();
      if (control.record.paused) {
        control.record.paused = null;
        dirty();
      }
      return { ok: true };
    }
    case "try": {
      const control = await ctl();
      if (!control.record.ideas.some((i) => i.id === c.id)) {
        control.record.ideas.push({ id: c.id, text: cmd.idea, by, usedBy: null });
        dirty();
      }
      return { ok: true };
    }
    case "rerun":
    case "keep":
    case "ask": {
      const pull = (await ledger()).find((p) => p.number === c.issueNumber && p.record);
      if (!pull?.record) {
        return { ok: false, reply: `\`/autoresearch ${cmd.kind}\` works on experiment pull requests only.` };
      }
      if (cmd.kind === "ask") return { ok: true, reply: await answer(o, pull, pull.record, cmd.question, by) };
      return cmd.kind === "rerun" ? rerun(gh, pull, pull.record, by) : adopt(gh, pull, pull.record, by);
    }
  }
}

// ---------------------------------------------------------------- check-run buttons

/** A click on a button of a val_bpb check run, as the requested_action webhook tells it. */
export interface Click {
  command: "rerun" | "keep";
  /** Who clicked (the webhook's sender). */
  user: string;
  /** The webhook delivery id: the same click delivered again has the same id. */
  delivery: string;
  /** The check run's commit, and the pull request GitHub associates with it (if any). */
  headSha: string;
  pull: number | null;
}

/** Clicks remembered per experiment record (a redelivery comes soon after the click). */
export const MAX_CLICKS = 20;

export type ClickOutcome = "done" | "denied" | "refused" | "duplicate" | "unknown";

/**
 * Carry out a check-run button click: the clicker must have write access, the click is kept in
 * the experiment's own record (its delivery id), and a click whose delivery id is there already
 * is a no-op. Nothing is read from comments, so no text can pose as a click.
 */
export async function handleClick(gh: GitHubPort, click: Click, log?: { info(m: string): void; warn(m: string): void }): Promise<ClickOutcome> {
  const name = `${gh.repo.owner}/${gh.repo.repo}`;
  const pulls = await readLedger(gh, log);
  const pull =
    pulls.find((p) => p.record && click.pull !== null && p.number === click.pull) ??
    pulls.find((p) => p.record && (p.record.headSha === click.headSha || p.record.measurements.some((m) => m.sha === click.headSha)));
  if (!pull?.record) {
    log?.warn(`${name}: a ${click.command} click by ${click.user} on ${click.headSha.slice(0, 7)} matches no experiment; ignored`);
    return "unknown";
  }
  const r = pull.record;
  if (r.clicks?.includes(click.delivery)) return "duplicate";
  r.clicks = [...(r.clicks ?? []), click.delivery].slice(-MAX_CLICKS);
  const label = click.command === "rerun" ? "Measure again" : "Keep anyway";
  if (!canWrite(await gh.getPermission(click.user))) {
    await writeRecord(gh, pull, r);
    await gh.comment(pull.number, `@${click.user} clicked **${label}**, which needs write access to this repository; nothing was done.`);
    log?.info(`${name}#${pull.number}: ${click.command} click by ${click.user} denied (no write access)`);
    return "denied";
  }
  const result = click.command === "rerun" ? await rerun(gh, pull, r, click.user) : await adopt(gh, pull, r, click.user);
  if (!result.ok) await writeRecord(gh, pull, r);
  await gh.comment(pull.number, `With the check run's **${label}** button: ${result.reply ?? ""}`.trim());
  log?.info(`${name}#${pull.number}: ${click.command} click by ${click.user}: ${result.ok ? "done" : "refused"}`);
  return result.ok ? "done" : "refused";
}

async function writeRecord(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord): Promise<void> {
  r.updatedAt = new Date().toISOString();
  pull.body = renderBody(r);
  pull.record = r;
  await gh.updatePull(pull.number, { body: pull.body, labels: labelsFor(r) });
  pull.labels = labelsFor(r);
}

/** Reopen a closed experiment PR: its branch is restored at the commit that was measured. */
async function reopen(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord): Promise<void> {
  await gh.restoreBranch(pull.headRef, r.headSha);
  await gh.updatePull(pull.number, { state: "open" });
  pull.state = "open";
}

async function rerun(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord, by: string): Promise<{ ok: boolean; reply?: string }> {
  if (r.kind === "baseline") return { ok: false, reply: "A baseline is not measured again on request; experiments are." };
  if (pull.merged) return { ok: false, reply: "This experiment is merged already; there is nothing to measure again." };
  if (pull.state === "open" && r.state === "review") {
    // Held for review: measured once more, and held again unless a person keeps it.
    r.attempt += 1;
    r.state = "queued";
    r.decision = null;
    await writeRecord(gh, pull, r);
    return { ok: true, reply: `@${by}: measuring ${r.headSha.slice(0, 7)} again; the decision will use every measurement.` };
  }
  if (pull.state === "open") {
    if (r.state !== "queued" && r.state !== "running") {
      return { ok: false, reply: "This experiment is being settled right now; ask again once its PR is closed." };
    }
    r.reruns = (r.reruns ?? 0) + 1;
    await writeRecord(gh, pull, r);
    return { ok: true, reply: `@${by}: once this run ends the change is measured once more, and the decision uses every measurement.` };
  }
  if (r.state !== "discarded" && r.state !== "crashed") {
    return { ok: false, reply: `This experiment is ${r.state}; only discarded or crashed experiments are measured again.` };
  }
  await reopen(gh, pull, r);
  if (r.state === "crashed") r.measurements = [];
  r.attempt += 1;
  r.state = "queued";
  r.decision = null;
  await writeRecord(gh, pull, r);
  return {
    ok: true,
    reply:
      `@${by}: reopened to measure ${r.headSha.slice(0, 7)} again` +
      (r.measurements.length ? "; the decision will use both measurements." : "."),
  };
}

async function adopt(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord, by: string): Promise<{ ok: boolean; reply?: string }> {
  if (r.kind === "baseline") return { ok: false, reply: "A baseline has nothing to merge." };
  if (pull.merged || r.state === "kept") return { ok: false, reply: "This experiment is kept already." };
  if (pull.state === "open" && r.state === "review") {
    // A person looked at what the review rules flagged and vouches for it: merged as measured
    // (or re-applied and measured again if the default branch moved).
    r.adoptedBy = by;
    r.state = "kept";
    r.decision = {
      verdict: "keep",
      delta: r.decision?.delta ?? null,
      reasons: [...(r.decision?.reasons ?? []), `Reviewed and kept by @${by} with /autoresearch keep.`],
    };
    await writeRecord(gh, pull, r);
    return { ok: true, reply: `@${by}: kept after review. It is merged as measured (re-applied and measured again first if the default branch moved).` };
  }
  if (pull.state === "open" && r.state !== "queued" && r.state !== "running") {
    return { ok: false, reply: "This experiment is being settled right now; ask again once its PR is closed." };
  }
  if (pull.state === "closed") await reopen(gh, pull, r);
  r.adoptedBy = by;
  const measured = r.measurements.some((m) => isMeasured(m.result));
  if (pull.state === "open" && (r.state === "queued" || r.state === "running")) {
    // Still being measured: the decision will keep it unless the run crashes.
  } else if (r.state === "discarded" && measured) {
    // Measured and fine: merged as measured, or re-applied and measured again if the default branch moved.
    r.state = "kept";
    r.decision = {
      verdict: "keep",
      delta: r.decision?.delta ?? null,
      reasons: [...(r.decision?.reasons ?? []), `Adopted by @${by} with /autoresearch keep.`],
    };
  } else {
    r.attempt += 1;
    r.state = "queued";
    r.measurements = [];
    r.decision = null;
  }
  await writeRecord(gh, pull, r);
  return {
    ok: true,
    reply:
      `@${by}: adopted. The change is merged once it is measured on the current default branch ` +
      "(if the branch moved it is re-applied and measured again first); only a crash stops it.",
  };
}

// ---------------------------------------------------------------- questions

/** What the bot knows about an experiment, in plain words (the grounding of an answer). */
export function explainRecord(r: ExperimentRecord): string {
  const lines = [`Experiment ${r.n}: ${r.title}`, `Hypothesis: ${r.hypothesis}`, `State: ${r.state}.`];
  if (r.baselineBpb !== null) lines.push(`Baseline to beat: val_bpb ${fmtBpb(r.baselineBpb)}.`);
  r.measurements.forEach((m, i) => {
    const res = m.result;
    lines.push(
      isMeasured(res)
        ? `Run ${i + 1} (${m.sha.slice(0, 7)}): val_bpb ${fmtBpb(res.val_bpb)}.`
        : `Run ${i + 1} (${m.sha.slice(0, 7)}) failed: ${describeFailure(res)}`,
    );
  });
  const mean = meanValBpb(r.measurements);
  if (mean !== null && r.measurements.length > 1) lines.push(`Mean val_bpb: ${fmtBpb(mean)}.`);
  if (r.decision) lines.push(`Decision: ${r.decision.verdict}. ${r.decision.reasons.join(" ")}`);
  return lines.join("\n");
}

async function answer(o: SteerOptions, pull: ExperimentPull, r: ExperimentRecord, question: string, by: string): Promise<string> {
  const facts = explainRecord(r);
  const last = r.measurements[r.measurements.length - 1];
  const tail = last && !isMeasured(last.result) ? last.result.log_tail.slice(-2_000) : "";
  if (o.answer) {
    const system =
      "You answer questions about one autoresearch experiment (a change to train.py trained for a fixed time and measured by val_bpb, lower is better). " +
      "Answer briefly and only from the record, diff and log given; say so when they do not tell.";
    const user = [
      `Question from @${by}: ${question || "(no question text)"}`,
      `## Record\n${facts}`,
      `## Diff\n${editsAsDiff(r.edits) || "(no change: a baseline)"}`,
      tail ? `## End of the log of the failed run\n${tail}` : "",
    ]
      .filter(Boolean)
      .join("\n\n");
    try {
      const text = (await o.answer(system, user)).trim();
      // The model read a run's log and an LLM's diff: its words are quoted, not trusted.
      if (text) return `${escapeText(text.slice(0, MAX_ANSWER_CHARS))}\n\n<sub>Answered from experiment ${r.n}'s record, diff and result.</sub>`;
    } catch (err) {
      o.log?.warn(`#${pull.number}: the answer could not be generated: ${(err as Error).message}`);
    }
  }
  const why = r.state === "crashed" && tail ? `\n\nEnd of the log:\n\n${codeBlock(tail)}` : "";
  return `What the record of this experiment says:\n\n${facts
    .split("\n")
    .map((l) => `- ${escapeText(l)}`)
    .join("\n")}${why}`;
}

/** An answerer backed by an OpenAI-compatible endpoint (null without an API key). */
export function openaiAnswerer(env: Record<string, string | undefined>, model = "gpt-4o-mini") {
  if (!env.OPENAI_API_KEY) return null;
  const client = new OpenAI({ apiKey: env.OPENAI_API_KEY, baseURL: env.OPENAI_BASE_URL || undefined, timeout: 60_000, maxRetries: 1 });
  return async (system: string, user: string): Promise<string> => {
    const res = await client.chat.completions.create({
      model,
      temperature: 0.2,
      messages: [
        { role: "system", content: system },
        { role: "user", content: user },
      ],
    });
    return res.choices[0]?.message?.content ?? "";
  };
}

// ---------------------------------------------------------------- the morning report

function nightOver(config: Config, night: string, records: ExperimentRecord[], now: Date): boolean {
  if (nightKey(config, now) !== night) return true;
  if (config.night?.window) return !inWindow(config, now);
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

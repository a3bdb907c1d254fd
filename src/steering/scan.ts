// The comment scan: what people tell the bot in comments, turned into state on GitHub.
//
// - Comments by users with write permission on experiment PRs become reviewer notes for later
//   proposals; comments by anyone else never reach the proposer.
// - `/autoresearch <command>` comments are carried out once: the bot's +1, -1 or confused
//   reaction on the comment is the record that it was handled, so a pass after a restart finds
//   the ones still to do. The bot's own comments are never read as commands.
import { canWrite, HELP, needsWrite, parseCommand, type Command } from "../commands.js";
import { readLedger } from "../trust.js";
import { adopt, rerun } from "./actions.js";
import { answer, type Answerer } from "./answer.js";
import { MAX_NOTES, readControl, writeControl, type Control } from "./control.js";
import { systemClock, type Clock, type Logger } from "../log.js";
import type { ExperimentPull, GitHubPort, IssueComment } from "../types.js";

/** Commands older than this are not looked for after a restart. */
export const COMMAND_LOOKBACK_MS = 3 * 24 * 3600_000;
const MAX_NOTE_CHARS = 1_500;

export interface SteerOptions {
  gh: GitHubPort;
  /** Look at comments created or edited since this time (ISO). */
  since: string;
  /** The app's slug: mentions of @slug are questions. */
  appSlug?: string | null;
  /** The bot's own login (`<slug>[bot]`): its reactions and click records are trusted. */
  botLogin?: string | null;
  /** Answers a question about an experiment (an LLM), or null for the plain explanation. */
  answer?: Answerer | null;
  log?: Pick<Logger, "info" | "warn">;
  now?: Clock;
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
    const ctlNow = await ctl();
    if (ctlNow.malformed !== undefined) continue; // nothing is written over an unreadable record
    const rec = ctlNow.record;
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
  const now = (o.now ?? systemClock)().toISOString();
  if (cmd.kind === "pause" || cmd.kind === "resume" || cmd.kind === "try") {
    const control = await ctl();
    if (control.malformed !== undefined) {
      // Written over, the unreadable record would lose what is in it: a person fixes it first.
      return {
        ok: false,
        reply:
          `@${by}: nothing was done: the steering record in #${control.issue?.number ?? "?"} cannot be read (${control.malformed}). ` +
          "Fix it, or delete its hidden autoresearch:control block to start afresh, then ask again.",
      };
    }
  }
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
      if (cmd.kind === "ask") return { ok: true, reply: await answer(o.answer, o.log, pull, pull.record, cmd.question, by) };
      const target = { gh, pull, record: pull.record, by, now: o.now ?? systemClock };
      return cmd.kind === "rerun" ? rerun(target) : adopt(target);
    }
  }
}

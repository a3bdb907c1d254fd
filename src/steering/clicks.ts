// Check-run button clicks come from the `check_run.requested_action` webhook itself: the
// clicker's permission is asked, and the click's delivery id is kept in the experiment's own
// record, so a redelivered click is a no-op. Nothing is read from comments, so no text can pose
// as a click.
import { canWrite } from "../commands.js";
import { readLedger } from "../trust.js";
import { writeRecord } from "../ledger/index.js";
import { adopt, rerun } from "./actions.js";
import { systemClock, type Clock, type Logger } from "../log.js";
import type { GitHubPort } from "../types.js";

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
export async function handleClick(gh: GitHubPort, click: Click, log?: Pick<Logger, "info" | "warn">, now: Clock = systemClock): Promise<ClickOutcome> {
  const name = `${gh.repo.owner}/${gh.repo.repo}`;
  const pulls = await readLedger(gh, log);
  const pull =
    pulls.find((p) => p.record && click.pull !== null && p.number === click.pull) ??
    pulls.find((p) => p.record && (p.record.headSha === click.headSha || p.record.measurements.some((m) => m.sha === click.headSha)));
  if (!pull?.record) {
    log?.warn(`${name}: a ${click.command} click by ${click.user} on ${click.headSha.slice(0, 7)} matches no experiment; ignored`);
    return "unknown";
  }
  if (pull.record.clicks?.includes(click.delivery)) return "duplicate";
  const r = { ...pull.record, clicks: [...(pull.record.clicks ?? []), click.delivery].slice(-MAX_CLICKS) };
  const label = click.command === "rerun" ? "Measure again" : "Keep anyway";
  if (!canWrite(await gh.getPermission(click.user))) {
    await writeRecord(gh, pull, r, now());
    await gh.comment(pull.number, `@${click.user} clicked **${label}**, which needs write access to this repository; nothing was done.`);
    log?.info(`${name}#${pull.number}: ${click.command} click by ${click.user} denied (no write access)`);
    return "denied";
  }
  const target = { gh, pull, record: r, by: click.user, now };
  const result = click.command === "rerun" ? await rerun(target) : await adopt(target);
  if (!result.ok) await writeRecord(gh, pull, r, now());
  await gh.comment(pull.number, `With the check run's **${label}** button: ${result.reply ?? ""}`.trim());
  log?.info(`${name}#${pull.number}: ${click.command} click by ${click.user}: ${result.ok ? "done" : "refused"}`);
  return result.ok ? "done" : "refused";
}

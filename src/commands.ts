// Commands people give the bot in comments (`/autoresearch <command>`), check-run buttons and
// questions that mention the app. Pure: parsing, the help text, and who may do what.

export type Command =
  | { kind: "rerun" }
  | { kind: "keep" }
  | { kind: "pause" }
  | { kind: "resume" }
  | { kind: "try"; idea: string }
  | { kind: "help" }
  | { kind: "unknown"; word: string }
  | { kind: "ask"; question: string };

export const COMMAND_PREFIX = "/autoresearch";

/** Longest idea kept from `/autoresearch try`. */
export const MAX_IDEA_CHARS = 1_000;

/** Check-run buttons (GitHub: at most 3; label and identifier at most 20 characters, description 40). */
export const CHECK_ACTIONS = {
  rerun: { label: "Measure again", description: "Train it again; decide on all runs", identifier: "rerun" },
  keep: { label: "Keep anyway", description: "Re-apply, measure and merge it", identifier: "keep" },
} as const;

export const HELP = [
  "Commands (in a comment, by someone with write access to this repository):",
  "",
  "| command | where | what |",
  "| --- | --- | --- |",
  "| `/autoresearch rerun` | an experiment PR | measure this experiment again; the decision uses every measurement |",
  "| `/autoresearch keep` | a closed experiment PR, or one held for review | adopt it: merge it as measured, or re-apply the change on the current default branch, measure it, and merge it unless the run crashes |",
  "| `/autoresearch pause` | any issue or PR | start no new experiments; the run in flight is cancelled and measured again after resume |",
  "| `/autoresearch resume` | any issue or PR | start experiments again |",
  "| `/autoresearch try <idea>` | any issue or PR | queue an idea: the next proposal gets it as its first instruction |",
  "| `/autoresearch help` | anywhere | this table |",
  "",
  "Mention the app with a question on an experiment PR and it answers from that experiment's record, diff and result.",
].join("\n");

/** Commands that change the loop: the commenter needs write, maintain or admin permission. */
export function needsWrite(c: Command): boolean {
  return c.kind !== "help" && c.kind !== "unknown";
}

/** write, maintain and admin may steer; read, triage and none may not. */
export function canWrite(permission: string | null | undefined): boolean {
  return permission === "write" || permission === "maintain" || permission === "admin";
}

/**
 * The command in a comment: the first line that starts with `/autoresearch`, or, failing that,
 * a question when the comment mentions `@<appSlug>` (slug compared case-insensitively).
 * Quoted lines (`> …`) and fenced code are ignored, so quoting a command does not repeat it.
 */
export function parseCommand(body: string, appSlug?: string | null): Command | null {
  const lines = visibleLines(body);
  for (const raw of lines) {
    const line = raw.trim();
    if (!line.toLowerCase().startsWith(COMMAND_PREFIX)) continue;
    const rest = line.slice(COMMAND_PREFIX.length);
    if (rest !== "" && !/^\s/.test(rest)) continue; // "/autoresearchfoo" is not a command
    const [wordRaw = "", ...args] = rest.trim().split(/\s+/);
    const word = wordRaw.toLowerCase();
    switch (word) {
      case "":
      case "help":
        return { kind: "help" };
      case "rerun":
      case "keep":
      case "pause":
      case "resume":
        return { kind: word };
      case "try": {
        // The idea may continue on the following lines.
        const at = body.indexOf(raw);
        const tail = body.slice(at + raw.length);
        const first = line.slice(line.toLowerCase().indexOf("try") + 3).trim();
        const idea = [first, tail.trim()].filter(Boolean).join("\n").trim();
        if (!idea) return { kind: "unknown", word: "try (without an idea)" };
        return { kind: "try", idea: idea.slice(0, MAX_IDEA_CHARS) };
      }
      default:
        void args;
        return { kind: "unknown", word: wordRaw.slice(0, 40) };
    }
  }
  if (appSlug) {
    const mention = new RegExp(`(^|[^\\w@/-])@${escapeRe(appSlug)}(\\[bot\\])?(?![\\w-])`, "i");
    const text = lines.join("\n");
    if (mention.test(text)) {
      const question = text.replace(new RegExp(`@${escapeRe(appSlug)}(\\[bot\\])?`, "gi"), "").trim();
      return { kind: "ask", question: question.slice(0, 2_000) };
    }
  }
  return null;
}

/** Lines outside fenced code blocks and block quotes. */
function visibleLines(body: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of body.replace(/\r\n?/g, "\n").split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (fenced || /^\s*>/.test(line)) continue;
    out.push(line);
  }
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

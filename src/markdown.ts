// Markdown the bot writes around text it did not write: a run's output (crash reasons, log
// tails, summary fields), an LLM's words (titles, hypotheses, diffs, answers) and people's
// comments. Such text is untrusted. Whatever it contains, once quoted by the bot it must not
// become something the bot or GitHub acts on:
//
// - HTML (an unclosed `<!--` hides the rest of a body; `<details>`, `<img>` change the page);
// - a hidden record or command marker (`<!-- autoresearch:… -->`), which a decoder reading the
//   bot's own text could mistake for the bot's writing;
// - a `/autoresearch` command or an `@mention` that pings someone in the bot's name.
//
// Prose is entity-escaped. Code blocks cannot be entity-escaped (GitHub shows `&lt;` there as
// written), so inside them the dangerous sequences are broken with an invisible WORD JOINER
// (U+2060): the text reads the same and matches nothing.

const WJ = "\u2060";

/** Break markers, commands and mentions; leaves the text readable as it was. */
export function defuse(text: string): string {
  return text
    .replace(/<!--/g, `<!${WJ}--`)
    .replace(/--(!?)>/g, `-${WJ}-$1>`)
    .replace(/\/(autoresearch)/gi, `/${WJ}$1`)
    .replace(/@(?=[A-Za-z0-9])/g, `@${WJ}`);
}

/** Untrusted text as markdown prose: no HTML, no marker, no command, no mention. */
export function escapeText(text: string): string {
  return defuse(text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"));
}

/** Untrusted text in one table cell: escaped, on one line, pipes kept in the cell. */
export function escapeCell(text: string): string {
  return escapeText(text).replace(/\|/g, "\\|").replace(/\r?\n|\r/g, " ");
}

/** A fence longer than any run of backticks in the content (so the content cannot end the block). */
export function fenceFor(content: string): string {
  const longest = Math.max(0, ...(content.match(/`+/g) ?? []).map((r) => r.length));
  return "`".repeat(Math.max(3, longest + 1));
}

/** Untrusted text as a fenced code block, shown as it is but defused. */
export function codeBlock(content: string, lang = ""): string {
  const text = defuse(content);
  const fence = fenceFor(text);
  return `${fence}${lang}\n${text.endsWith("\n") ? text : text + "\n"}${fence}`;
}

/** Markdown the bot wrote itself (a link, a figure, inline code of a sha): a table cell taken as it is. */
export interface Markdown {
  md: string;
}

export function md(text: string): Markdown {
  return { md: text };
}

/** A table cell: untrusted text (escaped), or the bot's own markdown (`md(...)`), kept on one line. */
export type Cell = string | Markdown;

/** A markdown table: plain strings are untrusted text and escaped; md(...) cells are the bot's own markdown. */
export function table(header: string[], rows: Cell[][]): string {
  const cell = (c: Cell) => (typeof c === "string" ? escapeCell(c) : c.md.replace(/\r?\n|\r/g, " "));
  const line = (cells: Cell[]) => `| ${cells.map(cell).join(" | ")} |`;
  return [line(header), `| ${header.map(() => "---").join(" | ")} |`, ...rows.map(line)].join("\n");
}

/** One line of untrusted text, at most `max` characters (titles). */
export function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

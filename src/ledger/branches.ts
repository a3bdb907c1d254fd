// Experiment branch names: `autoresearch/<n>-<slug>`, the only refs the bot creates, moves and deletes.

const BRANCH_PREFIX = "autoresearch/";

/** A branch-name-safe slug of a title: lowercase a-z0-9 and '-', at most 40 characters, never empty. */
export function slugify(title: string): string {
  const slug = title
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40)
    .replace(/-+$/g, "");
  return slug || "experiment";
}

/** `autoresearch/<n>-<slug>`: the experiment number makes the name unique and sortable. */
export function branchName(n: number, title: string): string {
  return `${BRANCH_PREFIX}${n}-${slugify(title)}`;
}

/** The experiment number and slug of an experiment branch (`refs/heads/` is accepted), else null. */
export function parseBranchName(ref: string): { n: number; slug: string } | null {
  const m = /^(?:refs\/heads\/)?autoresearch\/([1-9]\d*)-([a-z0-9-]+)$/.exec(ref);
  if (!m) return null;
  return { n: Number(m[1]), slug: m[2]! };
}

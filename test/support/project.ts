// A small research project folder of a test's own, committed to a new git repository (what
// `npm run demo -- --repo DIR` is given).
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/** git in `dir`, as a throwaway identity; its output as text. */
export function gitIn(dir: string, ...args: string[]): string {
  return execFileSync("git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { encoding: "utf8" });
}

/** Writes `files` (paths relative to `dir`) and commits them as the repository's first commit. */
export function committedProject(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  gitIn(dir, "init", "-q");
  gitIn(dir, "add", "-A");
  gitIn(dir, "commit", "-qm", "A tiny research project");
}

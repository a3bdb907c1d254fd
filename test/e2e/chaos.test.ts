// The chaos suite on a small fixed set of seeds: a night through the twins with the bot killed
// with SIGKILL at seeded writes and started again (scripts/chaos.ts, `npm run chaos`). Nothing
// may be lost, made twice, left unfinished or left behind.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");
const run = promisify(execFile);

it.each([1, 2])("seed %i: 5 experiments, 5 kills between writes: nothing lost, duplicated, unfinished or orphaned", async (seed) => {
  const dir = await mkdtemp(path.join(tmpdir(), "chaos-"));
  try {
    const json = path.join(dir, "chaos.json");
    await run(process.execPath, ["--import", "tsx", "scripts/chaos.ts", "--experiments", "5", "--kills", "5", "--seed", String(seed), "--json", json], {
      cwd: ROOT,
      timeout: 240_000,
    }).catch((err: { stdout?: string }) => {
      // A non-zero exit is a finding: the JSON below says which.
      if (!err.stdout) throw err;
    });
    const result = JSON.parse(await readFile(json, "utf8")) as Record<string, unknown>;
    expect(result).toMatchObject({ kills: 5, lost: 0, duplicated: 0, unfinishedChecks: 0, orphans: 0, decided: 5 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 300_000);

// The local runner on a disk that fills up, run inside a bubblewrap namespace whose run folder
// is a small tmpfs (the test starts it so: `bwrap --size … --tmpfs DF_RUNS`). It trains one run
// (`fills`) while another (`waits`) waits for the slot, fills the disk, watches what the runner
// does while it is full, frees it again and prints what it saw as one JSON line.
// Configured by environment: DF_RUNS, DF_REPO, DF_CACHE, DF_SCRATCH, DF_COUNTER.
import * as fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LocalRunner } from "../../src/runner/local.js";
import type { RepoRef, RunObservation, RunSpec } from "../../src/types.js";
import { need } from "../../twins/bot.js";

const HARNESS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/counting-harness.py");
const REPO: RepoRef = { owner: "o", repo: "r" };
const runsDir = need("DF_RUNS");
const counter = need("DF_COUNTER");
const logs: string[] = [];
const logger = { info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) };

const runner = new LocalRunner({
  runsDir,
  harnessPath: HARNESS,
  trainPython: "python3",
  cacheDir: need("DF_CACHE"),
  pollMs: 100,
  diskFullRetryMs: 400,
  env: { TMPDIR: need("DF_SCRATCH"), AUTORESEARCH_TEST_RUN_LOG: counter },
  logger,
});

function spec(runId: string, trainCmd: string): RunSpec {
  return {
    runId, repo: REPO, pull: 1, sha: "0123456789abcdef0123456789abcdef01234567", source: { url: need("DF_REPO"), token: null },
    workdir: ".", trainCmd, prepareCmd: null, prepareFiles: [], budgetSeconds: 5, evalAllowanceSeconds: 60, timeoutSeconds: 60,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 1200; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(50);
  }
  throw new Error(`gave up waiting for ${what}`);
}
const finished = (runId: string) =>
  until(`${runId} to finish`, async () => {
    const o = await runner.observe(runId);
    return o.phase === "finished" ? o : undefined;
  }) as Promise<Extract<RunObservation, { phase: "finished" }>>;
const starts = (runId: string) =>
  fs.existsSync(counter) ? fs.readFileSync(counter, "utf8").split("\n").filter((l) => l.startsWith(`${runId} `)).length : 0;

await runner.submit(spec("fills", "python3 slow.py 2"));
await runner.submit(spec("waits", "python3 good.py"));
await until("fills to start", async () => (fs.existsSync(path.join(runsDir, "fills", "pid")) ? true : undefined));

// Fill the disk to the last byte while `fills` trains.
const filler = path.join(runsDir, "filler");
function fill(): void {
  const fd = fs.openSync(filler, "a");
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    fs.closeSync(fd);
  }
}
fill();

const fills = await finished("fills");
// Many polls and several of the runner's retries while the disk stays full.
await sleep(2500);
const whileFull = {
  waits: await runner.observe("waits"),
  startsOfWaits: starts("waits"),
  problems: (await runner.validate?.(REPO)) ?? [],
  logs: [...logs],
};

fs.rmSync(filler);
const waits = await finished("waits");

// A run submitted while the disk is full is refused, saying why, and leaves nothing behind.
fill();
let refused = "";
try {
  await runner.submit(spec("refused", "python3 good.py"));
} catch (err) {
  refused = `${(err as Error).name}: ${(err as Error).message}`;
}
const afterRefusal = await runner.observe("refused");
fs.rmSync(filler);
runner.close();
console.log(JSON.stringify({ fills: fills.result, whileFull, waits: waits.result, startsOfWaits: starts("waits"), refused, afterRefusal, logs }));
process.exit(0);

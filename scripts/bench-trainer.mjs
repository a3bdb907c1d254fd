#!/usr/bin/env node
// Benchmark of the template trainer: trains trainer/train.py through the harness for a
// fixed budget (default 60 s) and prints a plain table of what it achieved.
//
//   npm run bench:trainer [-- --budget 60] [-- --python /usr/bin/python3] [-- --cache-dir DIR]
//                         [-- --sandbox bwrap|none] [-- --json]
//
// By default the run is sandboxed as the local runner sandboxes it (bubblewrap), when bwrap
// is installed; --sandbox none measures the bare process.
//
// The harness runs with `python3` from PATH; train.py runs under --python (default:
// env AUTORESEARCH_PYTHON, else /usr/bin/python3 when it exists, else python3).
// Peak RSS is the training process's own high-water mark (train.py prints peak_rss_mb
// from getrusage; the harness keeps extra summary keys).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const { values } = parseArgs({
  options: {
    budget: { type: "string", default: "60" },
    python: { type: "string" },
    "cache-dir": { type: "string" },
    sandbox: { type: "string" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log("usage: node scripts/bench-trainer.mjs [--budget SECONDS] [--python INTERP] [--cache-dir DIR] [--sandbox bwrap|none] [--json]");
  process.exit(0);
}

const budget = Number(values.budget);
if (!Number.isFinite(budget) || budget <= 0) {
  console.error(`--budget must be a positive number of seconds, got ${values.budget}`);
  process.exit(2);
}
const python =
  values.python ?? process.env.AUTORESEARCH_PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
const cacheDir = values["cache-dir"] ?? join(tmpdir(), "autoresearch-bot-bench-cache");
const hasBwrap = (process.env.PATH ?? "").split(":").some((dir) => dir && existsSync(join(dir, "bwrap")));
const sandbox = values.sandbox ?? (hasBwrap ? "bwrap" : "none");
if (sandbox !== "bwrap" && sandbox !== "none") {
  console.error(`--sandbox must be bwrap or none, got ${sandbox}`);
  process.exit(2);
}

const args = [
  join(repoRoot, "trainer", "harness.py"),
  "--repo", repoRoot,
  "--workdir", "trainer",
  "--sandbox", sandbox,
  "--train-cmd", "python3 train.py",
  "--prepare-cmd", "python3 prepare.py",
  "--python", python,
  "--cache-dir", cacheDir,
  "--budget", String(budget),
  "--timeout", String(Math.ceil(3 * budget + 120)),
];

console.error(`bench: training the template for ${budget} s through the harness (python ${python}, sandbox ${sandbox}) ...`);
const started = Date.now();
const child = execFile("python3", args, { maxBuffer: 64 * 1024 * 1024 }, (error, stdout) => {
  const wallSeconds = (Date.now() - started) / 1000;
  const last = stdout.trim().split("\n").pop() ?? "";
  let result;
  try {
    result = JSON.parse(last);
  } catch {
    console.error(`bench: the harness printed no result (${error ? error.message : "exit 0"})`);
    process.exit(1);
  }
  if (result.status !== "ok") {
    console.error(`bench: run failed: ${result.status}: ${result.reason}\n${result.log_tail ?? ""}`);
    process.exit(1);
  }
  const deviceLine = String(result.log_tail ?? "").split("\n").find((line) => line.startsWith("device:")) ?? "";
  const device = deviceLine.replace(/^device:\s*/, "") || "unknown";
  const onCuda = device.startsWith("cuda");
  const num = (value, digits) => (typeof value === "number" ? value.toFixed(digits) : "n/a");
  const rows = [
    ["device", device],
    ["sandbox", sandbox],
    ["budget (s)", String(budget)],
    ["val_bpb", num(result.val_bpb, 6)],
    ["steps", String(result.num_steps ?? "n/a")],
    ["tokens/s", num(result.tokens_per_sec, 0)],
    ["tokens (M)", num(result.total_tokens_M, 1)],
    ["params (M)", num(result.num_params_M, 1)],
    ["training seconds", num(result.training_seconds, 1)],
    ["train.py total seconds", num(result.total_seconds, 1)],
    ["harness wall seconds", wallSeconds.toFixed(1)],
    ["peak RSS (MB)", num(result.peak_rss_mb, 1)],
  ];
  if (onCuda) {
    rows.push(["MFU (%)", num(result.mfu_percent, 2)], ["peak VRAM (MB)", num(result.peak_vram_mb, 1)]);
  }
  const width = Math.max(...rows.map(([key]) => key.length));
  console.log(rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join("\n"));
  if (values.json) console.log(JSON.stringify(result));
});
child.stderr?.on("data", (chunk) => process.stderr.write(chunk));

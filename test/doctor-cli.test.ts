// The command line around the checks: `doctor` and `results --help`, and `npm start` refusing to
// start on a fatal problem (one FATAL line per failure, exit 1).
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";
import { afterAll, expect, it, vi } from "vitest";
import { main } from "../src/cli.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const TSX = pathToFileURL(path.join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;
const temps: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "doctor-cli-"));
  temps.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** A port nothing listens on: GitHub "unreachable" at once, without the network. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function run(command: string, args: string[], opts: { cwd: string; env: Record<string, string | undefined> }): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env as NodeJS.ProcessEnv, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${command} ${args.join(" ")} did not exit:\n${out}`));
    }, 50_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** The process environment without anything that would configure the bot. */
function bareEnv(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = {};
  for (const k of ["LANG", "TZ", "SystemRoot"]) if (process.env[k]) env[k] = process.env[k];
  return { ...env, ...extra };
}

it("prints the usage of results and doctor for --help, with exit 0", async () => {
  const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
  try {
    expect(await main(["results", "--help"])).toBe(0);
    expect(await main(["results", "-h"])).toBe(0);
    expect(await main(["doctor", "--help"])).toBe(0);
    expect(await main(["--help"])).toBe(0);
    const printed = log.mock.calls.flat().join("\n");
    expect(printed).toMatch(/^usage: autoresearch-bot results OWNER\/REPO \[--api-url URL\] \[--out FILE\] \[--author LOGIN\]/);
    expect(printed).toMatch(/usage: autoresearch-bot doctor\n[\s\S]*Exit status: 0 when this setup can run an experiment/);
    expect(printed).toMatch(/results OWNER\/REPO {3}print the experiment ledger[\s\S]*doctor {15}check everything the bot needs/);
  } finally {
    log.mockRestore();
  }
  const err = vi.spyOn(console, "error").mockImplementation(() => undefined);
  try {
    expect(await main(["doctor", "--fix"])).toBe(2);
    expect(await main(["frobnicate"])).toBe(2);
  } finally {
    err.mockRestore();
  }
});

it("`npm run results -- --help` prints the usage and exits 0", async () => {
  const { code, out } = await run("npm", ["run", "--silent", "results", "--", "--help"], { cwd: ROOT, env: process.env });
  expect(code).toBe(0);
  expect(out.trimStart()).toMatch(/^usage: autoresearch-bot results OWNER\/REPO/);
}, 60_000);

it("doctor reads .env as npm start does, prints one line per check and exits 1 on a failure", async () => {
  const cwd = tempDir();
  // .env wins over the environment, as with Probot.
  writeFileSync(path.join(cwd, ".env"), "AUTORESEARCH_RESYNC_SECONDS=abc\nWEBHOOK_SECRET=from-dotenv\n");
  const { code, out } = await run(process.execPath, ["--import", TSX, path.join(ROOT, "src/bin.ts"), "doctor"], {
    cwd,
    env: bareEnv({ PATH: tempDir(), HOME: cwd, AUTORESEARCH_RESYNC_SECONDS: "60" }),
  });
  expect(code).toBe(1);
  expect(out).toContain(`autoresearch-bot doctor: local runner, with ${path.join(cwd, ".env")}`);
  expect(out).toMatch(/^FAIL {2}settings +AUTORESEARCH_RESYNC_SECONDS is "abc": it must be a whole number of seconds from 10 to 86400, a day \(for example AUTORESEARCH_RESYNC_SECONDS=300\)$/m);
  expect(out).toMatch(/^warn {2}git +git was not found on PATH: repositories given as a local checkout/m);
  expect(out).toMatch(/^FAIL {2}harness +python3 was not found on PATH/m);
  expect(out).toMatch(/^FAIL {2}sandbox +bwrap \(bubblewrap\) was not found on PATH\n +fix: install bubblewrap/m);
  expect(out).toMatch(/^FAIL {2}app +APP_ID and PRIVATE_KEY are not set/m);
  expect(out).toMatch(/^ok {4}webhook secret +WEBHOOK_SECRET is set/m);
  expect(out).toMatch(/FAIL.*: this setup cannot run an experiment yet\.\n$/);
}, 60_000);

it("npm start refuses to start on a fatal problem, one FATAL line each, and exits 1", async () => {
  const key = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  const cwd = tempDir();
  const { code, out } = await run(
    process.execPath,
    ["--import", TSX, path.join(ROOT, "node_modules/probot/bin/probot.js"), "run", path.join(ROOT, "src/index.ts")],
    {
      cwd,
      env: bareEnv({
        PATH: tempDir(), // no python3, no bwrap
        HOME: cwd,
        NODE_ENV: "test",
        HOST: "127.0.0.1",
        APP_ID: "123",
        PRIVATE_KEY: key,
        WEBHOOK_SECRET: "secret",
        GITHUB_API_URL: `http://127.0.0.1:${await closedPort()}`,
        // Bad settings: all named in one line, the key by its length only. A blank one is unset.
        AUTORESEARCH_RESYNC_SECONDS: "abc",
        AUTORESEARCH_SLOTS: "0",
        OPENAI_API_KEY: "sk-do-not-print me",
        OPENAI_BASE_URL: `http://127.0.0.1:${await closedPort()}/v1`,
        AUTORESEARCH_WRITES_PER_HOUR: "",
      }),
    },
  );
  expect(code).toBe(1);
  const fatal = out.split("\n").filter((l) => l.includes("FATAL"));
  expect(fatal).toEqual(expect.arrayContaining([
    expect.stringMatching(
      /FATAL.*settings: AUTORESEARCH_SLOTS is "0": it must be a whole number of runs from 1 to 1000 \(for example AUTORESEARCH_SLOTS=4\); AUTORESEARCH_RESYNC_SECONDS is "abc": .*; OPENAI_API_KEY is <secret, 18 characters>: .*\. Fix: correct or unset these variables/,
    ),
    expect.stringMatching(/FATAL.*harness: python3 was not found on PATH.*Fix: install Python/),
    expect.stringMatching(/FATAL.*sandbox: bwrap \(bubblewrap\) was not found on PATH\. Fix: install bubblewrap/),
  ]));
  // Credentials are not fatal at start: GitHub out of reach is a warning.
  expect(out).not.toMatch(/FATAL.*github app/);
  expect(out).toMatch(/WARN.*github app: could not verify the key/);
  expect(out).toMatch(/not starting: \d+ fatal problems above \(npm run doctor checks again\)/);
  // It never listened: a server that starts logs "Listening on http://…" (test/start.test.ts reads it).
  expect(out).not.toMatch(/Listening on/);
  expect(fatal.filter((l) => l.includes("settings:"))).toHaveLength(1);
  expect(out).not.toContain("sk-do-not-print");
}, 60_000);

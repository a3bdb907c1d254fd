// `npm start` with no credentials: Probot serves its registration page built from app.yml,
// offline, and nothing crashes.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";
import { freePort } from "./support/bot.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

it("serves the GitHub App registration page from app.yml when no credentials are set", async () => {
  const port = await freePort();
  const env: Record<string, string | undefined> = { ...process.env, PORT: String(port), HOST: "127.0.0.1", NODE_ENV: "test" };
  for (const k of ["APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "WEBHOOK_PROXY_URL"]) delete env[k];
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "node_modules/probot/bin/probot.js"), "run", "./src/index.ts"],
    { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  try {
    let page = "";
    for (let i = 0; i < 100 && !page; i++) {
      await new Promise((r) => setTimeout(r, 200));
      if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${output}`);
      page = await fetch(`http://127.0.0.1:${port}/probot`).then((r) => (r.ok ? r.text() : ""), () => "");
    }
    expect(page).toContain("Register GitHub App");
    // The manifest posted to GitHub carries exactly the permissions and events of app.yml.
    expect(page).toContain('"default_permissions":{"contents":"write","pull_requests":"write","checks":"write","issues":"write","metadata":"read"}');
    expect(page).toContain('"default_events":["push","pull_request","check_run","issue_comment","pull_request_review_comment"]');
    expect(child.exitCode).toBeNull();
  } finally {
    child.kill("SIGTERM");
  }
}, 60_000);

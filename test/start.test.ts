// `npm start` with no credentials: Probot serves its registration page built from app.yml,
// offline, and nothing crashes. And the webhook URL: what that page registers, against where the
// bot receives webhooks and what the README tells people to set.
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable } from "node:stream";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { Probot, Server } from "probot";
import { expect, it } from "vitest";
import { ANY_PORT } from "../twins/bot.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Step 1 of "Installing the app on a real repository" in the README. */
function registerStep(): string {
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const step = /^1\. \*\*Register the app\.\*\*[\s\S]*?(?=^2\. )/m.exec(readme)?.[0];
  if (!step) throw new Error('README.md: no step "1. **Register the app.**"');
  return step;
}

/** The path of the Webhook URL the README tells people to set (`https://<your host>/…`). */
function webhookPathInReadme(): string {
  const url = /`https:\/\/<your host>(\/[^`\s]*)`/.exec(registerStep())?.[1];
  if (!url) throw new Error("README.md step 1 names no `https://<your host>/…` webhook URL");
  return url;
}

/** The port a Probot server says it listens on, from its log ("Listening on http://host:port"). */
function listeningPort(output: string): number | null {
  const m = /Listening on http:\/\/[^\s:]+:(\d+)/.exec(output);
  return m ? Number(m[1]) : null;
}

/**
 * A `probot run` child listening on a free port. Probot's PORT cannot be 0 (it reads
 * `Number(PORT) || 3000`), so a free port is picked first; if another process takes it before
 * the child binds it, the child says so and is started again on another.
 */
async function listeningChild(start: (port: number) => ChildProcessByStdio<null, Readable, Readable>): Promise<{ child: ChildProcessByStdio<null, Readable, Readable>; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const free = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const child = start(free);
    let output = "";
    const port = await new Promise<number | null>((resolve, reject) => {
      const seen = (d: Buffer) => {
        output += d.toString();
        const port = listeningPort(output);
        if (port) resolve(port);
      };
      child.stdout.on("data", seen);
      child.stderr.on("data", seen);
      child.once("exit", (code) => (/already in use/.test(output) && attempt < 5 ? resolve(null) : reject(new Error(`npm start exited with ${code}:\n${output}`))));
    });
    if (port !== null) return { child, port };
  }
}

it("serves the GitHub App registration page from app.yml when no credentials are set", async () => {
  // NO_SMEE_SETUP: started through npx, Probot's setup would fetch smee-client and open a smee.io
  // channel (network, and it writes .env into this folder); `npm start` never does.
  const env: Record<string, string | undefined> = { ...process.env, HOST: "127.0.0.1", NODE_ENV: "test", NO_SMEE_SETUP: "true" };
  for (const k of ["APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "WEBHOOK_PROXY_URL", "WEBHOOK_PATH"]) delete env[k];
  const { child, port } = await listeningChild((p) =>
    spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "node_modules/probot/bin/probot.js"), "run", "./src/index.ts"], {
      cwd: ROOT,
      env: { ...env, PORT: String(p) },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  try {
    const page = await fetch(`http://127.0.0.1:${port}/probot`).then((r) => r.text());
    expect(page).toContain("Register GitHub App");
    // The manifest posted to GitHub carries exactly the permissions and events of app.yml.
    expect(page).toContain('"default_permissions":{"contents":"write","pull_requests":"write","checks":"write","issues":"write","metadata":"read"}');
    expect(page).toContain('"default_events":["push","pull_request","check_run","issue_comment","pull_request_review_comment"]');

    // The webhook URL it registers is the page's own address with the path "/", not the path the
    // bot receives webhooks at (next test), and app.yml cannot fix it: it does not know the host.
    // The README's first install step says so and what to set instead; if Probot ever registers
    // another URL, this fails, and that step must change with it.
    const manifestJson = /id="manifest" value='([^']*)'/.exec(page)?.[1];
    expect(manifestJson, "the page posts a manifest").toBeDefined();
    const manifest = JSON.parse(manifestJson!) as { hook_attributes?: { url?: string } };
    expect(manifest.hook_attributes).toEqual({ url: `http://127.0.0.1:${port}/` });
    const registeredPath = new URL(manifest.hook_attributes!.url!).pathname;
    expect(registeredPath).not.toBe(webhookPathInReadme());
    expect(registerStep()).toContain(`with the path \`${registeredPath}\``);
    expect(child.exitCode).toBeNull();
  } finally {
    child.kill("SIGTERM");
  }
}, 60_000);

it("receives webhooks at the path of the Webhook URL the README says to set, and not at the one the setup page registers", async () => {
  // The server `probot run` starts (src/index.ts's app adds no route of its own), without
  // WEBHOOK_PATH, as `npm start` runs it by default.
  const secret = "docs-test-secret";
  const server = new Server({
    Probot: Probot.defaults({ appId: 1, privateKey: "not used: no request to GitHub is made", secret }),
    port: ANY_PORT, // the system picks a free port as the server binds it
    host: "127.0.0.1",
    log: pino({ level: "silent" }),
  });
  await server.load(() => {});
  await server.start();
  const port = server.port;
  try {
    const body = JSON.stringify({ zen: "Keep it logically awesome.", hook_id: 1 });
    const deliver = (at: string) =>
      fetch(`http://127.0.0.1:${port}${at}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "ping",
          "x-github-delivery": "00000000-0000-0000-0000-000000000001",
          "x-hub-signature-256": `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`,
        },
        body,
      });
    expect((await deliver(webhookPathInReadme())).status).toBe(200);
    expect((await deliver("/")).status).toBe(404);
  } finally {
    await server.stop();
  }
});

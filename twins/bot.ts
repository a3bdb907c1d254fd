// Starts the bot's real HTTP server (Probot's Server with the app loaded) against a
// GitHub API base URL — the GitHub twin in tests and in the demo.
import { generateKeyPairSync } from "node:crypto";
import Bottleneck from "bottleneck";
import { pino } from "pino";
import { Probot, ProbotOctokit, Server } from "probot";
import { createApp, type AppOptions } from "../src/app.js";
import { clearGitHubCaches } from "../src/github/octokit.js";
import type { Controller } from "../src/controller.js";

export interface BotHandle {
  webhookUrl: string;
  controller: Controller;
  stop(): Promise<void>;
}

/** The throttling plugin's write groups with its fixed spacing shortened (writes stay one at a time). */
const FAST_PACING = {
  write: new Bottleneck.Group({ maxConcurrent: 1, minTime: 5 }),
  notifications: new Bottleneck.Group({ maxConcurrent: 1, minTime: 5 }),
};

/** A setting a bot process started by a test or a script must be given. */
export function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

/**
 * The app settings of a bot process started by a test or a script: BOT_BASE_URL, BOT_APP_ID,
 * BOT_PRIVATE_KEY, BOT_SECRET. The process listens on a port the system picks and says which
 * (its webhook URL) on its first line of output.
 */
export function appFromEnv(): { baseUrl: string; appId: number; privateKey: string; secret: string } {
  return { baseUrl: need("BOT_BASE_URL"), appId: Number(need("BOT_APP_ID")), privateKey: need("BOT_PRIVATE_KEY"), secret: need("BOT_SECRET") };
}

/**
 * Port 0 for a Probot Server: the system picks a free port as it binds. Probot reads a port as
 * `options.port || 3000`, so the number 0 would mean 3000; the string "0" passes that, and Node
 * binds it as 0. The bound port is `server.port` once it listens.
 */
export const ANY_PORT = "0" as unknown as number;

export async function startBot(
  o: AppOptions & {
    baseUrl: string;
    appId: number;
    privateKey: string;
    secret: string;
    logLevel?: "info" | "warn" | "error" | "silent" | "debug";
    /** The throttling plugin's spacing of writes: shortened for tests (default), or GitHub's. */
    pacing?: "fast" | "github";
    /** false: Probot's throttling off (a benchmark of the bot's own cost). */
    throttle?: boolean;
    /** Receives every log line (JSON) at info level and above, instead of stdout. */
    logSink?: (line: string) => void;
  },
): Promise<BotHandle> {
  // A bot process starts with nothing read from GitHub (a twin may reuse an earlier one's port).
  clearGitHubCaches();
  const level = o.logLevel ?? process.env.BOT_LOG_LEVEL;
  const log = o.logSink && !level ? pino({ level: "info" }, { write: o.logSink }) : pino({ level: level ?? "silent" });
  const server = new Server({
    Probot: Probot.defaults({
      // Probot's throttling is on, as in production: refused requests are retried after the
      // retry-after the twin names (in real seconds). Only its fixed spacing of writes (1 s, and
      // 3 s for those that notify people) is shortened, so that a night in a test takes seconds;
      // with `pacing: "github"` it is GitHub's.
      Octokit: ProbotOctokit.defaults((opts: Record<string, unknown>) => ({
        ...opts,
        throttle: { ...(opts.throttle as object), enabled: o.throttle ?? true, ...(o.pacing === "github" ? {} : FAST_PACING) },
      })),
      appId: o.appId,
      privateKey: o.privateKey,
      secret: o.secret,
      baseUrl: o.baseUrl,
      log,
    }),
    // The system picks a free port as the server binds it: a port picked beforehand and bound
    // later could be taken in between by another process of a parallel test run.
    port: ANY_PORT,
    host: "127.0.0.1",
    log,
  });
  let controller: Controller | null = null;
  await server.load(createApp({ ...o, onController: (c) => (controller = c) }));
  await server.start();
  if (!controller) throw new Error("the app did not create its controller");
  const c: Controller = controller;
  return {
    webhookUrl: `http://127.0.0.1:${server.port}/api/github/webhooks`,
    controller: c,
    async stop() {
      await c.stop();
      await server.stop();
    },
  };
}

/** A fresh RSA key for a GitHub App the twin knows (the twin checks the JWTs it signs). */
export function newAppKey(): string {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return privateKey.export({ type: "pkcs1", format: "pem" }).toString();
}

// Entry point for `probot run` (npm start): the app with the runner this process hosts.
import type { Probot } from "probot";
import { createApp } from "./app.js";
import { runnerFromEnv } from "./runner/select.js";

export default (app: Probot) => {
  // Created only when the app loads: with no credentials Probot serves its registration page
  // instead and nothing should start training.
  // AUTORESEARCH_RUNNER=local (default) or kubernetes; see src/runner/select.ts.
  let runner: ReturnType<typeof runnerFromEnv>;
  try {
    runner = runnerFromEnv(process.env, {
      logger: { info: (m) => app.log.info(m), warn: (m) => app.log.warn(m), error: (m) => app.log.error(m) },
    });
  } catch (err) {
    // A runner that cannot run safely (no sandbox) or a bad setting: say why and stop, rather
    // than serve webhooks that would fail one by one.
    app.log.fatal((err as Error).message);
    process.exit(1);
  }
  const resync = Number(process.env.AUTORESEARCH_RESYNC_SECONDS ?? 300);
  return createApp({ runner, resyncMs: resync * 1000 })(app);
};

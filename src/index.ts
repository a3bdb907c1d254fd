// Entry point for `probot run` (npm start): the app with the runner this process hosts.
import type { Probot } from "probot";
import { createApp } from "./app.js";
import { runnerFromEnv } from "./runner/select.js";

export default (app: Probot) => {
  // Created only when the app loads: with no credentials Probot serves its registration page
  // instead and nothing should start training.
  // AUTORESEARCH_RUNNER=local (default) or kubernetes; see src/runner/select.ts.
  const runner = runnerFromEnv(process.env, {
    logger: { info: (m) => app.log.info(m), warn: (m) => app.log.warn(m), error: (m) => app.log.error(m) },
  });
  const resync = Number(process.env.AUTORESEARCH_RESYNC_SECONDS ?? 300);
  return createApp({ runner, resyncMs: resync * 1000 })(app);
};

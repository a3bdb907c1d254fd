// Entry point for `probot run` (npm start): the app with the runner this process hosts.
import type { Probot } from "probot";
import { createApp } from "./app.js";
import { LocalRunner } from "./runner/local.js";

export default (app: Probot) => {
  // Created only when the app loads: with no credentials Probot serves its registration page
  // instead and nothing should start training.
  const runner = new LocalRunner({
    runsDir: process.env.AUTORESEARCH_RUNS_DIR ?? ".runs",
    slots: Number(process.env.AUTORESEARCH_SLOTS ?? 1),
    cacheDir: process.env.AUTORESEARCH_CACHE_DIR,
  });
  const resync = Number(process.env.AUTORESEARCH_RESYNC_SECONDS ?? 300);
  return createApp({ runner, resyncMs: resync * 1000 })(app);
};

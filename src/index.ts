// Entry point for `probot run` (npm start): the app with the runner this process hosts.
import type { Probot } from "probot";
import { createApp } from "./app.js";
import { defaultDoctorDeps, describeResult, fatalAtStart, runDoctor } from "./doctor.js";
import type { LeaderElector } from "./leader/elector.js";
import { leaderFor } from "./leader/select.js";
import { runnerFor } from "./runner/select.js";
import { readSettings } from "./settings.js";

export default async (app: Probot) => {
  // Probot calls this only with credentials: without them it serves its registration page
  // instead, and none of this runs (nothing checks or trains before the app exists).
  //
  // The checks of `npm run doctor` first. A failure of this machine's setup (runner, sandbox,
  // Python, settings) is fatal: one FATAL line each and exit 1, rather than a bot that accepts
  // webhooks and fails every experiment, or logs the same error on every pass. Problems with the
  // credentials or the LLM endpoint are logged as errors but do not stop it: GitHub or the
  // endpoint may be unreachable for a moment, and the registration flow must stay usable.
  const results = await runDoctor(defaultDoctorDeps(process.env));
  const fatal = fatalAtStart(results);
  for (const r of results) {
    if (r.level === "ok") continue;
    if (fatal.includes(r)) app.log.fatal(describeResult(r));
    else if (r.level === "fail") app.log.error(describeResult(r));
    else app.log.warn(describeResult(r));
  }
  if (fatal.length > 0) {
    app.log.error(`not starting: ${fatal.length} fatal problem${fatal.length === 1 ? "" : "s"} above (npm run doctor checks again)`);
    process.exit(1);
  }
  app.log.info(`start-up checks: ${results.filter((r) => r.level === "ok").length} of ${results.length} ok`);

  // The settings, parsed once: the checks above parsed them with the same schema (their
  // "settings" line is the one message naming every bad variable), so this cannot fail here;
  // if it ever does, it stops the bot the same way.
  const read = readSettings(process.env);
  if (!read.ok) {
    app.log.fatal(`settings: ${read.error.message}`);
    process.exit(1);
  }
  const settings = read.settings;
  // AUTORESEARCH_RUNNER=local (default) or kubernetes; see src/runner/select.ts. Of several bot
  // processes only the leader runs passes and starts runs (AUTORESEARCH_LEADER; src/leader/).
  let runner: ReturnType<typeof runnerFor>;
  let leader: LeaderElector;
  try {
    leader = leaderFor(settings, { log: { info: (m) => app.log.info(m), warn: (m) => app.log.warn(m) } });
    runner = runnerFor(settings.runner, {
      logger: { info: (m) => app.log.info(m), warn: (m) => app.log.warn(m), error: (m) => app.log.error(m) },
      active: () => leader.isLeader(),
    });
  } catch (err) {
    // A runner that cannot run safely (no sandbox): say why and stop, rather than serve
    // webhooks that would fail one by one.
    app.log.fatal((err as Error).message);
    process.exit(1);
  }
  // A leader that stops gives the lock up, so that another bot takes over at once.
  process.once("SIGTERM", () => void leader.stop().finally(() => process.exit(0)));
  return createApp({ runner, settings, leader })(app);
};

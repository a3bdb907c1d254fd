// GitHub's rate limits in a whole night: the twin enforces them, the bot runs with Probot's
// throttling on, and a storm of 429s with retry-after is injected mid-night. The bot must hold
// every request of the installation until the time GitHub named, and the night must end as if
// nothing happened: no lost record, no duplicate pull request.
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { singleRun } from "../support/fakes.js";
import { OWNER, REPO, ROOT, proposal, readTree, settled, startNight, waitFor, type Night } from "../support/night.js";

let night: Night | null = null;
afterEach(async () => {
  await night?.close();
  night = null;
});

it("a storm of secondary-limit answers: nothing is sent inside the retry-after window, and nothing is lost or duplicated", async () => {
  const files = await readTree(path.join(ROOT, "test/fixtures/research-repo"));
  files[".github/autoresearch.yml"] = singleRun("night:\n  max_experiments: 3\n");
  night = await startNight({ files });
  const n = night;
  n.openai.script(
    proposal("Raise the learning rate", "Faster.", "LEARNING_RATE = 0.0001", "LEARNING_RATE = 0.001"),
    proposal("Deeper", "More capacity.", "DEPTH = 4", "DEPTH = 6"),
  );
  const installation = await n.install();
  const identity = `installation:${installation}`;
  // The storm starts once the loop is busy: the baseline's pull request is open and its run has
  // fetched the commit. (A run's download is the harness's own request: one started before the
  // storm cannot know of it; one started after waits for the gate, src/github/octokit.ts.)
  await waitFor("the baseline's pull request", () => n.experiments().length >= 1, 60_000);
  await waitFor("the baseline's download", () => n.twin.requests.some((r) => r.route.includes("/tarball/") && r.status < 400), 60_000);
  n.twin.limiter!.storm({ durationMs: 2500, status: 429, identity });

  for (const k of [1, 2, 3]) await waitFor(`experiment ${k}`, () => settled(n, k), 120_000);
  await n.bot!.controller.idle();

  const refused = n.twin.limiter!.events.filter((e) => e.identity === identity);
  expect(refused.length, "the storm was met").toBeGreaterThan(0);
  const first = refused[0]!;
  expect(first).toMatchObject({ kind: "storm", status: 429 });
  expect(first.retryAfter).toBeGreaterThanOrEqual(1); // the seconds left of the storm
  // Requests already on their way when the first refusal was answered may still arrive; after
  // that, nothing of the installation until retry-after has passed.
  const inside = n.twin.requests.filter((r) => r.installationId === installation && r.atMs > first.at + 250 && r.atMs < first.at + first.retryAfter! * 1000 - 50);
  expect(inside.map((r) => `+${r.atMs - first.at} ms ${r.route} ${r.status}`), JSON.stringify(refused.slice(0, 5))).toEqual([]);
  expect(n.logs.some((l) => /secondary rate limit \(HTTP 429\) for installation \d+: no request of it goes out for \d s/.test(l))).toBe(true);

  // The night ended as usual: three experiments, each with one pull request and one record.
  const experiments = n.experiments();
  expect(experiments.map((e) => e.record.n).sort()).toEqual([1, 2, 3]);
  expect(n.twin.pulls(OWNER, REPO)).toHaveLength(3);
  for (const e of experiments) expect(e.record.measurements.length).toBeGreaterThan(0);
}, 180_000);

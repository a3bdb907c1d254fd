// The controller's cap on passes running at once: a resync of an installation with many
// repositories must not open a pass on every one of them together (each is a burst of GitHub
// requests), and no repository is left out.
import { describe, expect, it } from "vitest";
import { Controller } from "../src/controller.js";
import { CONFIG_PATH } from "../src/config.js";
import { quietLog } from "../src/log.js";
import { FakeGitHub, FakeRunner, ScriptedProposer, singleRun } from "./support/fakes.js";
import type { GitHubPort, RepoRef } from "../src/types.js";

const FILES = {
  "program.md": "# Tonight\n",
  "train.py": "LR = 0.04\n",
  "prepare.py": "print('prepared')\n",
  [CONFIG_PATH]: singleRun(""),
};

describe("passes at once", () => {
  it("at most maxConcurrentPasses run together; every repository gets its pass", async () => {
    const repos: RepoRef[] = Array.from({ length: 7 }, (_, i) => ({ owner: "acme", repo: `r${i}` }));
    let running = 0;
    let peak = 0;
    const started: string[] = [];
    const release: (() => void)[] = [];
    // A pass begins with the default branch: hold it there until the test lets it go.
    const held = (repo: RepoRef): GitHubPort => {
      const gh = new FakeGitHub({ files: FILES });
      return new Proxy(gh, {
        get(target, k) {
          if (k === "getDefaultBranch") {
            return async () => {
              running++;
              peak = Math.max(peak, running);
              started.push(repo.repo);
              await new Promise<void>((r) => release.push(r));
              running--;
              return target.getDefaultBranch();
            };
          }
          const v = Reflect.get(target, k, target) as unknown;
          return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    };
    const controller = new Controller({
      runner: new FakeRunner(1),
      github: async (_id, repo) => held(repo),
      listRepos: async () => repos.map((repo) => ({ installationId: 1, repo })),
      proposerFor: () => new ScriptedProposer(),
      env: {},
      log: quietLog,
      maxConcurrentPasses: 3,
    });
    for (const repo of repos) controller.trigger(1, repo);
    const settled = async () => {
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    };
    await settled();
    expect(started).toHaveLength(3);
    while (release.length) {
      release.shift()!();
      await settled();
    }
    await controller.stop();
    expect(peak).toBe(3);
    expect(new Set(started)).toEqual(new Set(repos.map((r) => r.repo)));
  });
});

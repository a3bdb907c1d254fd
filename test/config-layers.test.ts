// `.github/autoresearch.yml` as Probot reads an app's configuration, through the Octokit port and
// Probot's config plugin against the GitHub twin: the organisation's `.github` repository holds
// defaults, a repository's file may `_extends` them, and the repository's own file is read at
// the commit the pass reads.
import { generateKeyPairSync } from "node:crypto";
import { ProbotOctokit } from "probot";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONFIG_PATH, parseConfig } from "../src/config.js";
import { clearGitHubCaches, OctokitGitHub } from "../src/github/octokit.js";
import { GitHubTwin } from "../twins/github/index.js";

const ORG = "acme";

/** What the organisation sets for every repository: the proposer, the night, the noise runs. */
const ORG_DEFAULTS = "proposer:\n  kind: mutate\n  temperature: 0.3\nnight:\n  window: \"22:00-07:00\"\n  timezone: Europe/Berlin\nnoise:\n  baseline_runs: 5\n";

describe("the repository config with the organisation's defaults", () => {
  const twin = new GitHubTwin({ limits: false, deliveries: false });
  let url = "";
  let token = "";

  const port = (repo: string) =>
    new OctokitGitHub(new ProbotOctokit({ auth: { token }, baseUrl: url, throttle: { enabled: false } }), { owner: ORG, repo });

  beforeAll(async () => {
    ({ url } = await twin.start());
    twin.user(ORG, { type: "Organization" });
    twin.createApp({
      appId: 78,
      privateKey: generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: { type: "pkcs1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey,
      webhookSecret: "s",
      webhookUrl: "http://127.0.0.1:9/",
      slug: "autoresearch",
    });
    await twin.createRepo(ORG, ".github", { [CONFIG_PATH]: ORG_DEFAULTS, "shared/strict.yml": "slots: 1\nproposer:\n  max_attempts: 5\n" });
    // Extends the organisation's defaults, and sets its own slots and proposer model.
    await twin.createRepo(ORG, "extends", { "train.py": "LR = 1\n", [CONFIG_PATH]: "_extends: .github\nslots: 2\nproposer:\n  model: gpt-4o\n" });
    // No file of its own: the organisation's is its config.
    await twin.createRepo(ORG, "plain", { "train.py": "LR = 1\n" });
    // A file of its own without _extends: only its own counts, as in every Probot app.
    await twin.createRepo(ORG, "own", { "train.py": "LR = 1\n", [CONFIG_PATH]: "slots: 3\n" });
    // _extends naming another file of another repository.
    await twin.createRepo(ORG, "strict", { "train.py": "LR = 1\n", [CONFIG_PATH]: "_extends: .github:shared/strict.yml\n" });
    await twin.createRepo(ORG, "broken", { "train.py": "LR = 1\n", [CONFIG_PATH]: "slots: 2\nproposer:\n    kind: mutate\n   model: x\n" });
    const installationId = await twin.installApp(ORG, "all");
    token = await twin.installationToken(installationId);
    clearGitHubCaches();
  }, 60_000);

  afterAll(async () => {
    await twin.stop();
  });

  it("merges the organisation's defaults under a repository file that says _extends: .github, section by section", async () => {
    const gh = port("extends");
    const sha = await gh.getBranchSha("main");
    const read = await gh.readConfig(sha);
    expect(read?.files).toEqual([`${ORG}/.github:${CONFIG_PATH}`, `${ORG}/extends:${CONFIG_PATH}`]);
    const parsed = parseConfig(read!.text);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.config.slots).toBe(2);
    // The organisation's proposer.kind and temperature, the repository's model.
    expect(parsed.config.proposer).toMatchObject({ kind: "mutate", temperature: 0.3, model: "gpt-4o" });
    expect(parsed.config.night).toMatchObject({ window: "22:00-07:00", timezone: "Europe/Berlin" });
    expect(parsed.config.noise.baselineRuns).toBe(5);
  });

  it("uses the organisation's file when the repository has none, and only the repository's own file when it does not extend", async () => {
    const plain = port("plain");
    const read = await plain.readConfig(await plain.getBranchSha("main"));
    expect(read?.files).toEqual([`${ORG}/.github:${CONFIG_PATH}`]);
    const parsed = parseConfig(read!.text);
    expect(parsed.ok && parsed.config.proposer.temperature).toBe(0.3);

    const own = port("own");
    const ownRead = await own.readConfig(await own.getBranchSha("main"));
    expect(ownRead?.files).toEqual([`${ORG}/own:${CONFIG_PATH}`]);
    const ownParsed = parseConfig(ownRead!.text);
    expect(ownParsed.ok && [ownParsed.config.slots, ownParsed.config.proposer.temperature]).toEqual([3, 0.7]);
  });

  it("follows _extends to another file of another repository", async () => {
    const gh = port("strict");
    const read = await gh.readConfig(await gh.getBranchSha("main"));
    expect(read?.files).toEqual([`${ORG}/.github:shared/strict.yml`, `${ORG}/strict:${CONFIG_PATH}`]);
    const parsed = parseConfig(read!.text);
    expect(parsed.ok && parsed.config.proposer.maxAttempts).toBe(5);
  });

  it("reads the repository's own file at the commit the pass read, not at the branch's newer head", async () => {
    const gh = port("own");
    const before = await gh.getBranchSha("main");
    await twin.pushCommit(ORG, "own", "main", { [CONFIG_PATH]: "slots: 4\n" }, "More slots");
    const after = await gh.getBranchSha("main");
    expect(after).not.toBe(before);
    clearGitHubCaches();
    expect((await gh.readConfig(before))?.text).toMatch(/^slots: 3$/m);
    expect((await gh.readConfig(after))?.text).toMatch(/^slots: 4$/m);
  });

  it("hands a repository file that is not valid YAML over as it is, so that its line and column are named", async () => {
    const gh = port("broken");
    const read = await gh.readConfig(await gh.getBranchSha("main"));
    expect(read?.files).toEqual([`${ORG}/broken:${CONFIG_PATH}`]);
    const parsed = parseConfig(read!.text);
    expect(parsed.ok ? [] : parsed.errors).toEqual([{ path: "line 4, column 4", message: "YAML syntax error: bad indentation of a mapping entry" }]);
  });

  it("is null when neither the repository nor the organisation has a file", async () => {
    const other = new GitHubTwin({ limits: false, deliveries: false });
    const { url: otherUrl } = await other.start();
    try {
      await other.createRepo("solo", "research", { "train.py": "LR = 1\n" });
      other.createApp({ appId: 79, privateKey: generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: { type: "pkcs1", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } }).privateKey, webhookSecret: "s", webhookUrl: "http://127.0.0.1:9/", slug: "autoresearch" });
      const t = await other.installationToken(await other.installApp("solo", "all"));
      clearGitHubCaches();
      const gh = new OctokitGitHub(new ProbotOctokit({ auth: { token: t }, baseUrl: otherUrl, throttle: { enabled: false } }), { owner: "solo", repo: "research" });
      expect(await gh.readConfig(await gh.getBranchSha("main"))).toBeNull();
    } finally {
      await other.stop();
    }
  });
});

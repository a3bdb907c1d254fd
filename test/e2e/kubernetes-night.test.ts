// Nights through the GitHub twin and the Kubernetes twin: the bot's real HTTP server, the
// Kubernetes runner with the real @kubernetes/client-node, Jobs rendered from k8s/job.yaml and
// validated against the Kubernetes schemas, the twin's kubelet running the real harness on the
// stub research repository (about 2 s per experiment).
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { singleRun } from "../support/fakes.js";
import { jobNameFor, secretNameFor } from "../../src/runner/kubernetes.js";
import { JOB_TEMPLATE, NAMESPACE } from "../../twins/kube.js";
import { OWNER, REPO, ROOT, nightStartingNow, proposal, readTree, settled, startNight, waitFor, type Night } from "../support/night.js";

let night: Night | null = null;
afterEach(async () => {
  await night?.close();
  night = null;
});

const LR_UP = proposal("Raise LEARNING_RATE to 1e-3", "Ten times higher trains further.", "LEARNING_RATE = 0.0001", "LEARNING_RATE = 0.001");
const NOISE = proposal("Two more warmup steps", "A slightly longer warmup.", "WARMUP_STEPS = 10", "WARMUP_STEPS = 12");
const CRASH = proposal("Assert the depth", "Harmless check.", "DEPTH = 4\n", 'DEPTH = 4\nraise RuntimeError("depth check failed")\n');

const runIdOf = (n: number, attempt = 1) => `${OWNER}-${REPO}-${n}-${attempt}`.toLowerCase();
type Job = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
/** The training Jobs, and the fetch Jobs, among Jobs the twin saw. */
const training = (jobs: Job[]) => jobs.filter((j) => j.metadata.labels["autoresearch.dev/role"] === "trainer");
const fetching = (jobs: Job[]) => jobs.filter((j) => j.metadata.labels["autoresearch.dev/role"] === "fetch");

async function repoFiles(config: string, runSeconds?: number): Promise<Record<string, string>> {
  const files = await readTree(path.join(ROOT, "test/fixtures/research-repo"));
  files[".github/autoresearch.yml"] = singleRun(config);
  if (runSeconds) files["train.py"] = files["train.py"]!.replace("RUN_SECONDS = 2.0", `RUN_SECONDS = ${runSeconds.toFixed(1)}`);
  return files;
}

function checksOf(n: Night, n_: number) {
  const e = n.experiments().find((x) => x.record.n === n_)!;
  return n.twin.checkRuns(OWNER, REPO, { headSha: e.record.headSha, name: "val_bpb" });
}

describe("a night through the GitHub and Kubernetes twins", () => {
  it("runs three experiments at once as Jobs, merges the improvement, and never lets a token reach the trainer", async () => {
    night = await startNight({
      runner: "kubernetes",
      startBot: false,
      files: await repoFiles("runner: kubernetes\nslots: 3\nnight:\n  max_experiments: 4\n", 5),
    });
    const n = night;
    n.openai.script(LR_UP, NOISE, CRASH);
    await n.startBot();
    await n.install();
    for (let i = 1; i <= 4; i++) await waitFor(`experiment ${i} to finish`, () => settled(n, i), 120_000);
    await n.stopBot();
    await n.twin.waitForIdle();

    const kube = n.kube!.twin;
    // Three experiments from the same baseline trained side by side.
    expect(kube.maxActiveJobs).toBe(3);
    expect(kube.rejected).toEqual([]);
    expect(training(kube.created)).toHaveLength(4);
    expect(fetching(kube.created)).toHaveLength(4);
    const [baseline, up, noise, crash] = n.experiments();
    expect(baseline!.record.measurements[0]!.result.val_bpb).toBeCloseTo(1.105, 6);
    expect(up!.merged).toBe(true);
    expect(noise!.labels).toContain("autoresearch:discard");
    expect(crash!.labels).toContain("autoresearch:crash");
    expect(await n.twin.readFile(OWNER, REPO, "main", "train.py")).toContain("LEARNING_RATE = 0.001\n");
    for (const e of n.experiments()) expect(checksOf(n, e.record.n)).toHaveLength(1);

    // The token is only in the fetch Job's init container; the training Job has none and no network.
    for (const job of kube.created) {
      const pod = job.spec.template.spec;
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(job.metadata.labels["autoresearch.dev/repo"]).toBe("alice.research");
      for (const c of pod.containers) {
        expect(c.volumeMounts.map((m: { name: string }) => m.name)).not.toContain("source");
        expect(JSON.stringify(c.args)).not.toMatch(/token/);
      }
    }
    for (const job of training(kube.created)) expect(job.spec.template.spec.volumes.map((v: { name: string }) => v.name)).not.toContain("source");
    const trainers = kube.containerRuns.filter((r) => r.container === "trainer");
    expect(trainers.length).toBeGreaterThanOrEqual(4);
    expect(trainers.every((r) => !r.network)).toBe(true);
    expect(kube.containerRuns.filter((r) => r.container === "fetch").every((r) => r.network)).toBe(true);
    // The fetch token reads this one repository and can write nothing.
    expect(kube.createdSecrets).toHaveLength(4);
    const token = Buffer.from(kube.createdSecrets[0]!.data.token, "base64").toString();
    const call = (method: string, route: string, body?: unknown) =>
      fetch(`${n.apiUrl}${route}`, { method, headers: { authorization: `token ${token}`, "content-type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
    expect((await call("GET", `/repos/${OWNER}/${REPO}/contents/train.py`)).status).toBe(200);
    expect((await call("POST", `/repos/${OWNER}/${REPO}/labels`, { name: "x", color: "ffffff" })).status).toBe(403);
    // Recorded runs are cleaned up: no Job and no token Secret is left behind.
    expect(kube.jobList(NAMESPACE)).toEqual([]);
    expect(kube.secrets.size).toBe(0);
  }, 180_000);

  it("survives a restart with Jobs in flight: no duplicate Job, no lost result, each check run completed once", async () => {
    night = await startNight({
      runner: "kubernetes",
      startBot: false,
      files: await repoFiles("runner: kubernetes\nslots: 2\nnight:\n  max_experiments: 3\n", 6),
    });
    const n = night;
    n.openai.script(LR_UP, NOISE);
    await n.startBot();
    await n.install();
    // The baseline and experiment 2, which trains alongside it.
    await waitFor("two runs in flight", () => n.experiments().filter((e) => e.record.state === "queued").length === 2, 60_000);
    const trainingJobsOf12 = () => n.kube!.twin.jobList(NAMESPACE).filter((j) => [1, 2].map((i) => jobNameFor(runIdOf(i))).includes(j.metadata.name));
    await waitFor("their training Jobs to start", () => trainingJobsOf12().length === 2, 60_000);
    await n.stopBot();
    // The Jobs finish while the bot is down; a new bot (new runner, new client) finds their results.
    const done = (j: { status?: { conditions?: { type: string; status: string }[] } }) =>
      (j.status?.conditions ?? []).some((c) => c.type === "Complete" && c.status === "True");
    await waitFor("the Jobs to finish with the bot down", () => {
      const jobs = trainingJobsOf12();
      return jobs.length === 2 && jobs.every(done);
    }, 60_000);
    await n.startBot();
    for (let i = 1; i <= 3; i++) await waitFor(`experiment ${i} to finish`, () => settled(n, i), 120_000);
    await n.stopBot();
    await n.twin.waitForIdle();

    const kube = n.kube!.twin;
    expect(training(kube.created).map((j) => j.metadata.name).sort()).toEqual([1, 2, 3].map((i) => jobNameFor(runIdOf(i))).sort());
    expect(fetching(kube.created)).toHaveLength(3);
    for (const e of n.experiments()) {
      expect(e.record.measurements).toHaveLength(1);
      const checks = checksOf(n, e.record.n);
      expect(checks).toHaveLength(1);
      expect(checks[0]!.status).toBe("completed");
    }
    expect(n.experiments()[1]!.merged).toBe(true);
  }, 180_000);

  it("deadline exceeded: a timed_out check run; an evicted pod runs again and is not a failure", async () => {
    night = await startNight({
      runner: "kubernetes",
      startBot: false,
      files: await repoFiles("runner: kubernetes\nnight:\n  max_experiments: 2\n", 2),
      kubeRunner: {
        // The template's cap wins for experiment 2 only (it sleeps far longer than the cap).
        template: () => JOB_TEMPLATE.replace("activeDeadlineSeconds: 3600", "activeDeadlineSeconds: 8"),
      },
    });
    const n = night;
    n.openai.script(proposal("Train longer", "More steps.", "RUN_SECONDS = 2.0", "RUN_SECONDS = 30.0"));
    await n.startBot();
    const kube = n.kube!.twin;
    kube.inject((job) => job.metadata.name === jobNameFor(runIdOf(1)), { kind: "evict", afterMs: 700 });
    await n.install();
    await waitFor("experiment 2 to finish", () => settled(n, 2), 120_000);
    await n.stopBot();
    await n.twin.waitForIdle();

    const [baseline, slow] = n.experiments();
    // Eviction: the Job ran a second pod; the baseline was measured once, on its first attempt.
    expect(baseline!.record.attempt).toBe(1);
    expect(baseline!.record.measurements).toHaveLength(1);
    expect(baseline!.record.measurements[0]!.result.status).toBe("ok");
    expect(kube.created.filter((j) => j.metadata.name === jobNameFor(runIdOf(1)))).toHaveLength(1);
    // Deadline: the check run says timed_out and the PR is closed as a crash.
    const [check] = checksOf(n, 2);
    expect(check!.conclusion).toBe("timed_out");
    expect(`${check!.output.title} ${check!.output.summary} ${check!.output.text ?? ""}`).toMatch(/activeDeadlineSeconds/);
    expect(slow!.labels).toContain("autoresearch:crash");
  }, 180_000);

  it("OOMKilled is a crash with that reason; closing a PR cancels its Job", async () => {
    night = await startNight({
      runner: "kubernetes",
      startBot: false,
      files: await repoFiles("runner: kubernetes\nslots: 2\nnight:\n  max_experiments: 3\n", 2),
    });
    const n = night;
    n.openai.script(LR_UP, proposal("Train longer", "More steps.", "RUN_SECONDS = 2.0", "RUN_SECONDS = 60.0"));
    await n.startBot();
    const kube = n.kube!.twin;
    kube.inject((job) => job.metadata.name === jobNameFor(runIdOf(2)), { kind: "oom", afterMs: 300 });
    await n.install();
    await waitFor("experiment 2 to finish", () => settled(n, 2), 120_000);
    const [check] = checksOf(n, 2);
    expect(check!.conclusion).toBe("failure");
    expect(`${check!.output.title} ${check!.output.summary} ${check!.output.text ?? ""}`).toMatch(/OOMKilled/);
    expect(n.experiments()[1]!.labels).toContain("autoresearch:crash");

    // Experiment 3 trains for a minute; a person closes its PR.
    const three = await waitFor("experiment 3 to train", () => n.experiments().find((e) => e.record.n === 3 && e.record.state === "queued"), 60_000);
    const job = jobNameFor(runIdOf(3));
    await waitFor("its Job to exist", () => kube.jobs.has(`${NAMESPACE}/${job}`));
    await n.twin.setIssueState(OWNER, REPO, three.number, "closed", { user: OWNER });
    await waitFor("the Job to be deleted", () => !kube.jobs.has(`${NAMESPACE}/${job}`), 30_000);
    expect(kube.secrets.has(`${NAMESPACE}/${secretNameFor(runIdOf(3))}`)).toBe(false);
    await waitFor("the record to say so", () => n.experiments().find((e) => e.record.n === 3 && e.record.state === "discarded"), 30_000);
  }, 180_000);

  it("a malformed template or a config naming another runner pauses that repo with a clear error; others go on", async () => {
    night = await startNight({
      runner: "kubernetes",
      startBot: false,
      files: await repoFiles("runner: kubernetes\nnight:\n  max_experiments: 1\n"),
      kubeRunner: {
        template: (repo) => (repo.repo === "broken" ? JOB_TEMPLATE.replace("name: trainer", "name: main") : JOB_TEMPLATE),
      },
    });
    const n = night;
    await n.twin.createRepo(OWNER, "broken", await repoFiles("runner: kubernetes\n"));
    await n.twin.createRepo(OWNER, "local", await repoFiles("runner: local\n"));
    // Without `runner:` a repository uses the bot's runner.
    await n.twin.createRepo(OWNER, "plain", nightStartingNow(await repoFiles("night:\n  max_experiments: 1\n")));
    await n.startBot();
    n.installationId = await n.twin.installApp(OWNER, [REPO, "broken", "local", "plain"]);
    await waitFor("the baseline of the healthy repo", () => settled(n, 1), 60_000);
    await waitFor("the baseline of the repo without runner:", () => n.twin.pulls(OWNER, "plain").find((p) => p.state === "closed"), 60_000);

    const errorOf = async (repo: string) => {
      const head = (await n.twin.branchSha(OWNER, repo, "main"))!;
      return waitFor(`the error on ${repo}`, () => n.twin.checkRuns(OWNER, repo, { headSha: head, name: "autoresearch" })[0], 30_000);
    };
    const broken = await errorOf("broken");
    expect(broken.conclusion).toBe("failure");
    expect(broken.output.summary).toMatch(/container named "trainer"/);
    const local = await errorOf("local");
    expect(local.output.summary).toMatch(/runner: local .* kubernetes runner/);
    expect(n.twin.pulls(OWNER, "broken")).toEqual([]);
    expect(n.twin.pulls(OWNER, "local")).toEqual([]);
    expect(new Set(n.kube!.twin.created.map((j) => j.metadata.labels["autoresearch.dev/repo"]))).toEqual(new Set(["alice.research", "alice.plain"]));
  }, 120_000);
});

// The Kubernetes runner against the Kubernetes twin: real client, rendered Jobs validated
// against the Kubernetes schemas, the real harness run by the twin's kubelet on the stub
// research repository (about 2 s per run).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  jobNameFor,
  KubernetesRunner,
  parseJobTemplate,
  renderJob,
  RunnerConfigError,
  secretNameFor,
} from "../src/runner/kubernetes.js";
import type { RunObservation, RunSpec } from "../src/types.js";
import { JOB_TEMPLATE, NAMESPACE, kubeRunner, startKubeTwin } from "./support/kube.js";
import { validateJob, type KubernetesTwin } from "./twins/kubernetes/index.js";

const ROOT = path.resolve(import.meta.dirname, "..");
let twin: KubernetesTwin | null = null;
let runner: KubernetesRunner | null = null;
let work: string | null = null;
afterEach(async () => {
  runner?.close();
  runner = null;
  await twin?.stop();
  twin = null;
  if (work) rmSync(work, { recursive: true, force: true });
  work = null;
});

function repoDir(edit?: (train: string) => string): string {
  work = mkdtempSync(path.join(tmpdir(), "k8s-runner-"));
  const dir = path.join(work, "repo");
  cpSync(path.join(ROOT, "test/fixtures/research-repo"), dir, { recursive: true });
  if (edit) {
    const file = path.join(dir, "train.py");
    writeFileSync(file, edit(readFileSync(file, "utf8")));
  }
  return dir;
}

function spec(over: Partial<RunSpec> & { url: string }): RunSpec {
  return {
    runId: "alice-research-1-1",
    repo: { owner: "alice", repo: "research" },
    pull: 1,
    sha: "0123456789abcdef0123456789abcdef01234567",
    source: { url: over.url, token: "ghs_read_only" },
    workdir: ".",
    trainCmd: "python3 train.py",
    prepareCmd: "python3 prepare.py",
    prepareFiles: ["prepare.py"],
    budgetSeconds: 10,
    timeoutSeconds: 60,
    ...over,
  };
}

async function until(r: KubernetesRunner, runId: string, ms = 30_000): Promise<Extract<RunObservation, { phase: "finished" }>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const o = await r.observe(runId);
    if (o.phase === "finished") return o;
    if (Date.now() > deadline) throw new Error(`run ${runId} still ${o.phase}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe("Job template", () => {
  it("renders a schema-valid Job with the per-run fields and the sandbox", () => {
    const job = renderJob(parseJobTemplate(JOB_TEMPLATE), spec({ url: "https://api.github.com/repos/alice/research/tarball/0123" }), {
      namespace: NAMESPACE,
      deadlineMarginSeconds: 900,
      ttlSecondsAfterFinished: 86400,
    });
    expect(validateJob(job as never)).toBeNull();
    expect(validateJob({ ...job, spec: { ...job.spec, backoffLimit: "none" } } as never)).toMatch(/schema/);
    expect(job.metadata!.name).toBe(jobNameFor("alice-research-1-1"));
    expect(job.metadata!.labels).toMatchObject({ "autoresearch.dev/repo": "alice.research", "autoresearch.dev/pull": "1" });
    expect(job.spec!.backoffLimit).toBe(0);
    // 60 s harness timeout + 900 s margin, under the template's cap of 3600 s
    expect(job.spec!.activeDeadlineSeconds).toBe(960);
    expect(job.spec!.podFailurePolicy!.rules[0]).toMatchObject({ action: "Ignore", onPodConditions: [{ type: "DisruptionTarget" }] });
    const pod = job.spec!.template.spec!;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext!.runAsNonRoot).toBe(true);
    const trainer = pod.containers[0]!;
    expect(trainer.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, runAsNonRoot: true });
    // The token reaches only the init container.
    expect(trainer.volumeMounts!.map((m) => m.name)).toEqual(["cache", "dshm", "workspace"]);
    expect(trainer.args!.join(" ")).not.toMatch(/token/i);
    expect(trainer.env ?? []).toEqual([]);
    const fetch = pod.initContainers![0]!;
    expect(fetch.args).toContain("--fetch-only");
    expect(fetch.volumeMounts!.map((m) => m.name)).toEqual(["workspace", "source"]);
    expect(pod.volumes!.find((v) => v.name === "source")!.secret!.secretName).toBe(secretNameFor("alice-research-1-1"));
    // GPU, tolerations and the cache volume come from the template untouched.
    expect(trainer.resources!.limits!["nvidia.com/gpu"]).toBe("1");
    expect(pod.tolerations![0]!.key).toBe("nvidia.com/gpu");
  });

  it("refuses a template that lacks what the bot needs, naming it", () => {
    expect(() => parseJobTemplate("kind: Pod\n")).toThrow(RunnerConfigError);
    expect(() => parseJobTemplate("apiVersion: batch/v1\nkind: Job\nspec:\n  template:\n    spec:\n      containers:\n        - name: main\n          image: x\n")).toThrow(
      /container named "trainer"/,
    );
    expect(() => parseJobTemplate(JOB_TEMPLATE.replace("restartPolicy: Never", "restartPolicy: OnFailure"))).toThrow(/restartPolicy must be Never/);
    expect(() => parseJobTemplate("{ not: yaml: at all")).toThrow(/not valid YAML/);
  });

  it("names Jobs deterministically within DNS label limits", () => {
    const long = "a-very-long-organisation-name-research-project-with-many-words-123-4";
    expect(jobNameFor(long)).toBe(jobNameFor(long));
    expect(jobNameFor(long).length).toBeLessThanOrEqual(52);
    expect(jobNameFor(long)).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    expect(jobNameFor("x-1-1")).not.toBe(jobNameFor("x-1-2"));
  });
});

describe("Kubernetes runner through the twin", () => {
  it("runs an experiment: init container fetches with the token, trainer reports through the termination message", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    runner.start();
    const s = spec({ url: repoDir() });
    await runner.submit(s);
    await runner.submit(s); // idempotent
    expect(t.twin.created).toHaveLength(1);
    expect(t.twin.rejected).toEqual([]);
    expect(await runner.list(s.repo)).toEqual([s.runId]);
    const secret = t.twin.secrets.get(`${NAMESPACE}/${secretNameFor(s.runId)}`);
    expect(Buffer.from(secret!.data.token, "base64").toString()).toBe("ghs_read_only");

    const o = await until(runner, s.runId);
    expect(o.result).toMatchObject({ status: "ok", stage: "train" });
    expect(o.result.val_bpb).toBeCloseTo(1.105, 6);
    await waitUntil(() => finished.includes(s.runId));

    // cleanup removes the Job, its pods and the token.
    await runner.cleanup(s.runId);
    expect(t.twin.jobs.size).toBe(0);
    expect(t.twin.secrets.size).toBe(0);
    expect((await runner.observe(s.runId)).phase).toBe("missing");
  });

  it("reports a crash with the harness's reason, OOMKilled as oom, and a passed deadline as a timeout", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const dir = repoDir((train) => train.replace("DEPTH = 4\n", 'DEPTH = 4\nraise RuntimeError("depth check failed")\n'));
    const crash = spec({ url: dir, runId: "alice-research-2-1" });
    await runner.submit(crash);
    const c = await until(runner, crash.runId);
    expect(c.result.status).toBe("crash");
    expect(`${c.result.reason} ${c.result.log_tail}`).toContain("depth check failed");

    const ok = repoDir((train) => train.replace("RUN_SECONDS = 2.0", "RUN_SECONDS = 20.0"));
    t.twin.inject((job) => job.metadata.name === jobNameFor("alice-research-3-1"), { kind: "oom", afterMs: 500 });
    const oom = spec({ url: ok, runId: "alice-research-3-1" });
    await runner.submit(oom);
    const o = await until(runner, oom.runId);
    expect(o.result.status).toBe("oom");
    expect(o.result.reason).toMatch(/OOMKilled/);

    const late = spec({ url: ok, runId: "alice-research-4-1", budgetSeconds: 30, timeoutSeconds: 30 });
    runner.close();
    runner = kubeRunner(t.twin, t.url, { deadlineMarginSeconds: -27 });
    await runner.submit(late);
    const d = await until(runner, late.runId);
    expect(d.result.status).toBe("timeout");
    expect(d.result.reason).toMatch(/activeDeadlineSeconds \(3 s\)/);
  });

  it("runs an evicted pod again without counting it as a failure", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const s = spec({ url: repoDir(), runId: "alice-research-5-1" });
    t.twin.inject((job) => job.metadata.name === jobNameFor(s.runId), { kind: "evict", afterMs: 800 });
    await runner.submit(s);
    const o = await until(runner, s.runId);
    expect(o.result.status).toBe("ok");
    expect(t.twin.podsOfJob(jobNameFor(s.runId), NAMESPACE)).toHaveLength(2);
  });

  it("reports a pod that cannot be scheduled or pull its image instead of waiting forever", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { pendingTimeoutMs: 1000 });
    const a = spec({ url: repoDir(), runId: "alice-research-6-1" });
    const b = spec({ url: a.source.url, runId: "alice-research-7-1" });
    t.twin.inject((job) => job.metadata.name === jobNameFor(a.runId), { kind: "unschedulable" });
    t.twin.inject((job) => job.metadata.name === jobNameFor(b.runId), { kind: "image-pull" });
    await runner.submit(a);
    await runner.submit(b);
    expect((await runner.observe(a.runId)).phase).toBe("pending");
    const ua = await until(runner, a.runId);
    expect(ua.result).toMatchObject({ status: "crash", stage: "fetch" });
    expect(ua.result.reason).toMatch(/could not be scheduled.*Insufficient nvidia.com\/gpu/);
    const ub = await until(runner, b.runId);
    expect(ub.result.reason).toMatch(/ImagePullBackOff/);
  });

  it("cancel deletes the Job, its pod and the token; a relist after 410 Gone still reports finished runs", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { relistMs: 60_000 });
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    runner.start();
    const slow = spec({ url: repoDir((train) => train.replace("RUN_SECONDS = 2.0", "RUN_SECONDS = 30.0")), runId: "alice-research-8-1" });
    await runner.submit(slow);
    await waitUntil(async () => (await runner!.observe(slow.runId)).phase === "running");
    await runner.cancel(slow.runId);
    expect(t.twin.jobs.size).toBe(0);
    expect(t.twin.secrets.size).toBe(0);
    expect(t.twin.pods.size).toBe(0);

    // The watch is cut and the history compacted: the runner relists and watches again.
    const quick = spec({ url: repoDir(), runId: "alice-research-9-1" });
    t.twin.compact();
    t.twin.dropWatches();
    await runner.submit(quick);
    await waitUntil(() => finished.includes(quick.runId), 30_000);
  });

  it("validate() names the problem of an unusable template", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { template: (repo) => (repo.repo === "broken" ? "apiVersion: batch/v1\nkind: Job\nspec: {}\n" : JOB_TEMPLATE) });
    expect(await runner.validate({ owner: "alice", repo: "research" })).toEqual([]);
    const [problem] = await runner.validate({ owner: "alice", repo: "broken" });
    expect(problem).toMatch(/spec.template.spec \(the pod\) is missing/);
    await expect(runner.submit(spec({ url: "/nowhere", repo: { owner: "alice", repo: "broken" } }))).rejects.toThrow(RunnerConfigError);
    expect(t.twin.created).toHaveLength(0);
  });
});

async function waitUntil(fn: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 100));
  }
}

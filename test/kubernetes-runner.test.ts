// The Kubernetes runner against the Kubernetes twin: real client, rendered Jobs validated
// against the Kubernetes schemas, the real harness run by the twin's kubelet on the stub
// research repository (about 2 s per run).
import { execFileSync } from "node:child_process";
import { createServer, type ServerResponse } from "node:http";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  fetchJobNameFor,
  jobNameFor,
  KubernetesRunner,
  parseJobTemplate,
  renderFetchJob,
  renderEvalJob,
  renderJob,
  RunnerConfigError,
  secretNameFor,
  specOfJob,
} from "../src/runner/kubernetes.js";
import type { RunObservation, RunSpec } from "../src/types.js";
import { JOB_TEMPLATE, NAMESPACE, kubeConfigFor, kubeRunner, startKubeTwin } from "../twins/kube.js";
import { validateJob, type KubernetesTwin, type RequestInfo } from "../twins/kubernetes/index.js";

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

/** A copy of the stub research repository, which the twin's containers may read (its local "URL"). */
function repoDir(edit?: (train: string) => string): string {
  work = mkdtempSync(path.join(tmpdir(), "k8s-runner-"));
  const dir = path.join(work, "repo");
  cpSync(path.join(ROOT, "test/fixtures/research-repo"), dir, { recursive: true });
  if (edit) {
    const file = path.join(dir, "train.py");
    writeFileSync(file, edit(readFileSync(file, "utf8")));
  }
  twin?.share(dir);
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
    evalAllowanceSeconds: 60,
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
  const options = { namespace: NAMESPACE, deadlineMarginSeconds: 900, ttlSecondsAfterFinished: 86400 };
  const url = "https://api.github.com/repos/alice/research/tarball/0123";

  it("renders the fetch Job: only its init container holds the token; preparation writes the repository's data folder", () => {
    const job = renderFetchJob(parseJobTemplate(JOB_TEMPLATE), spec({ url }), options);
    expect(validateJob(job as never)).toBeNull();
    expect(job.metadata!.name).toBe(fetchJobNameFor("alice-research-1-1"));
    expect(job.metadata!.labels).toMatchObject({ "autoresearch.dev/repo": "alice.research", "autoresearch.dev/role": "fetch" });
    expect(job.spec!.template.metadata!.labels!["autoresearch.dev/role"]).toBe("fetch");
    // The training Job is rendered later from this annotation: the spec without its token.
    expect(specOfJob(job)).toMatchObject({ runId: "alice-research-1-1", sha: spec({ url }).sha, source: { url, token: null } });
    expect(JSON.stringify(job.metadata!.annotations)).not.toContain("ghs_read_only");
    const pod = job.spec!.template.spec!;
    const [fetch] = pod.initContainers!;
    const [prepare] = pod.containers;
    expect(fetch!.args).toEqual(expect.arrayContaining(["--fetch-only", `/runs/${jobNameFor("alice-research-1-1")}/source`, "--token-file"]));
    expect(fetch!.volumeMounts).toEqual(
      expect.arrayContaining([{ name: "cache", mountPath: "/runs", subPath: "alice.research/runs" }, { name: "source", mountPath: "/var/run/autoresearch/token", readOnly: true }]),
    );
    expect(prepare!.name).toBe("prepare");
    expect(prepare!.args).toEqual(expect.arrayContaining(["--prepare-only", "--sandbox", "container", "--cache-dir", "/cache"]));
    expect(prepare!.volumeMounts!.map((m) => m.name)).not.toContain("source");
    expect(prepare!.volumeMounts).toEqual(expect.arrayContaining([{ name: "cache", mountPath: "/cache", subPath: "alice.research/data" }]));
    // Preparation needs no GPU.
    expect(prepare!.resources!.limits!["nvidia.com/gpu"]).toBeUndefined();
    expect(prepare!.resources!.limits!.memory).toBe("64Gi");
    for (const v of pod.volumes!) if (v.emptyDir) expect(v.emptyDir.sizeLimit, v.name).toBeDefined();
  });

  it("renders the training Job: no token, no network role, the data read-only, its own commit only", () => {
    const job = renderJob(parseJobTemplate(JOB_TEMPLATE), spec({ url }), options);
    expect(validateJob(job as never)).toBeNull();
    expect(validateJob({ ...job, spec: { ...job.spec, backoffLimit: "none" } } as never)).toMatch(/schema/);
    expect(job.metadata!.name).toBe(jobNameFor("alice-research-1-1"));
    expect(job.metadata!.labels).toMatchObject({ "autoresearch.dev/repo": "alice.research", "autoresearch.dev/pull": "1", "autoresearch.dev/role": "trainer" });
    expect(job.spec!.backoffLimit).toBe(0);
    // 60 s harness timeout + 900 s margin, under the template's cap of 3600 s
    expect(job.spec!.activeDeadlineSeconds).toBe(960);
    expect(job.spec!.podFailurePolicy!.rules[0]).toMatchObject({ action: "Ignore", onPodConditions: [{ type: "DisruptionTarget" }] });
    const pod = job.spec!.template.spec!;
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.securityContext!.runAsNonRoot).toBe(true);
    expect(pod.initContainers ?? []).toEqual([]);
    expect(pod.volumes!.map((v) => v.name)).not.toContain("source");
    const trainer = pod.containers[0]!;
    expect(trainer.securityContext).toMatchObject({ allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, runAsNonRoot: true, readOnlyRootFilesystem: true });
    const run = jobNameFor("alice-research-1-1");
    expect(trainer.volumeMounts).toEqual([
      { name: "dshm", mountPath: "/dev/shm" },
      { name: "cache", mountPath: "/cache", subPath: "alice.research/data", readOnly: true },
      { name: "cache", mountPath: "/source", subPath: `alice.research/runs/${run}/source`, readOnly: true },
      { name: "workspace", mountPath: "/workspace" },
    ]);
    expect(trainer.args).toEqual(expect.arrayContaining(["--prepared-only", "--repo", "/source/source.tar", "--sandbox", "container"]));
    expect(trainer.args!.join(" ")).not.toMatch(/token/i);
    expect(trainer.env!.map((e) => e.name)).toEqual(["HOME", "TMPDIR", "XDG_CACHE_HOME"]);
    // GPU and tolerations come from the template untouched.
    expect(trainer.resources!.limits!["nvidia.com/gpu"]).toBe("1");
    expect(pod.tolerations![0]!.key).toBe("nvidia.com/gpu");
  });

  it("refuses templates that would hand the trainer a credential, a host path or an unbounded disk", () => {
    const withVolume = (v: string) => JOB_TEMPLATE.replace("      volumes:\n", `      volumes:\n${v}`);
    expect(() => parseJobTemplate(withVolume("        - name: creds\n          secret:\n            secretName: x\n"))).toThrow(/volume "creds" is a secret volume/);
    expect(() => parseJobTemplate(withVolume("        - name: docker\n          hostPath:\n            path: /var/run/docker.sock\n"))).toThrow(/host paths/);
    expect(() => parseJobTemplate(withVolume("        - name: scratch\n          emptyDir: {}\n"))).toThrow(/emptyDir volume "scratch" needs a sizeLimit/);
    expect(() => parseJobTemplate(JOB_TEMPLATE.replace("persistentVolumeClaim:\n            claimName: autoresearch-cache", "emptyDir:\n            sizeLimit: 1Gi"))).toThrow(
      /must be shared storage/,
    );
    expect(() => parseJobTemplate(JOB_TEMPLATE.replace("name: cache ", "name: data "))).toThrow(/needs a volume named "cache"/);
    expect(() => parseJobTemplate(JOB_TEMPLATE.replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: IfNotPresent\n          envFrom:\n            - secretRef:\n                name: x"))).toThrow(/envFrom/);
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

  it("an autoresearch fork's layout: what prepare.py keeps under ~/.cache, the trainer finds there (read-only), and hub libraries are told they are offline", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    runner.start();
    const dir = repoDir();
    cpSync(path.join(ROOT, "test/fixtures/fork-layout"), dir, { recursive: true });
    const s = spec({ url: dir });
    await runner.submit(s);
    const o = await until(runner, s.runId);
    expect(o.result, o.result.log_tail).toMatchObject({ status: "ok", stage: "train" });
    expect(JSON.parse(/^SEEN (.*)$/m.exec(o.result.log_tail)![1]!)).toEqual({
      data: "shard", kernel: "fa3", prepare_offline: "None", offline: "1", writable: false,
    });
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
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    runner.start();
    const a = spec({ url: repoDir(), runId: "alice-research-6-1" });
    const b = spec({ url: a.source.url, runId: "alice-research-7-1" });
    t.twin.inject((job) => job.metadata.name === jobNameFor(a.runId), { kind: "unschedulable" });
    t.twin.inject((job) => job.metadata.name === jobNameFor(b.runId), { kind: "image-pull" });
    await runner.submit(a);
    await runner.submit(b);
    expect((await runner.observe(a.runId)).phase).toBe("pending");
    // No event tells of a stuck Job: going over the cached Jobs finds it, and the loop hears of it.
    await waitUntil(() => finished.includes(a.runId) && finished.includes(b.runId));
    const ua = await until(runner, a.runId);
    expect(ua.result).toMatchObject({ status: "crash", stage: "fetch" });
    expect(ua.result.reason).toMatch(/could not be scheduled.*Insufficient nvidia.com\/gpu/);
    const ub = await until(runner, b.runId);
    expect(ub.result.reason).toMatch(/ImagePullBackOff/);
  });

  it("cancel deletes the Job, its pod and the token; a relist after 410 Gone still reports finished runs", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { resyncMs: 60_000 });
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

  it("an attacker's train.py in the training pod: no token, no network, the data read-only, no process left", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const marker = `k8s-attack-${process.pid}-${Date.now()}`;
    const targets = {
      files: ["/var/run/autoresearch/token/token", "/var/run/secrets/kubernetes.io/serviceaccount/token"],
      dirs: ["/runs"],
      canaries: ["ghs_read_only"],
      hosts: [["127.0.0.1", Number(new URL(t.url).port)]],
      writable: ["/cache/poison.txt", "/source/poison.txt", "/etc/poison.txt"],
      marker,
    };
    const attacker = readFileSync(path.join(ROOT, "test/fixtures/attacks/train.py"), "utf8").replace("TARGETS = {}", `TARGETS = ${JSON.stringify(targets)}`);
    const s = spec({ url: repoDir(() => attacker), runId: "alice-research-10-1" });
    await runner.submit(s);
    const o = await until(runner, s.runId);
    expect(o.result.status).toBe("ok");
    const attacks = JSON.parse(/^ATTACKS (.*)$/m.exec(o.result.log_tail)![1]!) as Record<string, string>;
    for (const [name, outcome] of Object.entries(attacks)) expect(outcome, name).not.toMatch(/^(LEAKED|LISTED|CONNECTED|RESOLVED|WROTE|READ)/);
    expect(Object.keys(attacks)).toHaveLength(11);
    // The fetch pod had the network and the token; the training pod had neither.
    const runs = t.twin.containerRuns.filter((r) => r.job.startsWith(jobNameFor(s.runId)));
    expect(runs.map((r) => [r.container, r.network])).toEqual([["fetch", true], ["prepare", true], ["trainer", false]]);
    // Nothing of the run is left running on the node.
    const left = readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker);
      } catch {
        return false;
      }
    });
    expect(left).toEqual([]);
  });

  it("gives up on an API server that never answers, instead of holding the pass for good", async () => {
    // A server that accepts every request and answers none.
    const held: ServerResponse[] = [];
    const server = createServer((_req, res) => void held.push(res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as { port: number }).port;
      const r = new KubernetesRunner({ kubeConfig: kubeConfigFor(`http://127.0.0.1:${port}`, "t"), namespace: NAMESPACE, template: () => JOB_TEMPLATE, requestTimeoutMs: 300 });
      await expect(r.observe("alice-research-1-1")).rejects.toThrow(/reading Job .*timed out: the Kubernetes API server did not answer within 300 ms/);
      expect(held.length).toBeGreaterThan(0);
    } finally {
      for (const res of held) res.destroy();
      await new Promise((r) => server.close(r));
    }
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

describe("the Kubernetes API failing", () => {
  const isJobCreate = (r: RequestInfo) => r.method === "POST" && r.path.endsWith("/jobs");
  const isSecretCreate = (r: RequestInfo) => r.method === "POST" && r.path.endsWith("/secrets");
  const isJobRead = (name: string) => (r: RequestInfo) => r.method === "GET" && r.path.endsWith(`/jobs/${name}`);
  const isJobList = (r: RequestInfo) => r.method === "GET" && r.path.endsWith("/jobs") && !r.watch;
  const isPodList = (r: RequestInfo) => r.method === "GET" && r.path.endsWith("/pods");
  const isWatch = (r: RequestInfo) => r.watch;
  const watches = (t: KubernetesTwin) => t.requests.filter((r) => r.method === "GET" && r.path.endsWith("/jobs")).length;
  const logs = () => {
    const lines: string[] = [];
    const logger = { info: (m: string) => void lines.push(m), warn: (m: string) => void lines.push(m), error: (m: string) => void lines.push(m) };
    return { lines, logger };
  };

  it("a 500 on submit, observe or list fails that call with the reason, and the next call succeeds without a second Job", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const s = spec({ url: repoDir(), runId: "alice-research-20-1" });
    t.twin.fail(isJobCreate);
    await expect(runner.submit(s)).rejects.toThrow(`creating Job ${fetchJobNameFor(s.runId)}: HTTP 500: the twin was told to answer POST`);
    expect(t.twin.jobs.size).toBe(0);
    await runner.submit(s);
    expect(t.twin.jobs.size).toBe(1);

    t.twin.fail(isJobRead(fetchJobNameFor(s.runId)));
    await expect(runner.observe(s.runId)).rejects.toThrow(`reading Job ${fetchJobNameFor(s.runId)}: HTTP 500`);
    expect((await runner.observe(s.runId)).phase).not.toBe("missing");
    t.twin.fail(isPodList);
    await expect(runner.observe(s.runId)).rejects.toThrow(`listing the pods of Job ${fetchJobNameFor(s.runId)}: HTTP 500`);
    t.twin.fail(isJobList);
    await expect(runner.list(s.repo)).rejects.toThrow("listing the Jobs of alice/research: HTTP 500");
    expect(await runner.list(s.repo)).toEqual([s.runId]);
    await runner.submit(s); // a pass that submits again after its error: still one run

    const o = await until(runner, s.runId);
    expect(o.result).toMatchObject({ status: "ok", stage: "train" });
    expect(t.twin.created.map((j) => j.metadata.name)).toEqual([fetchJobNameFor(s.runId), jobNameFor(s.runId)]);
    expect(t.twin.conflicts).toBe(0);
    expect(t.twin.createdSecrets).toHaveLength(1);
  });

  it("a request the API server never answers fails after requestTimeoutMs, and the requests after it are answered", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { requestTimeoutMs: 500 });
    const s = spec({ url: repoDir(), runId: "alice-research-21-1" });
    t.twin.fail(isJobRead(jobNameFor(s.runId)), "hang");
    await expect(runner.submit(s)).rejects.toThrow(`reading Job ${jobNameFor(s.runId)}: timed out: the Kubernetes API server did not answer within 500 ms`);
    t.twin.fail(isJobCreate, "hang");
    await expect(runner.submit(s)).rejects.toThrow(`creating Job ${fetchJobNameFor(s.runId)}: timed out`);
    expect(t.twin.jobs.size).toBe(0);
    await runner.submit(s);
    const o = await until(runner, s.runId);
    expect(o.result).toMatchObject({ status: "ok", stage: "train" });
    expect(t.twin.created).toHaveLength(2);
  });

  it("the Job informer recovers after the API server answers its watch and its list with 500s, drops the watch and compacts its history", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    const { lines, logger } = logs();
    runner = kubeRunner(t.twin, t.url, { logger });
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    runner.start();
    await waitUntil(() => t.twin.openWatches === 1);

    // The watch is cut and its next two tries answered with 500: the informer starts again.
    const before = watches(t.twin);
    t.twin.fail(isWatch, 500, 2);
    t.twin.dropWatches();
    await waitUntil(() => t.twin.openWatches === 1 && watches(t.twin) >= before + 3);
    expect(lines.filter((l) => /watching the Jobs failed \(HTTP 500: Internal Server Error\); starting again in \d+ ms/.test(l))).toHaveLength(2);
    const a = spec({ url: repoDir(), runId: "alice-research-22-1" });
    await runner.submit(a);
    await waitUntil(() => finished.includes(a.runId), 30_000);

    // The history is compacted (410 Gone on the resumed watch) and the relist fails once.
    t.twin.fail(isJobList);
    t.twin.compact();
    t.twin.dropWatches();
    const b = spec({ url: a.source.url, runId: "alice-research-23-1" });
    await runner.submit(b);
    await waitUntil(() => finished.includes(b.runId), 30_000);
    expect(lines.some((l) => l.includes("watching the Jobs failed (listing the Jobs in autoresearch: HTTP 500"))).toBe(true);
    expect(finished.filter((id) => id === a.runId)).toHaveLength(1);
    expect(finished.filter((id) => id === b.runId)).toHaveLength(1);

    // close() leaves no watch open (nor a timer: the test run ends).
    runner.close();
    await waitUntil(() => t.twin.openWatches === 0);
  });

  it("a watch the API server accepts and never answers is replaced: the informer lists and watches afresh", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    const { lines, logger } = logs();
    runner = kubeRunner(t.twin, t.url, { logger, watchTimeoutSeconds: 1, requestTimeoutMs: 500, resyncMs: 300 });
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    runner.start();
    // The API server ends each watch after timeoutSeconds, with a bookmark: the informer resumes it.
    await waitUntil(() => watches(t.twin) >= 3);
    expect(lines).toEqual([]);

    t.twin.fail(isWatch, "hang");
    t.twin.dropWatches();
    await waitUntil(() => lines.some((l) => /no word from the Job watch for \d+ s; listing and watching afresh/.test(l)));
    const s = spec({ url: repoDir(), runId: "alice-research-24-1" });
    await runner.submit(s);
    await waitUntil(() => finished.includes(s.runId), 30_000);
  });

  it("a Secret that cannot be created after its Job undoes the submit; the next submit creates both, and leaves nothing behind", async () => {
    let cut = 0; // Secret creates carried out whose answer is lost
    const t = await startKubeTwin({ writeHook: (method, kind) => (method === "POST" && kind === "secrets" && cut-- > 0 ? "cut-after" : undefined) });
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { pendingTimeoutMs: 60_000 });
    const s = spec({ url: repoDir(), runId: "alice-research-25-1" });
    const secretKey = `${NAMESPACE}/${secretNameFor(s.runId)}`;

    // Refused: the run fails fast, with the reason, instead of waiting for its token until the pending timeout.
    t.twin.fail(isSecretCreate);
    await expect(runner.submit(s)).rejects.toThrow(
      `run ${s.runId}: creating Secret ${secretNameFor(s.runId)}: HTTP 500: the twin was told to answer POST /api/v1/namespaces/${NAMESPACE}/secrets with 500; the fetch Job was deleted, so the run is submitted again, Job and Secret, on the next pass`,
    );
    expect(t.twin.jobs.size).toBe(0);
    expect((await runner.observe(s.runId)).phase).toBe("missing");

    // Created, but the answer is lost: the Job and the Secret are both deleted.
    cut = 1;
    await expect(runner.submit(s)).rejects.toThrow(/creating Secret .*the fetch Job was deleted/);
    expect(t.twin.jobs.size).toBe(0);
    expect(t.twin.secrets.size).toBe(0);

    // Refused, and the Job cannot be deleted either: the next submit gives the waiting Job its Secret.
    t.twin.fail(isSecretCreate);
    t.twin.fail((r) => r.method === "DELETE" && r.path.endsWith(`/jobs/${fetchJobNameFor(s.runId)}`));
    await expect(runner.submit(s)).rejects.toThrow(/deleting the fetch Job failed too \(deleting Job .*HTTP 500.*\); the next submit creates the Secret/);
    expect(t.twin.secrets.has(secretKey)).toBe(false);
    await runner.submit(s);

    const o = await until(runner, s.runId);
    expect(o.result).toMatchObject({ status: "ok", stage: "train" });
    // One fetch Job of each submit that got that far, never two at once; one Secret, owned by the Job that ran.
    const fetchJob = t.twin.jobs.get(`${NAMESPACE}/${fetchJobNameFor(s.runId)}`)!;
    expect(t.twin.jobList(NAMESPACE).map((j) => j.metadata.name).sort()).toEqual([jobNameFor(s.runId), fetchJobNameFor(s.runId)].sort());
    expect([...t.twin.secrets.keys()]).toEqual([secretKey]);
    expect(t.twin.secrets.get(secretKey)!.metadata.ownerReferences[0].uid).toBe(fetchJob.metadata.uid);
    expect(t.twin.conflicts).toBe(0);
    await runner.cleanup(s.runId);
    expect(t.twin.secrets.size).toBe(0);
  });
});

describe("outside evaluation on Kubernetes", () => {
  // test/fixtures/outside-eval: a 4-symbol language, the trusted scorer (score.py), a "training"
  // that saves unigram weights and claims val_bpb 0.01, and a model process whose MODE a test
  // turns into an attack. The base commit is the honest project (the default branch).
  const OUTSIDE = path.join(ROOT, "test/fixtures/outside-eval");
  const HONEST_BPB = 1.588642;
  const git = (cwd: string, ...args: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", ...args], { cwd, encoding: "utf8" }).trim();

  /** The project at its base commit and an experiment commit with `changes`: [file, from, to]. */
  function project(changes: [string, string, string][] = []): { url: string; base: string; head: string } {
    const url = repoDir();
    rmSync(url, { recursive: true, force: true });
    cpSync(OUTSIDE, url, { recursive: true });
    git(url, "init", "-q", "-b", "main");
    git(url, "add", ".");
    git(url, "commit", "-q", "-m", "base");
    const base = git(url, "rev-parse", "HEAD");
    for (const [file, from, to] of changes) {
      const text = readFileSync(path.join(url, file), "utf8");
      expect(text).toContain(from);
      writeFileSync(path.join(url, file), text.replace(from, to));
    }
    if (changes.length) git(url, "commit", "-q", "-am", "experiment");
    return { url, base, head: git(url, "rev-parse", "HEAD") };
  }

  const evalSpec = (p: { url: string; base: string; head: string }, runId: string): RunSpec =>
    spec({
      url: p.url,
      runId,
      sha: p.head,
      budgetSeconds: 10,
      evaluation: { scoreCmd: "python3 score.py", serveCmd: "python3 train.py serve", sha: p.base, url: p.url },
    });

  it("renders the scoring and probe Jobs: the model gets its weights and no held-out data, the scorer its own scratch and no GPU", () => {
    const s = evalSpec({ url: "https://api.github.com/repos/alice/research/tarball/0123", base: "b".repeat(40), head: "0123456789abcdef0123456789abcdef01234567" }, "alice-research-1-1");
    const options = { namespace: NAMESPACE, deadlineMarginSeconds: 900, ttlSecondsAfterFinished: 86400 };
    const run = jobNameFor(s.runId);
    const trainer = renderJob(parseJobTemplate(JOB_TEMPLATE), s, options).spec!.template.spec!.containers[0]!;
    expect(trainer.args).toEqual(expect.arrayContaining(["--score-later", "--output-dir", "/output", "--eval-repo", "/source/trusted.tar"]));
    expect(trainer.volumeMounts!.map((m) => m.mountPath)).not.toContain("/heldout");
    for (const step of ["score", "probe"] as const) {
      const job = renderEvalJob(parseJobTemplate(JOB_TEMPLATE), s, options, step);
      expect(validateJob(job as never)).toBeNull();
      expect(job.metadata!.name).toBe(step === "score" ? `${run}-eval` : `${run}-probe`);
      const pod = job.spec!.template.spec!;
      expect(job.spec!.template.metadata!.labels).toMatchObject({ "autoresearch.dev/isolated": "true", "autoresearch.dev/role": step === "score" ? "eval" : "probe" });
      expect(pod.shareProcessNamespace).toBe(false);
      const [trusted, model] = pod.containers;
      expect(trusted!.name).toBe(step);
      expect(model!.name).toBe("model");
      const mounts = (c: typeof trusted) => Object.fromEntries(c!.volumeMounts!.map((m) => [m.mountPath, `${m.name}:${m.subPath ?? ""}:${m.readOnly ? "ro" : "rw"}`]));
      // The model: its commit, the data and its weights read-only, the FIFOs, its own scratch.
      expect(mounts(model)).toEqual({
        "/dev/shm": "dshm::rw",
        "/cache": "cache:alice.research/data:ro",
        "/source": `cache:alice.research/runs/${run}/source:ro`,
        "/workspace": "workspace::rw",
        "/output": `cache:alice.research/runs/${run}/output:ro`,
        "/pipes": "pipes::rw",
      });
      expect(model!.args).toEqual(expect.arrayContaining(["--serve-only", "/pipes"]));
      expect(model!.resources!.limits!["nvidia.com/gpu"]).toBe("1");
      expect(model!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
      // The trusted side: never the model's scratch, never a GPU; only it sees the plan.
      expect(trusted!.resources!.limits!["nvidia.com/gpu"]).toBeUndefined();
      expect(mounts(trusted)["/workspace"]).toBe("trusted-workspace::rw");
      expect(mounts(trusted)["/plan"]).toBe(`cache:alice.research/runs/${run}/eval:${step === "score" ? "rw" : "ro"}`);
      if (step === "score") {
        expect(mounts(trusted)["/heldout"]).toBe("cache:alice.research/heldout:ro");
        expect(trusted!.args).toEqual(expect.arrayContaining(["--score-only", "/pipes", "--heldout-root", "/heldout", "--probe-plan", "/plan/plan.json"]));
      } else {
        expect(Object.keys(mounts(trusted)).sort()).toEqual(["/pipes", "/plan", "/workspace"]);
      }
    }
  });

  it("scores the saved weights with the default branch's scorer in pods of their own; the training's own figure counts for nothing", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const finished: string[] = [];
    runner.onFinished((id) => finished.push(id));
    runner.start();
    const p = project([["score.py", "import math", "print('---'); print('val_bpb: 0.000001'); raise SystemExit(0)\nimport math"]]);
    const s = evalSpec(p, "alice-research-11-1");
    await runner.submit(s);
    const o = await until(runner, s.runId, 60_000);
    expect(o.result).toMatchObject({ status: "ok", stage: "train", evaluation: "outside" });
    expect(o.result.val_bpb).toBeCloseTo(HONEST_BPB, 5);
    expect(o.result.summary).toMatchObject({ reported_val_bpb: 0.01, probe_windows: 8 });
    expect(o.result.reason).toMatch(/measured outside the experiment/);
    // The training saw no held-out data.
    const seen = JSON.parse(/^SEES (.*)$/m.exec(o.result.log_tail)![1]!) as Record<string, unknown>;
    expect(seen).toMatchObject({ eval_env: null, eval_dir: false, val_in_data: false });
    const name = jobNameFor(s.runId);
    const runs = t.twin.containerRuns.filter((r) => r.job.startsWith(name)).map((r) => `${r.job.slice(name.length) || "-train"}/${r.container}:${r.network ? "net" : "none"}`);
    expect(runs.sort()).toEqual(["-eval/model:none", "-eval/score:none", "-fetch/fetch:net", "-fetch/prepare:net", "-probe/model:none", "-probe/probe:none", "-train/trainer:none"]);
    await waitUntil(() => finished.includes(s.runId), 30_000);
    await runner.cleanup(s.runId);
    expect(t.twin.jobs.size).toBe(0);
  });

  it.each([
    ["reads the next symbol (not causal)", "peek"],
    ["adapts to the windows it was asked before", "drift"],
  ])("a model that %s fails the causality probe, run against a fresh model in a pod of its own", async (_what, mode) => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const s = evalSpec(project([["model.py", 'MODE = "honest"', `MODE = "${mode}"`]]), "alice-research-12-1");
    await runner.submit(s);
    const o = await until(runner, s.runId, 60_000);
    expect(o.result).toMatchObject({ status: "crash", stage: "eval", val_bpb: null, evaluation: "outside" });
    expect(o.result.reason).toMatch(/causality probe failed/);
  });

  const forgery = (sleep: number) => {
    const forged = JSON.stringify({ status: "ok", val_bpb: 0.001, evaluation: "outside", training_seconds: 1, stage: "train", reason: "forged" });
    return [
      "import os, signal, time",
      `time.sleep(${sleep})`,
      `open("/dev/termination-log", "w").write(${JSON.stringify(forged)})`,
      "for pid in os.listdir('/proc'):",
      "    try:",
      "        if pid.isdigit() and b'harness.py' in open('/proc/%s/cmdline' % pid, 'rb').read(): os.kill(int(pid), signal.SIGKILL)",
      "    except OSError:",
      "        pass",
      'print("---")',
    ].join("\n");
  };

  it("a training that forges the harness's result and kills it is still scored from outside", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url);
    const s = evalSpec(project([["train.py", 'print("---")', forgery(0)]]), "alice-research-13-1");
    await runner.submit(s);
    const o = await until(runner, s.runId, 60_000);
    expect(o.result.val_bpb).not.toBe(0.001);
    expect(o.result).toMatchObject({ status: "ok", evaluation: "outside" });
    expect(o.result.val_bpb).toBeCloseTo(HONEST_BPB, 5);
  });

  it("a training that overruns its budget and then forges a result of 1 s is over_budget by the cluster's clock", async () => {
    const t = await startKubeTwin();
    twin = t.twin;
    runner = kubeRunner(t.twin, t.url, { startMarginSeconds: 0 });
    const s = { ...evalSpec(project([["train.py", 'print("---")', forgery(3)]]), "alice-research-14-1"), budgetSeconds: 1, evalAllowanceSeconds: 0 };
    await runner.submit(s);
    const o = await until(runner, s.runId, 60_000);
    expect(o.result).toMatchObject({ status: "over_budget", val_bpb: null });
    expect(o.result.reason).toMatch(/ran \d+ s by the cluster's clock, more than the budget of 1 s/);
    expect(t.twin.created.map((j) => j.metadata.name)).not.toContain(`${jobNameFor(s.runId)}-eval`);
  });
});

async function waitUntil(fn: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The Kubernetes runner: two batch/v1 Jobs per run (four with the outside evaluation), rendered from a template users edit
// (k8s/job.yaml: GPU, node selector, tolerations, image, data volume, Kueue queue, priority).
// The bot fills only the per-run fields. The Jobs are the whole state: a restarted bot lists
// them by label and reads results from the pods' termination messages, so a run is neither
// lost nor started twice (Job names are functions of the run id; a second create is a 409).
//
// Per run:
//   Job    <name>-fetch    role fetch. Init container `fetch` (harness --fetch-only) downloads
//                          the commit with the run's read token onto the data volume
//                          (<repo>/runs/<name>/source.tar); then container `prepare` (harness
//                          --prepare-only) prepares the repository's data in <repo>/data, or
//                          checks that what was prepared is unchanged. The pod may reach GitHub
//                          (and the hosts preparation downloads from); it runs no experiment.
//   Secret <name>-source   the read token, mounted by the `fetch` container only; owned by the
//                          fetch Job (and deleted explicitly by cancel / cleanup)
//   Job    <name>          role trainer, created when the fetch Job succeeded. Container
//                          `trainer` (harness --prepared-only) unpacks the commit into its
//                          sized emptyDir and trains with <repo>/data mounted read-only. No
//                          token, no service account token, no other repository's folder, no
//                          other run's source, non-root, read-only root filesystem, every
//                          capability dropped; k8s/networkpolicy.yaml gives the pod no network.
//   Job    <name>-eval     role eval, with outside evaluation, once training succeeded: the
//                          trusted `score` container beside the experiment's `model` (see
//                          renderEvalJob); val_bpb comes from here, never from the trainer.
//   Job    <name>-probe    role probe, once scoring succeeded: the causality probe against a
//                          fresh model in a new pod.
// All carry labels (managed-by, repo, pull, run, role; isolated on the pods that run the
// experiment's code) and annotations (run id, repository, commit, and the run spec the next Job
// is rendered from). The harness writes its JSON result to /dev/termination-log; the log's last
// line is the fallback.
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { CORE_SCHEMA, load as loadYaml } from "js-yaml";
import { z } from "zod";
import type { RepoRef, RunObservation, RunnerPort, RunSpec, TrainerResult } from "../types.js";
import { parseHarnessResultText } from "./result.js";
import type { Logger } from "../log.js";

/** The bot's one logger type (src/log.ts). */
export type RunnerLogger = Logger;

/** A problem with the runner's configuration (the Job template): the repo's loop waits on it. */
export class RunnerConfigError extends Error {
  readonly runnerConfig = true;
  constructor(message: string) {
    super(message);
    this.name = "RunnerConfigError";
  }
}

export interface KubernetesRunnerOptions {
  kubeConfig: k8s.KubeConfig;
  namespace: string;
  /**
   * The Job template (YAML text) for a repository. Read on every submit, so an edited
   * template (a mounted ConfigMap) applies without a restart.
   */
  template(repo: RepoRef): Promise<string> | string;
  /** Experiments in flight at once across all repositories; default 8. */
  slots?: number;
  /** Added to the harness timeout for activeDeadlineSeconds (fetch, prepare, start); default 900. */
  deadlineMarginSeconds?: number;
  /**
   * With outside evaluation, the time a training container may run beyond its budget and
   * eval allowance by the cluster's clock (unpacking the commit, checking the prepared data)
   * before its result is over_budget, whatever it says of itself; default 300.
   */
  startMarginSeconds?: number;
  /** A pod that cannot be scheduled or pull its image for this long is reported; default 15 min. */
  pendingTimeoutMs?: number;
  /** Every API request (not the watch) gives up after this long: a hung API server must not hold a pass; default 30 s. */
  requestTimeoutMs?: number;
  /**
   * How often the informer's cached Jobs are gone over: finished ones not yet reported, runs
   * pending for longer than pendingTimeoutMs (nothing changes on a stuck Job, so no event tells
   * of it), and a watch that has gone silent; default 60 s.
   */
  resyncMs?: number;
  /**
   * The API server ends each watch after this long and the informer resumes it from the last
   * resourceVersion it saw; a watch not renewed within this plus requestTimeoutMs is taken for
   * hung and the informer is started afresh (a full relist); default 300 s.
   */
  watchTimeoutSeconds?: number;
  /** ttlSecondsAfterFinished when the template sets none; default 1 day. */
  ttlSecondsAfterFinished?: number;
  /** False while another bot process leads (src/leader/): the watch then creates no Job. */
  active?: () => boolean;
  /** sizeLimit of each pod's scratch emptyDir (the unpacked commit, HOME, TMPDIR); default 20Gi. */
  workspaceSizeLimit?: string;
  logger?: RunnerLogger;
}

export const LABEL_MANAGED = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "autoresearch-bot";
export const LABEL_REPO = "autoresearch.dev/repo";
export const LABEL_PULL = "autoresearch.dev/pull";
export const LABEL_RUN = "autoresearch.dev/run";
export const LABEL_ROLE = "autoresearch.dev/role";
export const LABEL_ISOLATED = "autoresearch.dev/isolated";
export const ANNOTATION_RUN_ID = "autoresearch.dev/run-id";
export const ANNOTATION_REPO = "autoresearch.dev/repository";
export const ANNOTATION_COMMIT = "autoresearch.dev/commit";

export const ANNOTATION_SPEC = "autoresearch.dev/spec";

const TRAINER = "trainer";
const FETCH = "fetch";
const PREPARE = "prepare";
/** The containers of the evaluation Jobs: the trusted step (scorer or probe) and the experiment's model. */
const SCORE = "score";
const PROBE = "probe";
const MODEL = "model";
/** The template's shared volume (a persistentVolumeClaim): one folder per repository. */
const DATA = "cache";
const WORKSPACE = "workspace";
const SOURCE = "source";
/** The evaluation pods' FIFOs between the trusted container and the model (emptyDir). */
const PIPES = "pipes";
/** The trusted container's own scratch (its unpacked scorer): never shared with the model. */
const TRUSTED_WORKSPACE = "trusted-workspace";
const WORKSPACE_DIR = "/workspace";
/** The repository's held-out data (outside evaluation): mounted by preparation and the scorer only. */
const HELDOUT_DIR = "/heldout";
/** The run's saved weights: written by the training, read-only to the model. */
const OUTPUT_DIR = "/output";
/** The scoring step's probe plan: written by the scorer, read by the probe, never by the model. */
const PLAN_DIR = "/plan";
const PIPES_DIR = "/pipes";
/** Hard timeout of the scoring and of the probe (the harness's --score-timeout default). */
const SCORE_TIMEOUT_SECONDS = 900;
/** Where the repository's prepared data is mounted (read-only in the trainer). */
const DATA_DIR = "/cache";
/** Where the fetched commit (source.tar) is mounted, read-only. */
const SOURCE_DIR = "/source";
/** Where the fetch container writes the commits of the repository's runs. */
const RUNS_DIR = "/runs";
const TOKEN_DIR = "/var/run/autoresearch/token";
const TERMINATION_LOG = "/dev/termination-log";
const PENDING_REASONS = new Set([
  "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
  "CreateContainerConfigError", "CreateContainerError",
]);

const hash = (s: string, n: number) => createHash("sha256").update(s).digest("hex").slice(0, n);

/** Deterministic Job name for a run id: a DNS-1123 label of at most 52 characters. */
export function jobNameFor(runId: string): string {
  const cleaned = runId.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 38).replace(/-+$/, "");
  return `ar-${cleaned || "run"}-${hash(runId, 8)}`;
}

/** A label value for a repository (at most 63 characters, alphanumerics, `-`, `_`, `.`). */
export function repoLabel(repo: RepoRef): string {
  const full = `${repo.owner}.${repo.repo}`.toLowerCase().replace(/[^a-z0-9._-]+/g, "-");
  if (full.length <= 63 && /^[a-z0-9]/.test(full) && /[a-z0-9]$/.test(full)) return full;
  return `${full.slice(0, 50).replace(/[^a-z0-9]+$/, "")}-${hash(full, 8)}`.replace(/^[^a-z0-9]+/, "r");
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Volume sources a template may give the pod (no host paths, no secrets, no tokens). */
const ALLOWED_VOLUME_SOURCES = new Set(["persistentVolumeClaim", "emptyDir", "configMap", "csi", "nfs", "ephemeral"]);

/**
 * Parse and check a Job template. Throws RunnerConfigError naming what is missing or not
 * allowed. Returns the parsed Job (the caller clones it per run).
 */
export function parseJobTemplate(text: string, source = "the Job template"): k8s.V1Job {
  let doc: unknown;
  try {
    doc = loadYaml(text, { schema: CORE_SCHEMA });
  } catch (err) {
    throw new RunnerConfigError(`${source} is not valid YAML: ${(err as Error).message}`);
  }
  const problems: string[] = [];
  if (!isObj(doc)) throw new RunnerConfigError(`${source} must be one YAML mapping (a batch/v1 Job)`);
  if (doc.apiVersion !== "batch/v1" || doc.kind !== "Job") problems.push("apiVersion must be batch/v1 and kind Job");
  const spec = isObj(doc.spec) ? doc.spec : undefined;
  const podTemplate = spec && isObj(spec.template) ? spec.template : undefined;
  const pod = podTemplate && isObj(podTemplate.spec) ? podTemplate.spec : undefined;
  if (!pod) problems.push("spec.template.spec (the pod) is missing");
  const containers = pod && Array.isArray(pod.containers) ? pod.containers.filter(isObj) : [];
  const trainer = containers.find((c) => c.name === TRAINER);
  if (!trainer) problems.push(`spec.template.spec.containers needs a container named "${TRAINER}" (the bot fills its arguments)`);
  else {
    if (typeof trainer.image !== "string" || !trainer.image) problems.push(`container "${TRAINER}" needs an image (the trainer image, see trainer/Dockerfile)`);
    if (trainer.args !== undefined) problems.push(`container "${TRAINER}" must not set args: the bot fills them per run`);
    if (Array.isArray(trainer.envFrom) && trainer.envFrom.length) problems.push(`container "${TRAINER}" must not use envFrom: the training container gets no Secret or ConfigMap environment`);
  }
  if (containers.length > 1) problems.push(`only the "${TRAINER}" container is allowed (sidecars would share the pod's network and volumes)`);
  if (pod && pod.restartPolicy !== undefined && pod.restartPolicy !== "Never") problems.push("spec.template.spec.restartPolicy must be Never (podFailurePolicy needs it)");
  if (pod && Array.isArray(pod.initContainers) && pod.initContainers.length) problems.push(`spec.template.spec.initContainers must be empty (the bot adds "${FETCH}")`);
  const volumes = pod && Array.isArray(pod.volumes) ? pod.volumes.filter(isObj) : [];
  for (const v of volumes) {
    const name = String(v.name);
    if ([WORKSPACE, SOURCE, PIPES, TRUSTED_WORKSPACE].includes(name)) problems.push(`volume name "${name}" is reserved for the bot`);
    const kinds = Object.keys(v).filter((k) => k !== "name");
    const kind = kinds[0] ?? "(none)";
    if (!ALLOWED_VOLUME_SOURCES.has(kind) && !(v.name === DATA && kind === "hostPath")) {
      problems.push(`volume "${name}" is a ${kind} volume: training pods may not mount host paths, Secrets or projected tokens`);
    }
    if (isObj(v.emptyDir) && v.emptyDir.sizeLimit === undefined) problems.push(`emptyDir volume "${name}" needs a sizeLimit (a run must not fill the node's disk)`);
  }
  const data = volumes.find((v) => v.name === DATA);
  if (pod && !data) problems.push(`spec.template.spec.volumes needs a volume named "${DATA}": the shared storage (a persistentVolumeClaim) where each repository's data is prepared and the fetched commits wait`);
  else if (data && isObj(data.emptyDir)) problems.push(`volume "${DATA}" must be shared storage (a persistentVolumeClaim), not an emptyDir: the fetch Job prepares into it and the training Job reads it`);
  if (pod && pod.hostNetwork === true) problems.push("hostNetwork is not allowed for training pods");
  if (pod && (pod.hostPID === true || pod.hostIPC === true)) problems.push("hostPID and hostIPC are not allowed for training pods");
  if (spec && spec.parallelism !== undefined && spec.parallelism !== 1) problems.push("spec.parallelism must be 1");
  if (spec && spec.completions !== undefined && spec.completions !== 1) problems.push("spec.completions must be 1");
  if (problems.length) throw new RunnerConfigError(`${source} cannot be used: ${problems.join("; ")}`);
  return doc as unknown as k8s.V1Job;
}

export interface RenderOptions {
  namespace: string;
  deadlineMarginSeconds: number;
  ttlSecondsAfterFinished: number;
  /** sizeLimit of the per-run scratch emptyDir; default 20Gi. */
  workspaceSizeLimit?: string;
  /** Longest fetch and data preparation, seconds (the fetch Job's deadline before the margin); default 3600. */
  prepareTimeoutSeconds?: number;
}

/** The folder of one repository on the data volume: its prepared data and fetched commits. */
export function repoFolder(repo: RepoRef): string {
  return repoLabel(repo);
}

/** What a Job of a run keeps about it (the fetch Job's annotation): the RunSpec without its token. */
const storedSpecSchema = z.object({
  runId: z.string(),
  repo: z.object({ owner: z.string(), repo: z.string() }),
  pull: z.number().int(),
  sha: z.string(),
  sourceUrl: z.string(),
  workdir: z.string(),
  trainCmd: z.string(),
  prepareCmd: z.string().nullable(),
  prepareFiles: z.array(z.string()),
  budgetSeconds: z.number(),
  evalAllowanceSeconds: z.number().default(120),
  seed: z.number().int().optional(),
  evaluation: z.object({ scoreCmd: z.string(), serveCmd: z.string(), sha: z.string(), url: z.string() }).optional(),
  timeoutSeconds: z.number().nullable(),
  urgent: z.boolean().optional(),
});

function storedSpec(spec: RunSpec): string {
  const { source, ...rest } = spec;
  return JSON.stringify({ ...rest, sourceUrl: source.url });
}

/** The RunSpec a fetch Job was made for (without the token it no longer needs), or null. */
export function specOfJob(job: k8s.V1Job): RunSpec | null {
  const raw = job.metadata?.annotations?.[ANNOTATION_SPEC];
  if (!raw) return null;
  try {
    const s = storedSpecSchema.parse(JSON.parse(raw));
    const { sourceUrl, ...rest } = s;
    return { ...rest, source: { url: sourceUrl, token: null } };
  } catch {
    return null;
  }
}

const GPU_RESOURCE = /(^|\/)gpu$|(^|\.)gpu\b/i;

function withoutGpus(resources: k8s.V1ResourceRequirements | undefined): k8s.V1ResourceRequirements | undefined {
  if (!resources) return undefined;
  const strip = (m: Record<string, string> | undefined) =>
    m ? Object.fromEntries(Object.entries(m).filter(([k]) => !GPU_RESOURCE.test(k))) : undefined;
  return { ...resources, requests: strip(resources.requests as Record<string, string>), limits: strip(resources.limits as Record<string, string>) };
}

const lockedSecurity = (c: k8s.V1Container): k8s.V1SecurityContext => ({
  ...c.securityContext,
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  privileged: false,
  capabilities: { drop: ["ALL"] },
});

/** The template's env for a container that runs the repository's code: nothing that looks like a credential. */
function safeEnv(env: k8s.V1EnvVar[] | undefined): k8s.V1EnvVar[] | undefined {
  if (!env) return undefined;
  return env.filter((e) => !/TOKEN|SECRET|PASSWORD|API_?KEY|CREDENTIAL/i.test(e.name) && !e.valueFrom?.secretKeyRef);
}

/** What each Job of a run does (label autoresearch.dev/role): fetch, train, score, probe. */
export type JobRole = "fetch" | "trainer" | "eval" | "probe";

/** The parts every Job of a run shares: names, labels, deadlines, failure policy, the locked-down pod. */
function baseJob(template: k8s.V1Job, spec: RunSpec, o: RenderOptions, name: string, role: JobRole, deadline: number): k8s.V1Job {
  const job = structuredClone(template);
  const labels = {
    [LABEL_MANAGED]: MANAGED_BY,
    [LABEL_REPO]: repoLabel(spec.repo),
    [LABEL_PULL]: String(spec.pull),
    [LABEL_RUN]: jobNameFor(spec.runId),
    [LABEL_ROLE]: role,
    // Pods that run the experiment's code: k8s/networkpolicy.yaml gives them no network at all.
    ...(role === "fetch" ? {} : { [LABEL_ISOLATED]: "true" }),
  };
  const annotations: Record<string, string> = {
    [ANNOTATION_RUN_ID]: spec.runId,
    [ANNOTATION_REPO]: `${spec.repo.owner}/${spec.repo.repo}`,
    [ANNOTATION_COMMIT]: spec.sha,
  };
  // Every Job of a run carries its spec (without the token): the next step is rendered from it.
  annotations[ANNOTATION_SPEC] = storedSpec(spec);
  job.metadata = {
    ...job.metadata,
    name,
    namespace: o.namespace,
    labels: { ...job.metadata?.labels, ...labels },
    annotations: { ...job.metadata?.annotations, ...annotations },
  };
  delete job.metadata.generateName;
  const js = job.spec!;
  // The template's own activeDeadlineSeconds is a cap the admin sets.
  js.activeDeadlineSeconds = js.activeDeadlineSeconds ? Math.min(js.activeDeadlineSeconds, deadline) : deadline;
  js.backoffLimit = 0;
  js.parallelism = 1;
  js.completions = 1;
  js.ttlSecondsAfterFinished ??= o.ttlSecondsAfterFinished;
  // Eviction and preemption are the cluster's doing, not the experiment's: run the pod again
  // without counting it; any other pod failure fails the Job (backoffLimit 0).
  js.podFailurePolicy = {
    rules: [{ action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] }],
  };
  const tpl = js.template;
  const { [ANNOTATION_SPEC]: _spec, ...podAnnotations } = annotations;
  void _spec;
  tpl.metadata = {
    ...tpl.metadata,
    labels: { ...tpl.metadata?.labels, ...labels },
    annotations: { ...tpl.metadata?.annotations, ...podAnnotations },
  };
  const pod = tpl.spec!;
  pod.restartPolicy = "Never";
  pod.automountServiceAccountToken = false;
  pod.enableServiceLinks = false;
  pod.hostNetwork = false;
  // Containers of one pod never see each other's processes (an evaluation pod's model and scorer).
  pod.shareProcessNamespace = false;
  pod.securityContext = { runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, ...pod.securityContext, runAsNonRoot: true, seccompProfile: pod.securityContext?.seccompProfile ?? { type: "RuntimeDefault" } };
  pod.volumes = [...(pod.volumes ?? []), { name: WORKSPACE, emptyDir: { sizeLimit: o.workspaceSizeLimit ?? "20Gi" } }];
  return job;
}

/** harness arguments the steps share: the source (the fetched archives), the commands, the data. */
function harnessArgs(spec: RunSpec): string[] {
  const args = ["--repo", `${SOURCE_DIR}/source.tar`, "--commit", spec.sha, "--workdir", spec.workdir || ".", "--train-cmd", spec.trainCmd];
  if (spec.prepareCmd) args.push("--prepare-cmd", spec.prepareCmd);
  for (const glob of spec.prepareFiles) args.push("--prepare-files", glob);
  args.push("--cache-dir", DATA_DIR, "--sandbox", "container");
  // Outside evaluation: preparation and scoring come from the trusted tree the fetch step saved.
  if (spec.evaluation) args.push(...evaluationArgs(spec.evaluation), "--eval-repo", `${SOURCE_DIR}/trusted.tar`);
  return args;
}

function evaluationArgs(e: NonNullable<RunSpec["evaluation"]>): string[] {
  return ["--score-cmd", e.scoreCmd, "--serve-cmd", e.serveCmd, "--eval-commit", e.sha];
}

/**
 * A run's folders on the data volume (`<repo>/runs/<name>/…`): the fetched archives (source),
 * the saved weights (output) and the probe plan (eval). Each container mounts only those it needs.
 */
function runFolder(spec: RunSpec, part: "source" | "output" | "eval"): string {
  return `${repoFolder(spec.repo)}/runs/${jobNameFor(spec.runId)}/${part}`;
}

/** What every container the bot adds runs from: the trainer's image (the harness), locked down, with its result in the termination message. */
function harnessContainer(trainer: k8s.V1Container) {
  return {
    image: trainer.image,
    imagePullPolicy: trainer.imagePullPolicy,
    ...(trainer.command ? { command: trainer.command } : {}),
    securityContext: lockedSecurity(trainer),
    terminationMessagePath: TERMINATION_LOG,
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
}

/** Where a run's scratch lives in its pods: HOME, TMPDIR and caches on the sized emptyDir. */
const SCRATCH_ENV: k8s.V1EnvVar[] = [
  { name: "HOME", value: WORKSPACE_DIR },
  { name: "TMPDIR", value: WORKSPACE_DIR },
  { name: "XDG_CACHE_HOME", value: `${WORKSPACE_DIR}/.cache` },
];

/**
 * The first Job of a run: the init container `fetch` downloads the commit with the run's read
 * token (the only container that mounts it) onto the data volume, then the container `prepare`
 * runs the repository's data preparation into the repository's data folder (or checks the data
 * prepared before). Its pods may reach GitHub (and, for preparation, the network policy's
 * hosts); neither container runs an experiment's code. Pure.
 */
export function renderFetchJob(template: k8s.V1Job, spec: RunSpec, o: RenderOptions): k8s.V1Job {
  const trainName = jobNameFor(spec.runId);
  const deadline = Math.ceil((o.prepareTimeoutSeconds ?? 3600) + o.deadlineMarginSeconds);
  const job = baseJob(template, spec, o, fetchJobNameFor(spec.runId), "fetch", deadline);
  const pod = job.spec!.template.spec!;
  const trainer = pod.containers.find((c) => c.name === TRAINER)!;
  const folder = repoFolder(spec.repo);
  if (spec.source.token) pod.volumes!.push({ name: SOURCE, secret: { secretName: secretNameFor(spec.runId), defaultMode: 0o400 } });
  const common = harnessContainer(trainer);
  const fetchArgs = [
    "--repo", spec.source.url, "--commit", spec.sha, "--fetch-only", `${RUNS_DIR}/${trainName}/source`,
    "--prune-root", RUNS_DIR, "--prune-after", "172800", "--termination-log", TERMINATION_LOG, "--run-id", spec.runId,
  ];
  // With outside evaluation the trusted tree (the default branch's commit) is fetched too.
  if (spec.evaluation) fetchArgs.push(...evaluationArgs(spec.evaluation), "--eval-repo", spec.evaluation.url);
  if (spec.source.token) fetchArgs.push("--token-file", `${TOKEN_DIR}/token`);
  pod.initContainers = [
    {
      name: FETCH,
      ...common,
      args: fetchArgs,
      env: SCRATCH_ENV,
      resources: { requests: { cpu: "100m", memory: "256Mi" }, limits: { cpu: "1", memory: "1Gi" } },
      volumeMounts: [
        { name: DATA, mountPath: RUNS_DIR, subPath: `${folder}/runs` },
        { name: WORKSPACE, mountPath: WORKSPACE_DIR },
        ...(spec.source.token ? [{ name: SOURCE, mountPath: TOKEN_DIR, readOnly: true }] : []),
      ],
    },
  ];
  pod.containers = [
    {
      name: PREPARE,
      ...common,
      args: [
        ...harnessArgs(spec), "--prepare-only", ...(spec.evaluation ? ["--heldout-root", HELDOUT_DIR] : []),
        "--termination-log", TERMINATION_LOG, "--run-id", spec.runId, "--heartbeat", "30",
      ],
      env: [...(safeEnv(trainer.env) ?? []), ...SCRATCH_ENV],
      resources: withoutGpus(trainer.resources),
      volumeMounts: [
        { name: DATA, mountPath: DATA_DIR, subPath: `${folder}/data` },
        ...(spec.evaluation ? [{ name: DATA, mountPath: HELDOUT_DIR, subPath: `${folder}/heldout` }] : []),
        { name: DATA, mountPath: SOURCE_DIR, subPath: runFolder(spec, "source"), readOnly: true },
        { name: WORKSPACE, mountPath: WORKSPACE_DIR },
      ],
    },
  ];
  return job;
}

/**
 * The second Job of a run, created once the fetch Job succeeded: the container `trainer` runs the
 * experiment on the fetched commit with the repository's prepared data mounted read-only, on a
 * pod that (with k8s/networkpolicy.yaml) can open no connection at all. It mounts no token, no
 * service account token, no other repository's folder and no other run's source. Pure.
 */
export function renderJob(template: k8s.V1Job, spec: RunSpec, o: RenderOptions): k8s.V1Job {
  const name = jobNameFor(spec.runId);
  const harnessTimeout = spec.timeoutSeconds ?? 2 * spec.budgetSeconds + 120;
  const job = baseJob(template, spec, o, name, "trainer", Math.ceil(harnessTimeout + o.deadlineMarginSeconds));
  const pod = job.spec!.template.spec!;
  const trainer = pod.containers.find((c) => c.name === TRAINER)!;
  const folder = repoFolder(spec.repo);
  const args = [...harnessArgs(spec), "--prepared-only", "--budget", String(spec.budgetSeconds), "--eval-allowance", String(spec.evalAllowanceSeconds ?? 120)];
  // Outside evaluation: the trainer only trains and saves its weights; the eval Jobs measure them.
  if (spec.evaluation) args.push("--score-later", "--output-dir", OUTPUT_DIR);
  if (spec.seed !== undefined) args.push("--seed", String(spec.seed));
  if (spec.timeoutSeconds) args.push("--timeout", String(spec.timeoutSeconds));
  args.push("--termination-log", TERMINATION_LOG, "--run-id", spec.runId, "--heartbeat", "30");
  trainer.args = args;
  trainer.securityContext = { ...lockedSecurity(trainer), readOnlyRootFilesystem: true };
  trainer.terminationMessagePath = TERMINATION_LOG;
  trainer.terminationMessagePolicy = "FallbackToLogsOnError";
  // The data volume, whatever the template mounted of it, is the repository's data folder, read-only.
  trainer.volumeMounts = [
    ...experimentMounts(trainer, spec, folder),
    ...(spec.evaluation ? [{ name: DATA, mountPath: OUTPUT_DIR, subPath: runFolder(spec, "output") }] : []),
  ];
  // The training container gets no credential: drop any env the template would pass that looks like one.
  trainer.env = experimentEnv(trainer);
  return job;
}

/** Where a container that runs the experiment's code sees the data (read-only), its commit and its scratch. */
function experimentMounts(c: k8s.V1Container, spec: RunSpec, folder: string): k8s.V1VolumeMount[] {
  return [
    ...(c.volumeMounts ?? []).filter((m) => m.name !== DATA),
    { name: DATA, mountPath: DATA_DIR, subPath: `${folder}/data`, readOnly: true },
    { name: DATA, mountPath: SOURCE_DIR, subPath: runFolder(spec, "source"), readOnly: true },
    { name: WORKSPACE, mountPath: WORKSPACE_DIR },
  ];
}

function experimentEnv(c: k8s.V1Container): k8s.V1EnvVar[] {
  return [...(safeEnv(c.env) ?? []).filter((e) => !SCRATCH_ENV.some((x) => x.name === e.name)), ...SCRATCH_ENV];
}

/**
 * The evaluation Jobs of a run with outside evaluation, created in turn once the training Job
 * succeeded. Each pod has two containers that share only a folder of two FIFOs:
 *   `model`  the experiment's --serve-cmd on the trainer's image and resources (the GPU), with
 *            its commit, the prepared data and its saved weights read-only: no held-out data, no
 *            probe plan, no network (k8s/networkpolicy.yaml), its own scratch;
 *   `score`  (step "score", Job <name>-eval) the default branch's scorer with the held-out data
 *            read-only; it writes val_bpb to its termination message and the probe plan to
 *            <repo>/runs/<name>/eval, which no model container mounts;
 *   `probe`  (step "probe", Job <name>-probe) the causality probe against a fresh model in a new
 *            pod: nothing of the scoring pod's model survives into it.
 * The trusted container has its own scratch volume (its unpacked scorer), no GPU. Pure.
 */
export function renderEvalJob(template: k8s.V1Job, spec: RunSpec, o: RenderOptions, step: "score" | "probe"): k8s.V1Job {
  if (!spec.evaluation) throw new Error(`run ${spec.runId} has no outside evaluation`);
  const name = step === "score" ? evalJobNameFor(spec.runId) : probeJobNameFor(spec.runId);
  const job = baseJob(template, spec, o, name, step === "score" ? "eval" : "probe", Math.ceil(SCORE_TIMEOUT_SECONDS + o.deadlineMarginSeconds));
  const pod = job.spec!.template.spec!;
  const trainer = pod.containers.find((c) => c.name === TRAINER)!;
  const folder = repoFolder(spec.repo);
  pod.volumes!.push(
    { name: PIPES, emptyDir: { sizeLimit: "1Mi" } },
    { name: TRUSTED_WORKSPACE, emptyDir: { sizeLimit: o.workspaceSizeLimit ?? "20Gi" } },
  );
  const pipes = { name: PIPES, mountPath: PIPES_DIR };
  const common = ["--termination-log", TERMINATION_LOG, "--run-id", spec.runId, "--score-timeout", String(SCORE_TIMEOUT_SECONDS)];
  const model: k8s.V1Container = {
    ...trainer,
    name: MODEL,
    args: [...harnessArgs(spec), "--prepared-only", "--serve-only", PIPES_DIR, "--output-dir", OUTPUT_DIR, "--score-timeout", String(SCORE_TIMEOUT_SECONDS)],
    securityContext: { ...lockedSecurity(trainer), readOnlyRootFilesystem: true },
    env: experimentEnv(trainer),
    volumeMounts: [...experimentMounts(trainer, spec, folder), { name: DATA, mountPath: OUTPUT_DIR, subPath: runFolder(spec, "output"), readOnly: true }, pipes],
  };
  const trustedMounts: k8s.V1VolumeMount[] = step === "score"
    ? [
        { name: DATA, mountPath: DATA_DIR, subPath: `${folder}/data`, readOnly: true },
        { name: DATA, mountPath: HELDOUT_DIR, subPath: `${folder}/heldout`, readOnly: true },
        { name: DATA, mountPath: SOURCE_DIR, subPath: runFolder(spec, "source"), readOnly: true },
        { name: DATA, mountPath: PLAN_DIR, subPath: runFolder(spec, "eval") },
      ]
    : [{ name: DATA, mountPath: PLAN_DIR, subPath: runFolder(spec, "eval"), readOnly: true }];
  const base = harnessContainer(trainer);
  const trusted: k8s.V1Container = {
    ...base,
    name: step === "score" ? SCORE : PROBE,
    args: step === "score"
      ? [...harnessArgs(spec), "--prepared-only", "--heldout-root", HELDOUT_DIR, "--score-only", PIPES_DIR, "--probe-plan", `${PLAN_DIR}/plan.json`, ...common]
      : ["--probe-only", PIPES_DIR, "--probe-plan", `${PLAN_DIR}/plan.json`, ...common],
    securityContext: { ...base.securityContext, readOnlyRootFilesystem: true },
    env: experimentEnv(trainer),
    resources: { requests: { cpu: "500m", memory: "512Mi" }, limits: withoutGpus(trainer.resources)?.limits },
    volumeMounts: [...trustedMounts, pipes, { name: TRUSTED_WORKSPACE, mountPath: WORKSPACE_DIR }],
  };
  // The trusted container first: the runner reads its termination message as the step's result.
  pod.containers = [trusted, model];
  return job;
}

export function secretNameFor(runId: string): string {
  return `${jobNameFor(runId)}-source`;
}

/** The fetch Job of a run: the train Job's name with `-fetch`. */
export function fetchJobNameFor(runId: string): string {
  return `${jobNameFor(runId)}-fetch`;
}

/** The scoring Job of a run with outside evaluation. */
export function evalJobNameFor(runId: string): string {
  return `${jobNameFor(runId)}-eval`;
}

/** The causality probe's Job of a run with outside evaluation. */
export function probeJobNameFor(runId: string): string {
  return `${jobNameFor(runId)}-probe`;
}

/**
 * The pod of a Job that counts: the one that succeeded, else the last one that was not disrupted
 * (evicted ones before it were run again; creationTimestamp has one-second resolution).
 */
function lastPod(pods: k8s.V1Pod[]): k8s.V1Pod | undefined {
  const at = (p: k8s.V1Pod) => (p.metadata?.creationTimestamp ? new Date(p.metadata.creationTimestamp).getTime() : 0);
  const sorted = [...pods].sort((a, b) => at(a) - at(b) || String(a.metadata?.name).localeCompare(String(b.metadata?.name)));
  const disrupted = (p: k8s.V1Pod) => (p.status?.conditions ?? []).some((c) => c.type === "DisruptionTarget" && c.status === "True");
  return sorted.find((p) => p.status?.phase === "Succeeded") ?? [...sorted].reverse().find((p) => !disrupted(p)) ?? sorted[sorted.length - 1];
}

function crash(reason: string, logTail = "", stage?: TrainerResult["stage"], status: TrainerResult["status"] = "crash"): TrainerResult {
  const r: TrainerResult = { status, val_bpb: null, exit_code: null, reason, log_tail: logTail, summary: {} };
  if (stage) r.stage = stage;
  return r;
}

/** A trained run whose evaluation step failed: the step's status and reason, no val_bpb. */
function evaluationFailed(trained: TrainerResult, step: TrainerResult): TrainerResult {
  return {
    ...trained,
    status: step.status === "ok" ? "crash" : step.status,
    val_bpb: null,
    reason: step.status === "ok" ? "the evaluation step answered without the figures it owes" : step.reason,
    log_tail: step.log_tail || trained.log_tail,
    // The evaluation's own infrastructure (its data, the model container's commit) is not the experiment's fault.
    stage: step.stage === "prepare" || step.stage === "fetch" ? step.stage : "eval",
    evaluation: "outside",
  };
}

/** A trained run, scored and probed: val_bpb as the scorer measured it, the training's own figures beside it. */
function measuredOutside(trained: TrainerResult, valBpb: number, scored: TrainerResult, probed: TrainerResult): TrainerResult {
  const seconds = (r: TrainerResult) => (typeof r.summary.eval_seconds === "number" ? r.summary.eval_seconds : 0);
  const training = trained.summary.training_seconds;
  return {
    ...trained,
    status: "ok",
    val_bpb: valBpb,
    stage: "train",
    evaluation: "outside",
    reason: `val_bpb ${valBpb.toFixed(6)} measured outside the experiment${typeof training === "number" ? ` after ${training} s of training` : ""}`,
    summary: {
      ...trained.summary,
      eval_seconds: Math.round((seconds(scored) + seconds(probed)) * 10) / 10,
      ...(typeof probed.summary.probe_windows === "number" ? { probe_windows: probed.summary.probe_windows } : {}),
      ...(typeof probed.summary.probe_max_difference === "number" ? { probe_max_difference: probed.summary.probe_max_difference } : {}),
    },
  };
}

function condition(job: k8s.V1Job, type: string): k8s.V1JobCondition | undefined {
  return job.status?.conditions?.find((c) => c.type === type && c.status === "True");
}

function isFinished(job: k8s.V1Job): boolean {
  return Boolean(condition(job, "Complete") || condition(job, "Failed"));
}

function statusCode(err: unknown): number | undefined {
  if (err instanceof k8s.ApiException) return err.code;
  const code = (err as { code?: unknown; statusCode?: unknown })?.code ?? (err as { statusCode?: unknown })?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** Last JSON object line of a log (the harness prints its result last). */
function resultFromLog(log: string): TrainerResult | undefined {
  const lines = log.trim().split("\n").reverse();
  for (const line of lines.slice(0, 20)) {
    const t = line.trim();
    if (!t.startsWith("{")) continue;
    try {
      return parseHarnessResultText(t, "the pod log");
    } catch {
      // not the result line
    }
  }
  return undefined;
}

/** The informer on a runner's Jobs: events, start and stop, and the cache of what it has seen. */
type JobInformer = k8s.Informer<k8s.V1Job> & k8s.ObjectCache<k8s.V1Job>;
/** First and longest delay before an informer that failed is started again. */
const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;

export class KubernetesRunner implements RunnerPort {
  readonly name = "kubernetes";
  readonly slots: number;
  private readonly batch: k8s.BatchV1Api;
  private readonly core: k8s.CoreV1Api;
  private readonly ns: string;
  private readonly listeners: ((runId: string, repo: RepoRef) => void)[] = [];
  /** uid of every finished Job already reported to the listeners (forgotten when the Job is deleted). */
  private readonly reported = new Set<string>();
  /** The informer on the managed Jobs (list, then watch from its resourceVersion); null when stopped. */
  private informer: JobInformer | null = null;
  /** When the informer last showed it was alive: a (re)connect, a list, an event. */
  private lastSign = 0;
  /** Errors of the informer in a row (for the restart delay) and in all. */
  private failuresInRow = 0;
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private resyncing: Promise<void> | null = null;
  private readonly o: Required<Omit<KubernetesRunnerOptions, "logger" | "active">> & { logger?: RunnerLogger; active?: () => boolean };

  /** An API error for a message: its status and message, or the request timeout it ran into. */
  private describe(err: unknown): string {
    return describe(err, this.o.requestTimeoutMs);
  }

  constructor(opts: KubernetesRunnerOptions) {
    this.o = {
      slots: 8,
      deadlineMarginSeconds: 900,
      startMarginSeconds: 300,
      requestTimeoutMs: 30_000,
      pendingTimeoutMs: 15 * 60_000,
      resyncMs: 60_000,
      watchTimeoutSeconds: 300,
      ttlSecondsAfterFinished: 86_400,
      workspaceSizeLimit: "20Gi",
      ...opts,
    };
    this.slots = this.o.slots;
    this.ns = opts.namespace;
    this.batch = apiClient(opts.kubeConfig, k8s.BatchV1Api, this.o.requestTimeoutMs);
    this.core = apiClient(opts.kubeConfig, k8s.CoreV1Api, this.o.requestTimeoutMs);
  }

  /** Problems that keep this repository's runs from starting (an unusable template). */
  async validate(repo: RepoRef): Promise<string[]> {
    try {
      await this.templateFor(repo);
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  }

  private async templateFor(repo: RepoRef): Promise<k8s.V1Job> {
    let text: string;
    try {
      text = await this.o.template(repo);
    } catch (err) {
      throw new RunnerConfigError(`the Job template could not be read: ${(err as Error).message}`);
    }
    return parseJobTemplate(text);
  }

  private renderOptions(): RenderOptions {
    return {
      namespace: this.ns,
      deadlineMarginSeconds: this.o.deadlineMarginSeconds,
      ttlSecondsAfterFinished: this.o.ttlSecondsAfterFinished,
      workspaceSizeLimit: this.o.workspaceSizeLimit,
    };
  }

  /** The training Job of a run (created once its fetch Job succeeded). */
  render(template: k8s.V1Job, spec: RunSpec): k8s.V1Job {
    return renderJob(template, spec, this.renderOptions());
  }

  /** A scoring or probe Job of a run with outside evaluation (created after its training). */
  renderEval(template: k8s.V1Job, spec: RunSpec, step: "score" | "probe"): k8s.V1Job {
    return renderEvalJob(template, spec, this.renderOptions(), step);
  }

  /** The fetch Job of a run (created at submit). */
  renderFetch(template: k8s.V1Job, spec: RunSpec): k8s.V1Job {
    return renderFetchJob(template, spec, this.renderOptions());
  }

  /** A Job of this run id for this commit; a Job of the id for another commit is removed (null). */
  private async ownJob(name: string, runId: string, sha: string | null): Promise<k8s.V1Job | null> {
    const job = await this.readJob(name);
    if (!job) return null;
    const a = job.metadata?.annotations ?? {};
    if (a[ANNOTATION_RUN_ID] === runId && (sha === null || a[ANNOTATION_COMMIT] === sha)) return job;
    if (sha !== null && a[ANNOTATION_RUN_ID] === runId) {
      // The same run id for another commit (a number reused after a record was lost): its
      // result must never be read as this run's.
      this.o.logger?.warn(`run ${runId}: Job ${name} measures ${a[ANNOTATION_COMMIT]?.slice(0, 12)}, not ${sha.slice(0, 12)}; replacing it`);
      await this.deleteRun(runId);
    }
    return null;
  }

  async submit(spec: RunSpec): Promise<void> {
    if (await this.ownJob(jobNameFor(spec.runId), spec.runId, spec.sha)) return;
    const fetch = await this.ownJob(fetchJobNameFor(spec.runId), spec.runId, spec.sha);
    if (fetch) {
      // Submitted before; a submit cut short between the Job and its Secret left the pod
      // waiting for the token: it gets it now (a 409, when it has it, is done).
      if (spec.source.token && !isFinished(fetch)) await this.giveToken(spec, fetch);
      return;
    }
    const body = this.renderFetch(await this.templateFor(spec.repo), spec);
    const name = body.metadata!.name!;
    let job: k8s.V1Job;
    try {
      job = await this.batch.createNamespacedJob({ namespace: this.ns, body });
      this.o.logger?.info(`run ${spec.runId}: created fetch Job ${this.ns}/${name}`);
    } catch (err) {
      if (statusCode(err) !== 409) throw new Error(`creating Job ${name}: ${this.describe(err)}`);
      const again = await this.readJob(name);
      if (!again) throw new Error(`creating Job ${name}: it exists and then vanished`);
      job = again;
    }
    if (spec.source.token) await this.giveToken(spec, job);
  }

  /**
   * The run's Secret, after its fetch Job (the Secret is owned by the Job, so it needs the Job's
   * uid). The Job's pod cannot start without it and would wait until the pending timeout, so a
   * Secret that cannot be created undoes the submit: the Job is deleted, and the Secret too in
   * case it was created and only the answer lost (its owner reference lets the cluster collect
   * it otherwise). The run is then missing, and the next pass submits it afresh, Job and Secret
   * together, under the same names: never two Jobs, never a Secret left behind.
   */
  private async giveToken(spec: RunSpec, job: k8s.V1Job): Promise<void> {
    try {
      await this.putSecret(spec, job);
    } catch (err) {
      const undone = await this.deleteRun(spec.runId).then(
        () => "the fetch Job was deleted, so the run is submitted again, Job and Secret, on the next pass",
        (e: unknown) => `deleting the fetch Job failed too (${(e as Error).message}); the next submit creates the Secret, or the run fails at the pending timeout`,
      );
      throw new Error(`run ${spec.runId}: ${(err as Error).message}; ${undone}`);
    }
  }

  /** Create the training Job of a run whose fetch Job succeeded (idempotent: a 409 is done). */
  private async startTraining(fetch: k8s.V1Job): Promise<void> {
    const spec = specOfJob(fetch);
    if (!spec) throw new Error(`Job ${fetch.metadata?.name}: its run spec annotation is missing or unreadable`);
    const body = this.render(await this.templateFor(spec.repo), spec);
    try {
      await this.batch.createNamespacedJob({ namespace: this.ns, body });
      this.o.logger?.info(`run ${spec.runId}: fetched and prepared; created training Job ${this.ns}/${body.metadata!.name}`);
    } catch (err) {
      if (statusCode(err) !== 409) throw new Error(`creating Job ${body.metadata!.name}: ${this.describe(err)}`);
    }
  }

  /** The read token, owned by the fetch Job (garbage-collected with it). */
  private async putSecret(spec: RunSpec, job: k8s.V1Job): Promise<void> {
    const name = secretNameFor(spec.runId);
    const body: k8s.V1Secret = {
      apiVersion: "v1",
      kind: "Secret",
      type: "Opaque",
      metadata: {
        name,
        namespace: this.ns,
        labels: { [LABEL_MANAGED]: MANAGED_BY, [LABEL_REPO]: repoLabel(spec.repo), [LABEL_RUN]: jobNameFor(spec.runId) },
        ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: job.metadata!.name!, uid: job.metadata!.uid!, blockOwnerDeletion: false }],
      },
      stringData: { token: spec.source.token! },
    };
    try {
      await this.core.createNamespacedSecret({ namespace: this.ns, body });
    } catch (err) {
      if (statusCode(err) !== 409) throw new Error(`creating Secret ${name}: ${this.describe(err)}`);
    }
  }

  async observe(runId: string): Promise<RunObservation> {
    const train = await this.ownJob(jobNameFor(runId), runId, null);
    if (train) {
      const pods = await this.podsOf(train);
      if (isFinished(train)) {
        const result = await this.resultOf(train, pods);
        const spec = specOfJob(train);
        // With outside evaluation a training that did not fail is measured by the evaluation
        // Jobs, whatever its container wrote about itself (it runs the experiment's code).
        if (spec?.evaluation && result.status === "ok") {
          const overrun = this.overran(spec, pods);
          if (overrun) return { phase: "finished", runId, result: { ...result, status: "over_budget", val_bpb: null, reason: overrun, evaluation: "outside" } };
          return this.observeEvaluation(spec, result);
        }
        if (result.evaluation === "pending" || result.evaluation === "probe") {
          return { phase: "finished", runId, result: crash("the training Job reported a result of an evaluation step this run does not have", result.log_tail, "train") };
        }
        return { phase: "finished", runId, result };
      }
      const stuck = this.stuck(train, pods);
      if (stuck) return { phase: "finished", runId, result: crash(stuck, "", "fetch") };
      const running = pods.some((p) => p.status?.phase === "Running");
      return { phase: running ? "running" : "pending", runId };
    }
    const fetch = await this.ownJob(fetchJobNameFor(runId), runId, null);
    if (!fetch) return { phase: "missing", runId };
    if (condition(fetch, "Complete")) {
      await this.startTraining(fetch);
      return { phase: "pending", runId };
    }
    const pods = await this.podsOf(fetch);
    if (isFinished(fetch)) return { phase: "finished", runId, result: await this.fetchResultOf(fetch, pods) };
    const stuck = this.stuck(fetch, pods);
    if (stuck) return { phase: "finished", runId, result: crash(stuck, "", "fetch") };
    return { phase: "pending", runId };
  }

  /**
   * Why a training container broke its budget by the cluster's own clock (the kubelet's start
   * and finish times, which the experiment cannot write), or null: the harness beside the
   * experiment measures the budget too, but its result is only as honest as its container.
   */
  private overran(spec: RunSpec, pods: k8s.V1Pod[]): string | null {
    const term = lastPod(pods)?.status?.containerStatuses?.find((s) => s.name === TRAINER)?.state?.terminated;
    if (!term?.startedAt || !term.finishedAt) return null;
    const ran = (new Date(term.finishedAt).getTime() - new Date(term.startedAt).getTime()) / 1000;
    const allowed = spec.budgetSeconds + (spec.evalAllowanceSeconds ?? 120) + this.o.startMarginSeconds;
    if (!(ran > allowed)) return null;
    return `the training container ran ${Math.round(ran)} s by the cluster's clock, more than the budget of ${spec.budgetSeconds} s plus ${spec.evalAllowanceSeconds ?? 120} s allowance and ${this.o.startMarginSeconds} s to start; whatever it reported, this is not a measurement`;
  }

  /**
   * A trained run with outside evaluation: its scoring Job, then its probe Job, each created when
   * the step before succeeded; finished when the probe has answered or a step failed.
   */
  private async observeEvaluation(spec: RunSpec, trained: TrainerResult): Promise<RunObservation> {
    const runId = spec.runId;
    const probeJob = await this.ownJob(probeJobNameFor(runId), runId, spec.sha);
    const scoreJob = await this.ownJob(evalJobNameFor(runId), runId, spec.sha);
    if (!scoreJob) {
      await this.createStep(spec, "score");
      return { phase: "running", runId };
    }
    const scored = await this.stepResult(scoreJob, SCORE);
    if (!scored) return this.stepPhase(scoreJob, runId);
    if (scored.status !== "ok" || typeof scored.val_bpb !== "number") return { phase: "finished", runId, result: evaluationFailed(trained, scored) };
    if (!probeJob) {
      await this.createStep(spec, "probe");
      return { phase: "running", runId };
    }
    const probed = await this.stepResult(probeJob, PROBE);
    if (!probed) return this.stepPhase(probeJob, runId);
    if (probed.status !== "ok" || probed.evaluation !== "probe") return { phase: "finished", runId, result: evaluationFailed(trained, probed) };
    return { phase: "finished", runId, result: measuredOutside(trained, scored.val_bpb, scored, probed) };
  }

  private async stepPhase(job: k8s.V1Job, runId: string): Promise<RunObservation> {
    const pods = await this.podsOf(job);
    const stuck = this.stuck(job, pods);
    if (stuck) return { phase: "finished", runId, result: crash(stuck, "", "eval") };
    return { phase: pods.some((p) => p.status?.phase === "Running") ? "running" : "pending", runId };
  }

  /** Create the scoring or the probe Job of a run (idempotent: a 409 is done). */
  private async createStep(spec: RunSpec, step: "score" | "probe"): Promise<void> {
    const body = this.renderEval(await this.templateFor(spec.repo), spec, step);
    try {
      await this.batch.createNamespacedJob({ namespace: this.ns, body });
      this.o.logger?.info(`run ${spec.runId}: ${step === "score" ? "trained; created scoring" : "scored; created probe"} Job ${this.ns}/${body.metadata!.name}`);
    } catch (err) {
      if (statusCode(err) !== 409) throw new Error(`creating Job ${body.metadata!.name}: ${this.describe(err)}`);
    }
  }

  /**
   * The result of an evaluation step, read from its trusted container's termination message as
   * soon as that container ended (the model beside it may still be stopping); null while it runs.
   */
  private async stepResult(job: k8s.V1Job, container: string): Promise<TrainerResult | null> {
    const pods = await this.podsOf(job);
    const pod = lastPod(pods);
    const term = pod?.status?.containerStatuses?.find((s) => s.name === container)?.state?.terminated;
    const what = container === SCORE ? "scoring" : "causality probe";
    if (term) {
      const parsed = this.parseMessage(term.message);
      if (parsed) return parsed;
      const r = crash(`the ${what} container ended without a result (exit ${term.exitCode}${term.reason ? `, ${term.reason}` : ""})`, await this.logTail(pod, container), "eval");
      r.exit_code = term.exitCode;
      return r;
    }
    if (!isFinished(job)) return null;
    const failed = condition(job, "Failed");
    if (failed?.reason === "DeadlineExceeded") return crash(`the ${what} Job ran past its activeDeadlineSeconds (${job.spec?.activeDeadlineSeconds} s)`, await this.logTail(pod, MODEL), "eval", "timeout");
    return crash(`the ${what} Job ended without a result (${failed?.reason ?? "its pod is gone"})`, "", "eval");
  }

  /** Why the fetch Job failed: always an infrastructure failure (stage fetch or prepare). */
  private async fetchResultOf(job: k8s.V1Job, pods: k8s.V1Pod[]): Promise<TrainerResult> {
    const pod = lastPod(pods);
    const failed = condition(job, "Failed");
    if (failed?.reason === "DeadlineExceeded") {
      return crash(`fetching and preparing the data took longer than the fetch Job's activeDeadlineSeconds (${job.spec?.activeDeadlineSeconds} s)`, await this.logTail(pod, PREPARE), "prepare");
    }
    const init = pod?.status?.initContainerStatuses?.find((s) => s.state?.terminated && s.state.terminated.exitCode !== 0);
    if (init) {
      const parsed = this.parseMessage(init.state!.terminated!.message);
      if (parsed) return { ...parsed, stage: "fetch", status: "crash" };
      return crash(`fetching the repository failed (init container exit ${init.state!.terminated!.exitCode}): ${init.state!.terminated!.message ?? ""}`.trim(), "", "fetch");
    }
    const term = pod?.status?.containerStatuses?.find((s) => s.name === PREPARE)?.state?.terminated;
    if (term?.reason === "OOMKilled") return crash(`OOMKilled: preparing the data exceeded the memory limit (exit ${term.exitCode})`, await this.logTail(pod, PREPARE), "prepare");
    if (term) {
      const parsed = this.parseMessage(term.message);
      if (parsed) return { ...parsed, stage: parsed.stage === "fetch" ? "fetch" : "prepare", status: "crash" };
      return crash(`preparing the data failed (exit ${term.exitCode}${term.reason ? `, ${term.reason}` : ""})`, await this.logTail(pod, PREPARE), "prepare");
    }
    return crash(`the fetch Job failed (${failed?.reason ?? "no reason"}: ${failed?.message ?? ""})`.trim(), "", "fetch");
  }

  /** A reason when the run has been unable to start for longer than pendingTimeoutMs. */
  private stuck(job: k8s.V1Job, pods: k8s.V1Pod[]): string | null {
    const created = job.metadata?.creationTimestamp ? new Date(job.metadata.creationTimestamp).getTime() : Date.now();
    const waited = Date.now() - created;
    if (waited < this.o.pendingTimeoutMs) return null;
    // Suspended: held in a queue (Kueue) until admitted; waiting there is the queue's policy.
    if (job.spec?.suspend) return null;
    if (pods.some((p) => p.status?.phase === "Running" || p.status?.phase === "Succeeded")) return null;
    const secs = Math.round(waited / 1000);
    for (const p of pods) {
      const unsched = p.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
      if (unsched) return `the pod could not be scheduled for ${secs} s (${unsched.reason ?? "Unschedulable"}: ${unsched.message ?? "no message"}); check the template's GPU request, node selector and tolerations`;
      const statuses = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])];
      const waiting = statuses.find((s) => s.state?.waiting?.reason && PENDING_REASONS.has(s.state.waiting.reason));
      if (waiting) return `the container ${waiting.name} could not start for ${secs} s (${waiting.state!.waiting!.reason}: ${waiting.state!.waiting!.message ?? "no message"}); check the template's image`;
    }
    return `the Job had no running pod for ${secs} s (queued by the cluster, e.g. Kueue, or no pod created)`;
  }

  private async resultOf(job: k8s.V1Job, pods: k8s.V1Pod[]): Promise<TrainerResult> {
    const failed = condition(job, "Failed");
    const pod = lastPod(pods);
    const initFailed = pod?.status?.initContainerStatuses?.find((s) => s.state?.terminated && s.state.terminated.exitCode !== 0);
    const trainer = pod?.status?.containerStatuses?.find((s) => s.name === TRAINER);
    const term = trainer?.state?.terminated;
    if (failed?.reason === "DeadlineExceeded") {
      const r = crash(`the Job ran past its activeDeadlineSeconds (${job.spec?.activeDeadlineSeconds} s) and was stopped by Kubernetes`, await this.logTail(pod, TRAINER), undefined, "timeout");
      r.stage = "train";
      return r;
    }
    if (initFailed) {
      const parsed = this.parseMessage(initFailed.state!.terminated!.message);
      if (parsed) return parsed;
      return crash(`fetching the repository failed (init container exit ${initFailed.state!.terminated!.exitCode}): ${initFailed.state!.terminated!.message ?? ""}`.trim(), "", "fetch");
    }
    if (term?.reason === "OOMKilled") {
      const r = crash(`OOMKilled: the trainer container exceeded its memory limit (exit ${term.exitCode}); raise the template's memory limit or make the model smaller`, await this.logTail(pod, TRAINER), "train", "oom");
      r.exit_code = term.exitCode;
      return r;
    }
    if (term) {
      const parsed = this.parseMessage(term.message) ?? resultFromLog(await this.logTail(pod, TRAINER, 50));
      if (parsed) return parsed;
      const r = crash(`the trainer container ended without a result (exit ${term.exitCode}${term.reason ? `, ${term.reason}` : ""})`, await this.logTail(pod, TRAINER));
      r.exit_code = term.exitCode;
      return r;
    }
    if (failed) return crash(`the Job failed (${failed.reason ?? "no reason"}: ${failed.message ?? ""})`.trim(), "", "fetch");
    return crash("the Job finished but its pod is gone (no termination message to read)", "", "fetch");
  }

  private parseMessage(message: string | undefined): TrainerResult | undefined {
    if (!message?.trim()) return undefined;
    try {
      return parseHarnessResultText(message.trim(), "the termination message");
    } catch {
      return resultFromLog(message);
    }
  }

  private async logTail(pod: k8s.V1Pod | undefined, container: string, lines = 80): Promise<string> {
    if (!pod?.metadata?.name) return "";
    try {
      const log = await this.core.readNamespacedPodLog({ name: pod.metadata.name, namespace: this.ns, container, tailLines: lines });
      return typeof log === "string" ? log.slice(-4000) : "";
    } catch {
      return "";
    }
  }

  private async readJob(name: string): Promise<k8s.V1Job | null> {
    try {
      return await this.batch.readNamespacedJob({ name, namespace: this.ns });
    } catch (err) {
      if (statusCode(err) === 404) return null;
      throw new Error(`reading Job ${name}: ${this.describe(err)}`);
    }
  }

  private async podsOf(job: k8s.V1Job): Promise<k8s.V1Pod[]> {
    let list: k8s.V1PodList;
    try {
      list = await this.core.listNamespacedPod({ namespace: this.ns, labelSelector: `job-name=${job.metadata!.name}` });
    } catch (err) {
      throw new Error(`listing the pods of Job ${job.metadata!.name}: ${this.describe(err)}`);
    }
    const uid = job.metadata?.uid;
    return list.items.filter((p) => (p.metadata?.labels?.["controller-uid"] ?? uid) === uid);
  }

  async cancel(runId: string): Promise<void> {
    await this.deleteRun(runId);
    this.o.logger?.info(`run ${runId}: cancelled (Job deleted)`);
  }

  async cleanup(runId: string): Promise<void> {
    await this.deleteRun(runId);
  }

  private async deleteRun(runId: string): Promise<void> {
    // The fetch Job first: a complete fetch Job whose training Job is gone starts that training
    // (report), so a deletion cut short must never leave it alone behind.
    for (const name of [fetchJobNameFor(runId), jobNameFor(runId), evalJobNameFor(runId), probeJobNameFor(runId)]) {
      try {
        await this.batch.deleteNamespacedJob({ name, namespace: this.ns, propagationPolicy: "Background" });
      } catch (err) {
        if (statusCode(err) !== 404) throw new Error(`deleting Job ${name}: ${this.describe(err)}`);
      }
    }
    try {
      await this.core.deleteNamespacedSecret({ name: secretNameFor(runId), namespace: this.ns });
    } catch (err) {
      if (statusCode(err) !== 404) throw new Error(`deleting Secret ${secretNameFor(runId)}: ${this.describe(err)}`);
    }
  }

  async list(repo: RepoRef): Promise<string[]> {
    let jobs: k8s.V1JobList;
    try {
      jobs = await this.batch.listNamespacedJob({ namespace: this.ns, labelSelector: `${LABEL_MANAGED}=${MANAGED_BY},${LABEL_REPO}=${repoLabel(repo)}` });
    } catch (err) {
      throw new Error(`listing the Jobs of ${repo.owner}/${repo.repo}: ${this.describe(err)}`);
    }
    const full = `${repo.owner}/${repo.repo}`;
    const ids = jobs.items.flatMap((j) => {
      const a = j.metadata?.annotations ?? {};
      return a[ANNOTATION_REPO] === full && a[ANNOTATION_RUN_ID] ? [a[ANNOTATION_RUN_ID]] : [];
    });
    return [...new Set(ids)];
  }

  onFinished(listener: (runId: string, repo: RepoRef) => void): void {
    this.listeners.push(listener);
  }

  /**
   * Watch the managed Jobs with client-node's informer (a list, then a watch from its
   * resourceVersion, resumed when the API server ends it and relisted after 410 Gone) and report
   * finished ones to the listeners; go over the cached Jobs every resyncMs.
   */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => void this.resync(), this.o.resyncMs);
    this.timer.unref();
    this.informer = this.makeJobInformer();
    this.begin(this.informer);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const informer = this.informer;
    this.informer = null;
    void informer?.stop();
  }

  private makeJobInformer(): JobInformer {
    const labelSelector = `${LABEL_MANAGED}=${MANAGED_BY}`;
    // The informer adds only watch, resourceVersion and labelSelector to this path. Its watch
    // request has no deadline of its own, so the API server is asked to end each watch after
    // watchTimeoutSeconds (the informer resumes it, which shows it alive) and to send
    // bookmarks, which keep the resourceVersion to resume from recent in a quiet namespace.
    const watchPath = `/apis/batch/v1/namespaces/${encodeURIComponent(this.ns)}/jobs?timeoutSeconds=${Math.max(1, Math.round(this.o.watchTimeoutSeconds))}&allowWatchBookmarks=true`;
    const informer: JobInformer = k8s.makeInformer<k8s.V1Job>(
      this.o.kubeConfig,
      watchPath,
      async () => {
        let list: k8s.V1JobList;
        try {
          list = await this.batch.listNamespacedJob({ namespace: this.ns, labelSelector });
        } catch (err) {
          throw new Error(`listing the Jobs in ${this.ns}: ${this.describe(err)}`);
        }
        // Stopped meanwhile (closed, or replaced): it must not open a watch nobody will stop.
        if (informer !== this.informer) throw new Error("the informer was stopped");
        this.alive(informer);
        return list;
      },
      labelSelector,
    );
    const current = () => {
      if (informer === this.informer) return true;
      // A retired informer whose watch came up after it was stopped: stop it again, which now
      // cuts that watch.
      void informer.stop();
      return false;
    };
    const seen = (job: k8s.V1Job) => {
      if (!current()) return;
      this.alive(informer);
      if (isFinished(job)) this.report(job);
    };
    informer.on("add", seen);
    informer.on("update", seen);
    informer.on("delete", (job) => {
      if (!current()) return;
      this.alive(informer);
      this.reported.delete(job.metadata?.uid ?? job.metadata?.name ?? "");
    });
    informer.on("connect", () => {
      if (current()) this.alive(informer);
    });
    informer.on("error", (err: unknown) => this.failed(informer, err));
    return informer;
  }

  /**
   * The informer stops at an error (410 Gone aside, which it relists itself): start it again
   * after a delay that grows while the API server keeps failing.
   */
  private failed(informer: JobInformer, err: unknown): void {
    if (informer !== this.informer || this.closed) return;
    this.failures++;
    const delay = Math.min(RESTART_MIN_MS * 2 ** this.failuresInRow, RESTART_MAX_MS);
    this.failuresInRow++;
    this.o.logger?.warn(`kubernetes runner: watching the Jobs failed (${this.describe(err)}); starting again in ${delay} ms`);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (informer === this.informer && !this.closed) this.begin(informer);
    }, delay);
    this.restartTimer.unref();
  }

  /** (Re)start the informer: from its last resourceVersion, or with a list when it has none. */
  private begin(informer: JobInformer): void {
    this.alive(informer);
    const failures = this.failures;
    informer.start().then(
      () => {
        // Connected without an error: the next error waits the shortest delay again.
        if (this.failures === failures) this.failuresInRow = 0;
      },
      (err: unknown) => this.failed(informer, err),
    );
  }

  private alive(informer: JobInformer): void {
    if (informer === this.informer) this.lastSign = Date.now();
  }

  /**
   * Go over the cached Jobs: report the finished ones (reported once per Job) and the runs that
   * have waited past the pending timeout, which no event announces. An informer that has shown
   * no sign of life for longer than a watch may last is replaced (a watch request that the API
   * server accepted and never answered holds the informer, which cannot cut it).
   */
  resync(): Promise<void> {
    // (finally runs after this assignment even when the pass ends without waiting on anything)
    this.resyncing ??= this.goOver().finally(() => {
      this.resyncing = null;
    });
    return this.resyncing;
  }

  private async goOver(): Promise<void> {
    try {
      const informer = this.informer;
      if (!informer || this.closed) return;
      const silent = Date.now() - this.lastSign;
      if (!this.restartTimer && silent > this.o.watchTimeoutSeconds * 1000 + this.o.requestTimeoutMs) {
        this.o.logger?.warn(`kubernetes runner: no word from the Job watch for ${Math.round(silent / 1000)} s; listing and watching afresh`);
        this.informer = this.makeJobInformer();
        void informer.stop();
        this.begin(this.informer);
        return;
      }
      for (const job of informer.list()) {
        if (this.closed) return;
        if (isFinished(job)) this.report(job);
        else if (this.pendingTooLong(job)) {
          const runId = job.metadata?.annotations?.[ANNOTATION_RUN_ID];
          if (runId && (await this.observe(runId)).phase === "finished") this.report(job);
        }
      }
    } catch (err) {
      this.o.logger?.warn(`kubernetes runner: going over the Jobs failed: ${this.describe(err)}`);
    }
  }

  private pendingTooLong(job: k8s.V1Job): boolean {
    const created = job.metadata?.creationTimestamp ? new Date(job.metadata.creationTimestamp).getTime() : Date.now();
    return Date.now() - created >= this.o.pendingTimeoutMs;
  }

  private report(job: k8s.V1Job): void {
    const uid = job.metadata?.uid ?? job.metadata?.name ?? "";
    const a = job.metadata?.annotations ?? {};
    const runId = a[ANNOTATION_RUN_ID];
    const [owner, repo] = (a[ANNOTATION_REPO] ?? "").split("/");
    if (!runId || !owner || !repo || this.reported.has(uid)) return;
    if (this.o.active && !this.o.active()) return; // the leader's runner goes on with it
    this.reported.add(uid);
    if (job.metadata?.labels?.[LABEL_ROLE] === "fetch" && condition(job, "Complete")) {
      // Fetched and prepared: the run goes on with its training Job (a pass's observe() does the
      // same, so a failure here is made up for).
      void this.startTraining(job).catch((err) => this.o.logger?.warn(`run ${runId}: the training Job could not be created yet: ${this.describe(err)}`));
      return;
    }
    if (specOfJob(job)?.evaluation && job.metadata?.labels?.[LABEL_ROLE] !== "probe") {
      // A step of an outside evaluation ended: observe() starts the next one, or finds the run finished.
      void this.observe(runId)
        .then((o) => o.phase === "finished" && this.notify(runId, owner, repo))
        .catch((err) => this.o.logger?.warn(`run ${runId}: the next evaluation step could not be started yet: ${this.describe(err)}`));
      return;
    }
    this.notify(runId, owner, repo);
  }

  private notify(runId: string, owner: string, repo: string): void {
    for (const l of this.listeners) {
      try {
        l(runId, { owner, repo });
      } catch (err) {
        this.o.logger?.error(`onFinished listener failed for ${runId}: ${this.describe(err)}`);
      }
    }
  }
}

/**
 * An API client like KubeConfig.makeApiClient's, whose every request is aborted after
 * `timeoutMs`: client-node sets no timeout of its own, and a request the API server never
 * answers would hold a pass (or the informer's list, and the informer with it) for good.
 */
export function apiClient<T>(kc: k8s.KubeConfig, Api: new (config: k8s.Configuration) => T, timeoutMs: number): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  const timeout: k8s.Middleware = {
    pre: async (ctx) => {
      ctx.setSignal(AbortSignal.timeout(timeoutMs));
      return ctx;
    },
    post: async (res) => res,
  };
  return new Api(k8s.createConfiguration({ baseServer: new k8s.ServerConfiguration(cluster.server, {}), authMethods: { default: kc }, promiseMiddleware: [timeout] }));
}

function describe(err: unknown, timeoutMs?: number): string {
  // The request's own deadline (apiClient's signal): node-fetch reports it as an AbortError.
  if (err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError")) {
    return `timed out: the Kubernetes API server did not answer within ${timeoutMs ?? "the request timeout of"} ms`;
  }
  if (err instanceof k8s.ApiException) {
    // The body of a status the client has no model for (a 500) is the API server's Status as text.
    let body = err.body as unknown;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        // plain text
      }
    }
    const msg = typeof body === "string" ? body : (body as { message?: unknown } | undefined)?.message;
    return `HTTP ${err.code}${typeof msg === "string" && msg ? `: ${msg.slice(0, 1000)}` : ""}`;
  }
  // The watch's own errors carry the status as statusCode.
  const code = (err as { statusCode?: unknown } | null)?.statusCode;
  if (err instanceof Error && typeof code === "number") return `HTTP ${code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Where the Job template comes from: AUTORESEARCH_JOB_TEMPLATE names a file (k8s/job.yaml),
 * or a folder with `job.yaml` and optional per-repository `<owner>.<repo>.yaml` overrides.
 */
export function templateSource(location: string): (repo: RepoRef) => Promise<string> {
  return async (repo) => {
    const info = await stat(location);
    if (!info.isDirectory()) return readFile(location, "utf8");
    const own = path.join(location, `${repo.owner}.${repo.repo}.yaml`);
    try {
      return await readFile(own, "utf8");
    } catch {
      return readFile(path.join(location, "job.yaml"), "utf8");
    }
  };
}

/** KubeConfig from the default chain: in-cluster service account, KUBECONFIG, ~/.kube/config. */
export function defaultKubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  return kc;
}

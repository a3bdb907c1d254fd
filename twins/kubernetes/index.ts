// A Kubernetes twin: the batch/v1 and core/v1 subset the Kubernetes runner uses, served over
// HTTP on 127.0.0.1 to the real @kubernetes/client-node, with a Job controller and a "kubelet"
// that runs each pod's containers as local processes.
//
// API: Jobs (create, get, list, delete, watch), Pods (list, get, log), Secrets (create, get,
// delete, list), Leases of coordination.k8s.io/v1 (create, get, replace, delete; a replace whose
// metadata.resourceVersion is not the stored one is a 409 Conflict, as the API server's
// optimistic concurrency answers two writers; `refuseLeaseWrites` makes chosen holders' writes
// fail with a 503, a renewal lost on the way). Lists carry a resourceVersion; watches stream newline-delimited JSON events
// from a resourceVersion and answer an expired one with an ERROR event (410 Gone), as the API
// server does after compaction; a watch ends after its timeoutSeconds, with a BOOKMARK of the
// current resourceVersion first when it asked for allowWatchBookmarks. Label selectors of the
// form a=b,c=d. `fail` answers chosen requests with an error status, or never (a hung server).
//
// Every Job created is validated against the Kubernetes schemas (kubernetes-models) and the
// checks the API server itself makes that matter here (DNS-1123 names, label values,
// podFailurePolicy needing restartPolicy Never); an invalid Job is a 422 and is kept in
// `rejected` for the tests.
//
// The kubelet: init containers in order, then the containers, each as a local process in its
// own bubblewrap container: the host's system folders stand in for the image, read-only, and
// the container sees at their mount paths only its volumeMounts (emptyDir: a folder per pod,
// secret: a folder with the secret's keys, persistentVolumeClaim: a folder per claim, each
// with its subPath, read-only where the mount says so), its terminationMessagePath (read back
// as the termination message, 4096 bytes; the log tail with FallbackToLogsOnError), the
// `paths` option (image files, e.g. /opt/autoresearch/harness.py → the repository's
// trainer/harness.py) and the `shared` folders (read-only everywhere: a test's local source).
// readOnlyRootFilesystem makes the rest read-only. NetworkPolicies given as `networkPolicies`
// are applied as far as a single host can: a pod that a policy selects for Egress and that no
// egress rule allows gets no network at all (only its own loopback); any egress rule allows
// the host's network (ipBlocks are not emulated). A container's command is its `command` or
// the image's entrypoint (`images`), with its args. It honours activeDeadlineSeconds (DeadlineExceeded),
// backoffLimit, podFailurePolicy (Ignore on DisruptionTarget), ttlSecondsAfterFinished,
// ownerReferences (garbage collection of owned Secrets) and exit codes. Faults are injected
// per Job: OOMKilled, eviction, an unschedulable pod, an image that cannot be pulled.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createWriteStream, existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync, type WriteStream } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { Job as JobModel } from "kubernetes-models/batch/v1/Job";
import { Lease as LeaseModel } from "kubernetes-models/coordination.k8s.io/v1/Lease";

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Fault {
  kind: "oom" | "evict" | "unschedulable" | "image-pull";
  /** For oom and evict: after how long the container is hit (default 300 ms). */
  afterMs?: number;
}

export interface KubernetesTwinOptions {
  token?: string;
  /** Entrypoint per image (used when a container has no command); default for any image below. */
  images?: Record<string, string[]>;
  defaultEntrypoint?: string[];
  /** Environment an image sets (e.g. XDG_CACHE_HOME=/cache); default for every image. */
  imageEnv?: Record<string, string>;
  /** Container paths → host paths (longest prefix wins after the pod's own mounts). */
  paths?: Record<string, string>;
  /** Extra host environment for every container (test hooks). */
  env?: Record<string, string>;
  /** Grace period between SIGTERM and SIGKILL; default 1000 ms. */
  killGraceMs?: number;
  /** NetworkPolicy objects in force (e.g. the documents of k8s/networkpolicy.yaml). */
  networkPolicies?: Obj[];
  /** Host folders every container may read at the same path (a test's local source repository). */
  shared?: string[];
  /** Which Jobs maxActiveJobs counts (default: all). */
  countsAsActive?: (job: Obj) => boolean;
  /**
   * Called with every create and delete (a chaos test kills the client there): "drop" cuts the
   * connection and does nothing; "cut-after" does it and then cuts the connection unanswered.
   */
  writeHook?: (method: string, kind: string, name: string) => "drop" | "cut-after" | void;
}

/** What `fail` matches a request on. */
export interface RequestInfo {
  method: string;
  /** The URL path, e.g. /apis/batch/v1/namespaces/ns/jobs/name. */
  path: string;
  /** A watch (GET ...?watch=true). */
  watch: boolean;
}

/** One container the kubelet ran: which pod, Job and container, and whether it had network. */
export interface ContainerRun {
  pod: string;
  job: string;
  container: string;
  network: boolean;
}

const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
const ETC = ["alternatives", "group", "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "resolv.conf", "ssl", "ca-certificates"];

interface WatchClient {
  res: ServerResponse;
  ns: string;
  selector: Record<string, string>;
}

interface Running {
  child: ChildProcess;
  container: string;
  killedFor?: "oom" | "evict" | "deadline" | "delete";
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export class KubernetesTwin {
  readonly token: string;
  private server: Server | null = null;
  private rv = 1;
  private compactedRv = 0;
  readonly jobs = new Map<string, Obj>(); // ns/name
  readonly pods = new Map<string, Obj>();
  readonly secrets = new Map<string, Obj>();
  readonly leases = new Map<string, Obj>(); // ns/name
  /** Lease writes (create, replace) naming a holder for which this is true fail with 503 Service Unavailable. */
  refuseLeaseWrites: ((holderIdentity: string) => boolean) | null = null;
  /** Lease replaces refused with 409 because their resourceVersion was stale. */
  leaseConflicts = 0;
  private readonly events: { rv: number; type: string; object: Obj }[] = [];
  private readonly watchers = new Set<WatchClient>();
  private readonly running = new Map<string, Running[]>(); // pod key → its running containers
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly faults: { match: (job: Obj) => boolean; fault: Fault }[] = [];
  private readonly requestFaults: { match: (req: RequestInfo) => boolean; answer: number | "hang"; left: number }[] = [];
  /** Requests held unanswered by a "hang" fault (answered by nobody; cut at stop). */
  private readonly hung = new Set<ServerResponse>();
  private readonly logs = new Map<string, string>(); // pod key/container → log file
  private root = "";
  private stopped = false;
  /** Every Job body accepted by POST (after validation), in order. */
  readonly created: Obj[] = [];
  /** Every Secret created (kept after deletion, for the tests). */
  readonly createdSecrets: Obj[] = [];
  /** Job bodies refused by validation, with the reason. */
  readonly rejected: { body: Obj; reason: string }[] = [];
  /** POSTs of a Job that already existed (409). */
  conflicts = 0;
  /** The most Jobs that were running (not finished) at the same time. */
  maxActiveJobs = 0;
  readonly requests: { method: string; path: string }[] = [];
  /** Every container the kubelet started, in order. */
  readonly containerRuns: ContainerRun[] = [];

  constructor(private readonly opts: KubernetesTwinOptions = {}) {
    this.token = opts.token ?? "twin-kube-token";
  }

  async start(): Promise<{ url: string }> {
    this.root = await mkdtemp(path.join(tmpdir(), "k8s-twin-"));
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    const addr = this.server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    return { url: `http://127.0.0.1:${port}` };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
    for (const res of this.hung) res.destroy();
    this.hung.clear();
    for (const key of [...this.running.keys()]) this.kill(key, "delete", 0);
    await new Promise((r) => setTimeout(r, 100));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections?.();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Let every container read `folder` at the same path (a test's local source repository). */
  share(folder: string): void {
    (this.opts.shared ??= []).push(realpathSync(folder));
  }

  /** Hit the next pod of a matching Job with a fault (once). */
  inject(match: (job: Obj) => boolean, fault: Fault): void {
    this.faults.push({ match, fault });
  }

  /**
   * Answer the next `times` requests that `match` with the HTTP status `answer` (an API server
   * error, 500 by default) without carrying them out, or never ("hang": the connection stays
   * open and silent until the client gives up).
   */
  fail(match: (req: RequestInfo) => boolean, answer: number | "hang" = 500, times = 1): void {
    this.requestFaults.push({ match, answer, left: times });
  }

  /** Forget the event history (an etcd compaction): watches from before now get 410 Gone. */
  compact(): void {
    // Other objects changed since (the resource version moved on), then the history was cut.
    this.compactedRv = ++this.rv;
    this.events.length = 0;
  }

  /** Watches open now. */
  get openWatches(): number {
    return this.watchers.size;
  }

  /** Close every open watch (an API server restart or timeout). */
  dropWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  jobList(ns = "default"): Obj[] {
    return [...this.jobs.values()].filter((j) => j.metadata.namespace === ns);
  }

  podsOfJob(name: string, ns = "default"): Obj[] {
    return [...this.pods.values()].filter((p) => p.metadata.namespace === ns && p.metadata.labels?.["job-name"] === name);
  }

  // ------------------------------------------------------------------ HTTP

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    this.requests.push({ method: req.method ?? "GET", path: url.pathname });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let cut = false; // a chaos hook's "cut-after": carried out, never answered
    const send = (status: number, body: unknown) => {
      if (cut) return void res.destroy();
      const text = typeof body === "string" ? body : JSON.stringify(body);
      res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json" });
      res.end(text);
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) return send(401, status(401, "Unauthorized", "Unauthorized"));
    const info: RequestInfo = { method: req.method ?? "GET", path: url.pathname, watch: url.searchParams.get("watch") === "true" };
    const fault = this.requestFaults.find((f) => f.left > 0 && f.match(info));
    if (fault) {
      fault.left--;
      if (fault.answer === "hang") {
        this.hung.add(res);
        res.on("close", () => this.hung.delete(res));
        return;
      }
      return send(fault.answer, status(fault.answer, fault.answer >= 500 ? "InternalError" : "BadRequest", `the twin was told to answer ${info.method} ${info.path} with ${fault.answer}`));
    }
    let body: Obj = {};
    if (chunks.length) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Obj;
      } catch {
        return send(400, status(400, "BadRequest", "the body is not JSON"));
      }
    }
    const q = url.searchParams;
    const lease = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/.exec(url.pathname);
    if (lease) return this.leaseRequest(req.method ?? "GET", lease[1]!, lease[2], body, send);
    const m =
      /^\/(?:apis\/batch\/v1|api\/v1)\/namespaces\/([^/]+)\/(jobs|pods|secrets)(?:\/([^/]+))?(?:\/(log))?$/.exec(url.pathname);
    if (!m) return send(404, status(404, "NotFound", `the server could not find the requested resource ${url.pathname}`));
    const [, ns, kind, name, sub] = m as unknown as [string, string, "jobs" | "pods" | "secrets", string | undefined, string | undefined];
    if ((kind === "jobs") !== url.pathname.startsWith("/apis/batch/v1")) return send(404, status(404, "NotFound", "wrong API group"));
    const store = kind === "jobs" ? this.jobs : kind === "pods" ? this.pods : this.secrets;
    const key = `${ns}/${name}`;
    const method = req.method ?? "GET";
    if (method === "POST" || method === "DELETE") {
      const chaos = this.opts.writeHook?.(method, kind, name ?? String(body.metadata?.name ?? ""));
      if (chaos === "drop") return void res.destroy();
      cut = chaos === "cut-after";
    }

    if (!name) {
      const selector = parseSelector(q.get("labelSelector"));
      if (method === "GET" && q.get("watch") === "true") {
        if (kind !== "jobs") return send(405, status(405, "MethodNotAllowed", "watch is served for jobs only"));
        return this.watch(res, ns, selector, q.get("resourceVersion"), Number(q.get("timeoutSeconds") ?? 0), q.get("allowWatchBookmarks") === "true");
      }
      if (method === "GET") {
        const items = [...store.values()].filter((o) => o.metadata.namespace === ns && matches(o, selector));
        const listKind = kind === "jobs" ? "JobList" : kind === "pods" ? "PodList" : "SecretList";
        return send(200, { apiVersion: kind === "jobs" ? "batch/v1" : "v1", kind: listKind, metadata: { resourceVersion: String(this.rv) }, items });
      }
      if (method === "POST") {
        if (kind === "pods") return send(405, status(405, "MethodNotAllowed", "pods are created by the Job controller here"));
        const objName = body.metadata?.name as string | undefined;
        if (!objName) return send(422, status(422, "Invalid", "metadata.name: Required value"));
        if (store.has(`${ns}/${objName}`)) {
          if (kind === "jobs") this.conflicts++;
          return send(409, status(409, "AlreadyExists", `${kind} "${objName}" already exists`));
        }
        if (body.metadata.namespace && body.metadata.namespace !== ns) return send(400, status(400, "BadRequest", "the namespace of the object does not match the namespace of the request"));
        if (kind === "jobs") {
          const problem = validateJob(body);
          if (problem) {
            this.rejected.push({ body, reason: problem });
            return send(422, status(422, "Invalid", `Job.batch "${objName}" is invalid: ${problem}`));
          }
          this.created.push(structuredClone(body));
        }
        const obj = this.admit(kind, ns, body);
        if (kind === "jobs") this.startJob(obj);
        if (kind === "secrets") this.createdSecrets.push(structuredClone(obj));
        return send(201, obj);
      }
      return send(405, status(405, "MethodNotAllowed", method));
    }

    const obj = store.get(key);
    if (sub === "log") {
      if (kind !== "pods" || !obj) return send(404, status(404, "NotFound", `pods "${name}" not found`));
      const container = q.get("container") ?? obj.spec.containers[0].name;
      const file = this.logs.get(`${key}/${container}`);
      let text = "";
      try {
        text = file ? readFileSync(file, "utf8") : "";
      } catch {
        text = "";
      }
      const tail = Number(q.get("tailLines") ?? 0);
      if (tail > 0) text = text.split("\n").slice(-tail - 1).join("\n");
      return send(200, text);
    }
    if (!obj) return send(404, status(404, "NotFound", `${kind} "${name}" not found`));
    if (method === "GET") return send(200, obj);
    if (method === "DELETE") {
      this.remove(kind, key);
      return send(200, status(200, "Success", "deleted", "Success"));
    }
    return send(405, status(405, "MethodNotAllowed", method));
  }

  private leaseRequest(method: string, ns: string, name: string | undefined, body: Obj, send: (status: number, body: unknown) => void): void {
    const key = `${ns}/${name}`;
    const current = this.leases.get(key);
    if (method === "POST" || method === "PUT") {
      const holder = String(body.spec?.holderIdentity ?? "");
      if (this.refuseLeaseWrites?.(holder)) return send(503, status(503, "ServiceUnavailable", "the lease write did not get through"));
      let problem: string | null = null;
      try {
        new LeaseModel(body as ConstructorParameters<typeof LeaseModel>[0]).validate();
      } catch (err) {
        problem = (err as Error).message;
      }
      const d = body.spec?.leaseDurationSeconds;
      if (!problem && d !== undefined && !(Number.isInteger(d) && d > 0)) problem = "spec.leaseDurationSeconds: must be greater than 0";
      if (problem) return send(422, status(422, "Invalid", `Lease.coordination.k8s.io is invalid: ${problem}`));
    }
    if (method === "POST" && !name) {
      const objName = body.metadata?.name as string | undefined;
      if (!objName) return send(422, status(422, "Invalid", "metadata.name: Required value"));
      if (this.leases.has(`${ns}/${objName}`)) return send(409, status(409, "AlreadyExists", `leases.coordination.k8s.io "${objName}" already exists`));
      const obj = structuredClone(body);
      obj.apiVersion = "coordination.k8s.io/v1";
      obj.kind = "Lease";
      obj.metadata = { ...obj.metadata, namespace: ns, uid: randomUUID(), creationTimestamp: new Date().toISOString() };
      this.bump(obj);
      this.leases.set(`${ns}/${objName}`, obj);
      return send(201, obj);
    }
    if (!name) return send(405, status(405, "MethodNotAllowed", method));
    if (!current) return send(404, status(404, "NotFound", `leases.coordination.k8s.io "${name}" not found`));
    if (method === "GET") return send(200, current);
    if (method === "DELETE") {
      this.leases.delete(key);
      return send(200, status(200, "Success", "deleted", "Success"));
    }
    if (method === "PUT") {
      if (body.metadata?.name !== name) return send(400, status(400, "BadRequest", "the name of the object does not match the name on the URL"));
      if (body.metadata?.resourceVersion !== current.metadata.resourceVersion) {
        this.leaseConflicts++;
        return send(
          409,
          status(409, "Conflict", `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been modified; please apply your changes to the latest version and try again`),
        );
      }
      const obj = structuredClone(body);
      obj.apiVersion = "coordination.k8s.io/v1";
      obj.kind = "Lease";
      obj.metadata = { ...current.metadata, labels: body.metadata?.labels ?? current.metadata.labels };
      this.bump(obj);
      this.leases.set(key, obj);
      return send(200, obj);
    }
    return send(405, status(405, "MethodNotAllowed", method));
  }

  private watch(res: ServerResponse, ns: string, selector: Record<string, string>, from: string | null, timeoutSeconds: number, bookmarks: boolean): void {
    res.writeHead(200, { "content-type": "application/json", "transfer-encoding": "chunked" });
    const client: WatchClient = { res, ns, selector };
    const write = (type: string, object: Obj) => res.write(JSON.stringify({ type, object }) + "\n");
    if (timeoutSeconds > 0) {
      // The API server ends a watch after its timeoutSeconds; a client that asked for bookmarks
      // learns the resourceVersion it has seen up to, so it resumes from there.
      const t = setTimeout(() => {
        if (bookmarks) write("BOOKMARK", { kind: "Job", apiVersion: "batch/v1", metadata: { resourceVersion: String(this.rv) } });
        res.end();
      }, timeoutSeconds * 1000);
      res.on("close", () => clearTimeout(t));
    }
    if (from && from !== "0") {
      const v = Number(from);
      if (!Number.isFinite(v) || v < this.compactedRv) {
        write("ERROR", status(410, "Expired", `too old resource version: ${from} (${this.compactedRv})`));
        res.end();
        return;
      }
      for (const e of this.events) if (e.rv > v && e.object.metadata.namespace === ns && matches(e.object, selector)) write(e.type, e.object);
    } else {
      for (const j of this.jobs.values()) if (j.metadata.namespace === ns && matches(j, selector)) write("ADDED", j);
    }
    this.watchers.add(client);
    res.on("close", () => this.watchers.delete(client));
  }

  private emit(type: string, object: Obj): void {
    if (object.kind !== "Job") return;
    const snapshot = structuredClone(object);
    this.events.push({ rv: Number(object.metadata.resourceVersion), type, object: snapshot });
    if (this.events.length > 2000) {
      const dropped = this.events.shift()!;
      this.compactedRv = dropped.rv;
    }
    for (const w of this.watchers) {
      if (w.ns === object.metadata.namespace && matches(object, w.selector)) w.res.write(JSON.stringify({ type, object: snapshot }) + "\n");
    }
  }

  private bump(obj: Obj): void {
    obj.metadata.resourceVersion = String(++this.rv);
  }

  private admit(kind: "jobs" | "pods" | "secrets", ns: string, body: Obj): Obj {
    const obj = structuredClone(body);
    obj.apiVersion = kind === "jobs" ? "batch/v1" : "v1";
    obj.kind = kind === "jobs" ? "Job" : kind === "pods" ? "Pod" : "Secret";
    obj.metadata = { ...obj.metadata, namespace: ns, uid: randomUUID(), creationTimestamp: new Date().toISOString() };
    if (kind === "secrets" && obj.stringData) {
      obj.data = { ...obj.data };
      for (const [k, v] of Object.entries(obj.stringData as Record<string, string>)) obj.data[k] = Buffer.from(v).toString("base64");
      delete obj.stringData;
    }
    this.bump(obj);
    const store = kind === "jobs" ? this.jobs : kind === "pods" ? this.pods : this.secrets;
    store.set(`${ns}/${obj.metadata.name}`, obj);
    this.emit("ADDED", obj);
    return obj;
  }

  private update(obj: Obj): void {
    this.bump(obj);
    this.emit("MODIFIED", obj);
  }

  private remove(kind: "jobs" | "pods" | "secrets", key: string): void {
    const store = kind === "jobs" ? this.jobs : kind === "pods" ? this.pods : this.secrets;
    const obj = store.get(key);
    if (!obj) return;
    store.delete(key);
    this.bump(obj);
    this.emit("DELETED", obj);
    if (kind === "pods") this.kill(key, "delete", this.opts.killGraceMs ?? 1000);
    if (kind === "jobs") {
      // Garbage collection: the Job's pods and whatever it owns.
      for (const [k, p] of [...this.pods]) if (p.metadata.labels?.["controller-uid"] === obj.metadata.uid) this.remove("pods", k);
      for (const [k, s] of [...this.secrets]) if ((s.metadata.ownerReferences ?? []).some((r: Obj) => r.uid === obj.metadata.uid)) this.remove("secrets", k);
    }
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.stopped) fn();
    }, ms);
    this.timers.add(t);
  }

  // ------------------------------------------------------------------ Job controller

  private startJob(job: Obj): void {
    job.status = { active: 0, startTime: new Date().toISOString() };
    const counts = this.opts.countsAsActive ?? (() => true);
    const active = [...this.jobs.values()].filter((j) => !finished(j) && counts(j)).length;
    this.maxActiveJobs = Math.max(this.maxActiveJobs, active);
    this.update(job);
    const deadline = job.spec.activeDeadlineSeconds as number | undefined;
    if (deadline) this.later(deadline * 1000, () => this.deadline(job));
    this.newPod(job);
  }

  private jobKey(job: Obj): string {
    return `${job.metadata.namespace}/${job.metadata.name}`;
  }

  private alive(job: Obj): boolean {
    return this.jobs.get(this.jobKey(job)) === job && !finished(job);
  }

  private deadline(job: Obj): void {
    if (!this.alive(job)) return;
    for (const p of this.podsOfJob(job.metadata.name, job.metadata.namespace)) {
      const key = `${p.metadata.namespace}/${p.metadata.name}`;
      if (this.running.has(key)) this.kill(key, "deadline", this.opts.killGraceMs ?? 1000);
    }
    this.finish(job, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline");
  }

  private finish(job: Obj, type: "Complete" | "Failed", reason?: string, message?: string): void {
    const now = new Date().toISOString();
    job.status.conditions = [
      ...(type === "Failed" ? [{ type: "FailureTarget", status: "True", reason, message, lastProbeTime: now, lastTransitionTime: now }] : [{ type: "SuccessCriteriaMet", status: "True", lastProbeTime: now, lastTransitionTime: now }]),
      { type, status: "True", reason, message, lastProbeTime: now, lastTransitionTime: now },
    ];
    job.status.active = 0;
    if (type === "Complete") job.status.completionTime = now;
    this.update(job);
    const ttl = job.spec.ttlSecondsAfterFinished as number | undefined;
    if (ttl !== undefined) this.later(ttl * 1000, () => this.remove("jobs", this.jobKey(job)));
  }

  private newPod(job: Obj): void {
    const tpl = job.spec.template;
    const name = `${job.metadata.name}-${Math.random().toString(36).slice(2, 7)}`;
    const pod = this.admit("pods", job.metadata.namespace, {
      metadata: {
        name,
        labels: { ...tpl.metadata?.labels, "job-name": job.metadata.name, "controller-uid": job.metadata.uid, "batch.kubernetes.io/job-name": job.metadata.name },
        annotations: tpl.metadata?.annotations,
        ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: job.metadata.name, uid: job.metadata.uid, controller: true }],
      },
      spec: structuredClone(tpl.spec),
      status: { phase: "Pending" },
    });
    job.status.active = 1;
    this.update(job);
    const i = this.faults.findIndex((f) => f.match(job));
    const fault = i >= 0 ? this.faults.splice(i, 1)[0]!.fault : undefined;
    if (fault?.kind === "unschedulable") {
      pod.status.conditions = [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." }];
      this.update(pod);
      return;
    }
    if (fault?.kind === "image-pull") {
      pod.status.conditions = [{ type: "PodScheduled", status: "True" }];
      const pulling = (c: Obj) => ({ name: c.name, image: c.image, ready: false, restartCount: 0, state: { waiting: { reason: "ImagePullBackOff", message: `Back-off pulling image "${c.image}"` } } });
      if (pod.spec.initContainers?.length) pod.status.initContainerStatuses = pod.spec.initContainers.map(pulling);
      else pod.status.containerStatuses = pod.spec.containers.map(pulling);
      this.update(pod);
      return;
    }
    this.runPod(job, pod, fault).catch((err: unknown) => {
      // stop() removes the twin's folder while a killed container may still be ending: what
      // that pod would do next no longer matters. Any other error is the twin's own bug.
      if (!this.stopped) throw err;
    });
  }

  private async runPod(job: Obj, pod: Obj, fault: Fault | undefined): Promise<void> {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const dir = path.join(this.root, pod.metadata.name);
    mkdirSync(dir, { recursive: true });
    // Secret volumes wait for their secret, as the kubelet does.
    for (let i = 0; i < 600; i++) {
      const missing = (pod.spec.volumes ?? []).some((v: Obj) => v.secret && !this.secrets.has(`${pod.metadata.namespace}/${v.secret.secretName}`));
      if (!missing || !this.pods.has(key)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!this.pods.has(key) || this.stopped) return;
    const mounts = this.volumes(pod, dir);
    pod.status = { phase: "Pending", conditions: [{ type: "PodScheduled", status: "True" }], startTime: new Date().toISOString() };
    this.update(pod);
    const inits: Obj[] = pod.spec.initContainers ?? [];
    pod.status.initContainerStatuses = inits.map((c) => ({ name: c.name, image: c.image, ready: false, restartCount: 0, state: { waiting: { reason: "PodInitializing" } } }));
    pod.status.containerStatuses = pod.spec.containers.map((c: Obj) => ({ name: c.name, image: c.image, ready: false, restartCount: 0, state: { waiting: { reason: "PodInitializing" } } }));
    for (let i = 0; i < inits.length; i++) {
      const state = await this.runContainer(pod, inits[i]!, dir, mounts, undefined);
      if (!this.pods.has(key)) return;
      pod.status.initContainerStatuses[i].state = state;
      this.update(pod);
      if (state.terminated.exitCode !== 0) return this.podFailed(job, pod, null);
    }
    pod.status.phase = "Running";
    this.update(pod);
    // The containers side by side, as the kubelet starts them; the pod ends when all have. A
    // fault hits the first container (an eviction, the whole pod).
    const states = await Promise.all(
      (pod.spec.containers as Obj[]).map(async (c, i) => {
        const state = await this.runContainer(pod, c, dir, mounts, i === 0 ? fault : undefined);
        if (this.pods.has(key)) {
          const { killedFor: _killedFor, ...shown } = state;
          pod.status.containerStatuses[i].state = shown;
          this.update(pod);
        }
        return state;
      }),
    );
    if (!this.pods.has(key)) return;
    const killedFor = states[0]!.killedFor as Running["killedFor"];
    for (const st of states) delete st.killedFor;
    const failedState = states.find((st) => st.terminated.exitCode !== 0);
    const state = failedState ?? states[0]!;
    if (killedFor === "evict") {
      pod.status.phase = "Failed";
      pod.status.reason = "Evicted";
      pod.status.conditions.push({ type: "DisruptionTarget", status: "True", reason: "EvictionByEvictionAPI", message: "Eviction API: evicting" });
      this.update(pod);
      return this.podFailed(job, pod, "DisruptionTarget");
    }
    if (state.terminated.exitCode === 0) {
      pod.status.phase = "Succeeded";
      this.update(pod);
      if (this.alive(job)) {
        job.status.succeeded = 1;
        this.finish(job, "Complete");
      }
      return;
    }
    pod.status.phase = "Failed";
    this.update(pod);
    this.podFailed(job, pod, null);
  }

  private podFailed(job: Obj, pod: Obj, conditionType: string | null): void {
    if (pod.status.phase !== "Failed") {
      pod.status.phase = "Failed";
      this.update(pod);
    }
    if (!this.alive(job)) return;
    const rules: Obj[] = job.spec.podFailurePolicy?.rules ?? [];
    const rule = rules.find((r) => conditionType && (r.onPodConditions ?? []).some((c: Obj) => c.type === conditionType && (c.status ?? "True") === "True"));
    if (rule?.action === "Ignore") {
      this.newPod(job);
      return;
    }
    if (rule?.action === "FailJob") return this.finish(job, "Failed", "PodFailurePolicy", `Pod ${pod.metadata.name} matched a FailJob rule`);
    job.status.failed = (job.status.failed ?? 0) + 1;
    if (job.status.failed > (job.spec.backoffLimit ?? 6)) return this.finish(job, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit");
    this.update(job);
    this.newPod(job);
  }

  /** Host folders for the pod's volumes: volume name → host path. */
  private volumes(pod: Obj, dir: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const v of pod.spec.volumes ?? []) {
      let host: string;
      if (v.persistentVolumeClaim) host = path.join(this.root, "pvc", v.persistentVolumeClaim.claimName);
      else host = path.join(dir, "volumes", v.name);
      mkdirSync(host, { recursive: true });
      if (v.secret) {
        const s = this.secrets.get(`${pod.metadata.namespace}/${v.secret.secretName}`);
        for (const [k, b64] of Object.entries((s?.data ?? {}) as Record<string, string>)) {
          writeFileSync(path.join(host, k), Buffer.from(b64, "base64"), { mode: 0o400 });
        }
      }
      out.set(v.name, host);
    }
    return out;
  }

  /** Does a NetworkPolicy leave this pod without egress? */
  private isolated(pod: Obj): boolean {
    const labels = (pod.metadata?.labels ?? {}) as Record<string, string>;
    const selecting = (this.opts.networkPolicies ?? []).filter((np) => {
      const sel = (np.spec?.podSelector?.matchLabels ?? {}) as Record<string, string>;
      const types: string[] = np.spec?.policyTypes ?? (np.spec?.egress ? ["Ingress", "Egress"] : ["Ingress"]);
      return types.includes("Egress") && Object.entries(sel).every(([k, v]) => labels[k] === v);
    });
    return selecting.length > 0 && !selecting.some((np) => Array.isArray(np.spec?.egress) && np.spec.egress.length > 0);
  }

  private async runContainer(pod: Obj, c: Obj, dir: string, volumes: Map<string, string>, fault: Fault | undefined): Promise<Obj> {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    const startedAt = new Date().toISOString();
    const network = !this.isolated(pod);
    this.containerRuns.push({ pod: pod.metadata.name, job: pod.metadata.labels?.["job-name"] ?? "", container: c.name, network });
    const b: string[] = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL"];
    if (network) b.push("--share-net");
    for (const d of SYSTEM_DIRS) {
      if (!existsSync(d)) continue;
      if (lstatSync(d).isSymbolicLink()) b.push("--symlink", readlinkSync(d), d);
      else b.push("--ro-bind", d, d);
    }
    for (const e of ETC) b.push("--ro-bind-try", `/etc/${e}`, `/etc/${e}`);
    b.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home/trainer");
    for (const [from, to] of Object.entries(this.opts.paths ?? {})) b.push("--ro-bind", to, from);
    for (const p of this.opts.shared ?? []) b.push("--ro-bind", p, p);
    for (const m of c.volumeMounts ?? []) {
      const base = volumes.get(m.name);
      if (!base) continue;
      let host = base;
      if (m.subPath) {
        host = path.resolve(base, m.subPath);
        if (!host.startsWith(base + path.sep)) throw new Error(`subPath ${m.subPath} leaves its volume`);
        mkdirSync(host, { recursive: true });
      }
      b.push(m.readOnly ? "--ro-bind" : "--bind", realpathSync(host), m.mountPath);
    }
    const termPath = c.terminationMessagePath ?? "/dev/termination-log";
    const termFile = path.join(dir, `termination-${c.name}`);
    writeFileSync(termFile, "");
    b.push("--bind", termFile, termPath);
    if (c.securityContext?.readOnlyRootFilesystem) b.push("--remount-ro", "/");
    const env: Record<string, string> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/home/trainer", LANG: "C.UTF-8" };
    Object.assign(env, this.opts.imageEnv ?? { XDG_CACHE_HOME: "/cache" });
    for (const e of c.env ?? []) if (typeof e.value === "string") env[e.name] = e.value;
    Object.assign(env, this.opts.env ?? {});
    b.push("--clearenv");
    for (const [k, v] of Object.entries(env)) b.push("--setenv", k, v);
    b.push("--chdir", c.workingDir ?? "/home/trainer");
    const entry: string[] = c.command ?? this.opts.images?.[c.image] ?? this.opts.defaultEntrypoint ?? ["python3", "/opt/autoresearch/harness.py"];
    const argv = ["bwrap", ...b, "--", ...entry, ...(c.args ?? [])];
    const logFile = path.join(dir, `${c.name}.log`);
    this.logs.set(`${key}/${c.name}`, logFile);
    const out: WriteStream = createWriteStream(logFile);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: dir, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.pipe(out, { end: false });
    child.stderr!.pipe(out, { end: false });
    const run: Running = { child, container: c.name };
    this.running.set(key, [...(this.running.get(key) ?? []), run]);
    if (fault && (fault.kind === "oom" || fault.kind === "evict")) {
      const kind = fault.kind;
      this.later(fault.afterMs ?? 300, () => {
        if (!this.running.get(key)?.includes(run)) return;
        // OOMKilled is one container's; an eviction stops the whole pod.
        if (kind === "oom") this.killRun(run, kind, 0);
        else this.kill(key, kind, this.opts.killGraceMs ?? 1000);
      });
    }
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("error", () => resolve({ code: 127, signal: null }));
      child.once("close", (code, signal) => resolve({ code, signal }));
    });
    await new Promise<void>((r) => out.end(r));
    const left = (this.running.get(key) ?? []).filter((r) => r !== run);
    if (left.length) this.running.set(key, left);
    else this.running.delete(key);
    const exitCode = exit.code ?? 128 + signalNumber(exit.signal);
    let message = "";
    try {
      message = readFileSync(termFile, "utf8").slice(0, 4096);
    } catch {
      message = "";
    }
    if (!message.trim() && exitCode !== 0 && c.terminationMessagePolicy === "FallbackToLogsOnError") {
      const lines = readFileSync(logFile, "utf8").split("\n");
      message = lines.slice(-80).join("\n").slice(-2048);
    }
    const reason = run.killedFor === "oom" ? "OOMKilled" : exitCode === 0 ? "Completed" : "Error";
    const terminated: Obj = { exitCode: run.killedFor === "oom" ? 137 : exitCode, reason, startedAt, finishedAt: new Date().toISOString() };
    if (message) terminated.message = message;
    return { terminated, killedFor: run.killedFor };
  }

  private kill(key: string, why: NonNullable<Running["killedFor"]>, graceMs: number): void {
    for (const run of this.running.get(key) ?? []) this.killRun(run, why, graceMs);
  }

  private killRun(run: Running, why: NonNullable<Running["killedFor"]>, graceMs: number): void {
    run.killedFor ??= why;
    const pid = run.child.pid;
    if (pid === undefined) return;
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(-pid, s);
      } catch {
        // gone
      }
    };
    if (graceMs <= 0) return signal("SIGKILL");
    signal("SIGTERM");
    const t = setTimeout(() => signal("SIGKILL"), graceMs);
    t.unref();
  }
}

function finished(job: Obj): boolean {
  return (job.status?.conditions ?? []).some((c: Obj) => (c.type === "Complete" || c.type === "Failed") && c.status === "True");
}

function status(code: number, reason: string, message: string, st = "Failure"): Obj {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: st, message, reason, code };
}

function parseSelector(s: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (s ?? "").split(",").filter(Boolean)) {
    const [k, v] = part.split("=");
    if (k) out[k.trim()] = (v ?? "").trim();
  }
  return out;
}

function matches(obj: Obj, selector: Record<string, string>): boolean {
  const labels = (obj.metadata?.labels ?? {}) as Record<string, string>;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function signalNumber(s: NodeJS.Signals | null): number {
  return s === "SIGKILL" ? 9 : s === "SIGTERM" ? 15 : s === "SIGINT" ? 2 : 1;
}

/** What the API server would refuse in a Job (schema, names, labels, the Job's own rules). */
export function validateJob(body: Obj): string | null {
  try {
    new JobModel(body as ConstructorParameters<typeof JobModel>[0]).validate();
  } catch (err) {
    return `schema: ${(err as Error).message}`;
  }
  const problems: string[] = [];
  const name = String(body.metadata?.name ?? "");
  if (!DNS_LABEL.test(name) || name.length > 63) problems.push(`metadata.name: Invalid value: "${name}": a lowercase RFC 1123 label of at most 63 characters`);
  const labelSets = [body.metadata?.labels, body.spec?.template?.metadata?.labels];
  for (const labels of labelSets) {
    for (const [k, v] of Object.entries((labels ?? {}) as Record<string, unknown>)) {
      if (typeof v !== "string" || v.length > 63 || !LABEL_VALUE.test(v)) problems.push(`metadata.labels: Invalid value: "${String(v)}" for ${k}`);
    }
  }
  const pod = body.spec?.template?.spec;
  if (!pod?.containers?.length) problems.push("spec.template.spec.containers: Required value");
  if (body.spec?.podFailurePolicy && pod?.restartPolicy !== "Never") problems.push("spec.template.spec.restartPolicy: Invalid value: only Never is supported when podFailurePolicy is specified");
  if (!["Never", "OnFailure"].includes(pod?.restartPolicy)) problems.push('spec.template.spec.restartPolicy: Unsupported value: supported values: "OnFailure", "Never"');
  const names = new Set<string>();
  for (const c of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])]) {
    if (names.has(c.name)) problems.push(`containers: Duplicate value: "${c.name}"`);
    names.add(c.name);
    if (!c.image) problems.push(`containers[${c.name}].image: Required value`);
    const vols = new Set((pod?.volumes ?? []).map((v: Obj) => v.name));
    for (const m of c.volumeMounts ?? []) if (!vols.has(m.name)) problems.push(`containers[${c.name}].volumeMounts.name: Not found: "${m.name}"`);
  }
  return problems.length ? problems.join("; ") : null;
}

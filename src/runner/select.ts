// The runner this process hosts, chosen by environment (one per process; a repository's
// `runner:` must name the same kind or its loop waits with a clear error):
//
//   AUTORESEARCH_RUNNER            local (default) | kubernetes
//   AUTORESEARCH_SLOTS             runs in flight at once (local default 1, kubernetes 8)
//   local:      AUTORESEARCH_RUNS_DIR (default .runs), AUTORESEARCH_CACHE_DIR,
//               AUTORESEARCH_SANDBOX (bwrap, the default, or off), AUTORESEARCH_PREPARE_NETWORK
//               (on, the default, or off), AUTORESEARCH_SANDBOX_READONLY (folders, separated
//               by ":", that the sandboxed commands may also read)
//   kubernetes: AUTORESEARCH_JOB_TEMPLATE (a file, or a folder with job.yaml and per-repo
//               <owner>.<repo>.yaml; default k8s/job.yaml), AUTORESEARCH_NAMESPACE (default:
//               the pod's own namespace in a cluster, else the kubeconfig context's, else
//               default), AUTORESEARCH_PENDING_TIMEOUT_SECONDS (default 900); the cluster
//               from the default chain: in-cluster service account, KUBECONFIG, ~/.kube/config
import { readFileSync } from "node:fs";
import type * as k8s from "@kubernetes/client-node";
import type { RunnerPort } from "../types.js";
import { defaultKubeConfig, KubernetesRunner, templateSource, type RunnerLogger } from "./kubernetes.js";
import { LocalRunner, sandboxFromEnv } from "./local.js";

const SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/** A positive number setting, undefined when unset; throws naming the variable when it is not one. */
export function positive(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not ${JSON.stringify(raw)}`);
  return n;
}

/** AUTORESEARCH_PREPARE_NETWORK: "on" (the default) or "off"; null when it is neither. */
export function prepareNetworkFromEnv(env: Record<string, string | undefined>): "on" | "off" | null {
  const network = (env.AUTORESEARCH_PREPARE_NETWORK ?? "on").trim().toLowerCase();
  return network === "on" || network === "off" ? network : null;
}

export function namespaceFor(env: Record<string, string | undefined>, kc: k8s.KubeConfig): string {
  if (env.AUTORESEARCH_NAMESPACE) return env.AUTORESEARCH_NAMESPACE;
  try {
    const ns = readFileSync(SA_NAMESPACE, "utf8").trim();
    if (ns) return ns;
  } catch {
    // not in a cluster
  }
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return ctx?.namespace || "default";
}

export function runnerFromEnv(
  env: Record<string, string | undefined>,
  opts: { logger?: RunnerLogger; kubeConfig?: k8s.KubeConfig } = {},
): RunnerPort & { close(): void } {
  const kind = env.AUTORESEARCH_RUNNER || "local";
  if (kind === "local") {
    const network = prepareNetworkFromEnv(env);
    if (network === null) {
      throw new Error(`AUTORESEARCH_PREPARE_NETWORK must be on (the default) or off, not ${JSON.stringify(env.AUTORESEARCH_PREPARE_NETWORK)}`);
    }
    return new LocalRunner({
      runsDir: env.AUTORESEARCH_RUNS_DIR ?? ".runs",
      slots: positive(env, "AUTORESEARCH_SLOTS") ?? 1,
      cacheDir: env.AUTORESEARCH_CACHE_DIR,
      sandbox: sandboxFromEnv(env),
      prepareNetwork: network === "on",
      sandboxReadOnly: (env.AUTORESEARCH_SANDBOX_READONLY ?? "").split(":").filter(Boolean),
      logger: opts.logger,
    });
  }
  if (kind !== "kubernetes") throw new Error(`AUTORESEARCH_RUNNER must be local or kubernetes, not ${JSON.stringify(kind)}`);
  const kc = opts.kubeConfig ?? defaultKubeConfig();
  const pending = positive(env, "AUTORESEARCH_PENDING_TIMEOUT_SECONDS");
  const runner = new KubernetesRunner({
    kubeConfig: kc,
    namespace: namespaceFor(env, kc),
    template: templateSource(env.AUTORESEARCH_JOB_TEMPLATE || "k8s/job.yaml"),
    slots: positive(env, "AUTORESEARCH_SLOTS") ?? 8,
    ...(pending ? { pendingTimeoutMs: pending * 1000 } : {}),
    logger: opts.logger,
  });
  runner.start();
  return runner;
}

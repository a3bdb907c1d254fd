// The runner this process hosts, chosen by its settings (src/settings.ts; one per process; a repository's
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
import { settingsFrom, type Env, type RunnerSettings } from "../settings.js";
import { LocalRunner } from "./local.js";

const SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

export function namespaceFor(configured: string | null, kc: k8s.KubeConfig): string {
  if (configured) return configured;
  try {
    const ns = readFileSync(SA_NAMESPACE, "utf8").trim();
    if (ns) return ns;
  } catch {
    // not in a cluster
  }
  const ctx = kc.getContextObject(kc.getCurrentContext());
  return ctx?.namespace || "default";
}

/** The runner the settings ask for (src/settings.ts has validated them). */
export function runnerFor(
  settings: RunnerSettings,
  opts: { logger?: RunnerLogger; kubeConfig?: k8s.KubeConfig; active?: () => boolean } = {},
): RunnerPort & { close(): void } {
  if (settings.kind === "local") {
    return new LocalRunner({
      runsDir: settings.runsDir,
      slots: settings.slots,
      ...(settings.cacheDir ? { cacheDir: settings.cacheDir } : {}),
      ...(settings.python ? { trainPython: settings.python } : {}),
      sandbox: settings.sandbox,
      prepareNetwork: settings.prepareNetwork,
      sandboxReadOnly: settings.sandboxReadOnly,
      gpus: settings.gpus,
      logger: opts.logger,
      active: opts.active,
    });
  }
  const kc = opts.kubeConfig ?? defaultKubeConfig();
  const runner = new KubernetesRunner({
    kubeConfig: kc,
    namespace: namespaceFor(settings.namespace, kc),
    template: templateSource(settings.jobTemplate),
    slots: settings.slots,
    ...(settings.pendingTimeoutSeconds ? { pendingTimeoutMs: settings.pendingTimeoutSeconds * 1000 } : {}),
    logger: opts.logger,
    active: opts.active,
  });
  runner.start();
  return runner;
}

/** The runner of an environment; throws a SettingsError naming every bad variable. */
export function runnerFromEnv(
  env: Env,
  opts: { logger?: RunnerLogger; kubeConfig?: k8s.KubeConfig } = {},
): RunnerPort & { close(): void } {
  return runnerFor(settingsFrom(env).runner, opts);
}

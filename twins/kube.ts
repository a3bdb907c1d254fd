// The Kubernetes runner wired to the Kubernetes twin: the real @kubernetes/client-node with a
// KubeConfig pointing at the twin, the repository's k8s/job.yaml (unless a test gives its own)
// and the twin's kubelet running the real harness for the trainer image's entrypoint.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as k8s from "@kubernetes/client-node";
import { loadAll } from "js-yaml";
import { KubernetesRunner, type KubernetesRunnerOptions } from "../src/runner/kubernetes.js";
import type { RepoRef } from "../src/types.js";
import { KubernetesTwin, type KubernetesTwinOptions } from "./kubernetes/index.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const JOB_TEMPLATE = readFileSync(path.join(ROOT, "k8s/job.yaml"), "utf8");
/** The NetworkPolicies the deploy manifests apply, enforced by the twin's kubelet. */
export const NETWORK_POLICIES = loadAll(readFileSync(path.join(ROOT, "k8s/networkpolicy.yaml"), "utf8")) as Record<string, unknown>[];
export const NAMESPACE = "autoresearch";

export function kubeConfigFor(url: string, token: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "twin", server: url, skipTLSVerify: true }],
    users: [{ name: "bot", token }],
    contexts: [{ name: "twin", cluster: "twin", user: "bot", namespace: NAMESPACE }],
    currentContext: "twin",
  });
  return kc;
}

export async function startKubeTwin(opts: KubernetesTwinOptions = {}): Promise<{ twin: KubernetesTwin; url: string }> {
  const twin = new KubernetesTwin({
    paths: { "/opt/autoresearch/harness.py": path.join(ROOT, "trainer/harness.py") },
    networkPolicies: NETWORK_POLICIES,
    // Slots are training Jobs; a run's fetch Job comes before its training Job.
    countsAsActive: (job) => job.metadata?.labels?.["autoresearch.dev/role"] !== "fetch",
    killGraceMs: 500,
    ...opts,
  });
  const { url } = await twin.start();
  return { twin, url };
}

export function kubeRunner(
  twin: KubernetesTwin,
  url: string,
  o: Partial<KubernetesRunnerOptions> & { template?: KubernetesRunnerOptions["template"] } = {},
): KubernetesRunner {
  return new KubernetesRunner({
    kubeConfig: kubeConfigFor(url, twin.token),
    namespace: NAMESPACE,
    template: () => JOB_TEMPLATE,
    deadlineMarginSeconds: 60,
    resyncMs: 1000,
    ...o,
  });
}

export const repoOf = (owner: string, repo: string): RepoRef => ({ owner, repo });

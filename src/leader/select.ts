// Which leader election this process uses, from the settings (src/settings.ts):
//
//   AUTORESEARCH_LEADER   lease (a Kubernetes Lease; the default with the Kubernetes runner),
//                         lockfile (a lock file; the default with the local runner) or off
//                         (this process always leads: one bot only)
//   AUTORESEARCH_LEADER_LOCK   the lock file (default <AUTORESEARCH_RUNS_DIR>/leader.lock)
//
// The Lease is `autoresearch-bot` in the runner's namespace (AUTORESEARCH_NAMESPACE, else the
// pod's own); the lock file sits beside the run folders it protects.
import path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { apiClient, defaultKubeConfig } from "../runner/kubernetes.js";
import { namespaceFor } from "../runner/select.js";
import { newIdentity, SoleLeader, timing, type LeaderElector, type LeaderLogger, type Timing } from "./elector.js";
import { LeaseElector } from "./lease.js";
import { LockFileElector } from "./lockfile.js";
import type { Settings } from "../settings.js";

/** The leader election the settings ask for (src/settings.ts has validated them). */
export function leaderFor(
  settings: Pick<Settings, "leader" | "runner">,
  opts: { log?: LeaderLogger; kubeConfig?: k8s.KubeConfig; timing?: Timing } = {},
): LeaderElector {
  const t = opts.timing ?? timing();
  if (settings.leader.kind === "off") return new SoleLeader();
  if (settings.leader.kind === "lockfile") return new LockFileElector(path.resolve(settings.leader.lockFile), newIdentity(), t, opts.log);
  const kc = opts.kubeConfig ?? defaultKubeConfig();
  return new LeaseElector({
    coordination: apiClient(kc, k8s.CoordinationV1Api, 10_000),
    namespace: namespaceFor(settings.runner.kind === "kubernetes" ? settings.runner.namespace : null, kc),
    identity: newIdentity(),
    timing: t,
    log: opts.log,
  });
}

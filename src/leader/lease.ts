// Leader election on Kubernetes: a coordination.k8s.io/v1 Lease in the bot's namespace. Its
// holderIdentity names the leader, renewTime is when it last renewed, leaseDurationSeconds how
// long others wait. Every write carries the resourceVersion that was read, so of two bots that
// write at once one gets a 409 Conflict and does not lead. Expiry is judged by the candidate's
// own clock (it takes over after seeing the same record for leaseDurationSeconds), never by
// comparing renewTime with its clock: the two machines' clocks need not agree.
import * as k8s from "@kubernetes/client-node";
import { monotonic, TimedElector, type LeaderLogger, type Timing } from "./elector.js";

export interface LeaseOptions {
  coordination: k8s.CoordinationV1Api;
  namespace: string;
  /** The Lease's name; default autoresearch-bot. */
  name?: string;
  identity: string;
  timing: Timing;
  log?: LeaderLogger;
}

function statusOf(err: unknown): number | undefined {
  return err instanceof k8s.ApiException ? err.code : undefined;
}

export class LeaseElector extends TimedElector {
  readonly describe: string;
  private readonly api: k8s.CoordinationV1Api;
  private readonly ns: string;
  private readonly name: string;
  /** The record last read or written (its resourceVersion) and when this process saw it. */
  private seen: { version: string; at: number } | null = null;

  constructor(o: LeaseOptions) {
    super(o.identity, o.timing, o.log);
    this.api = o.coordination;
    this.ns = o.namespace;
    this.name = o.name ?? "autoresearch-bot";
    this.describe = `Lease ${this.ns}/${this.name}`;
  }

  protected async acquireOrRenew(): Promise<boolean> {
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name: this.name, namespace: this.ns });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      return this.create();
    }
    const version = lease.metadata?.resourceVersion ?? "";
    if (this.seen?.version !== version) this.seen = { version, at: monotonic() };
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const mine = holder === this.identity;
    const durationMs = Math.max(1, spec.leaseDurationSeconds ?? this.t.durationMs / 1000) * 1000;
    // Held by another bot that renewed within its duration (as this process has seen it): wait.
    if (holder && !mine && monotonic() - this.seen.at < durationMs) return false;
    const now = new k8s.V1MicroTime();
    const body: k8s.V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: Math.ceil(this.t.durationMs / 1000),
        renewTime: now,
        acquireTime: mine ? spec.acquireTime : now,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      },
    };
    try {
      const written = await this.api.replaceNamespacedLease({ name: this.name, namespace: this.ns, body });
      this.seen = { version: written.metadata?.resourceVersion ?? "", at: monotonic() };
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false; // another bot wrote it first
      throw err;
    }
  }

  private async create(): Promise<boolean> {
    const now = new k8s.V1MicroTime();
    try {
      const created = await this.api.createNamespacedLease({
        namespace: this.ns,
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.name, namespace: this.ns, labels: { "app.kubernetes.io/name": "autoresearch-bot" } },
          spec: {
            holderIdentity: this.identity,
            leaseDurationSeconds: Math.ceil(this.t.durationMs / 1000),
            acquireTime: now,
            renewTime: now,
            leaseTransitions: 0,
          },
        },
      });
      this.seen = { version: created.metadata?.resourceVersion ?? "", at: monotonic() };
      return true;
    } catch (err) {
      if (statusOf(err) === 409) return false;
      throw err;
    }
  }

  /** An empty holder: the next bot takes over at once instead of after the duration. */
  protected async release(): Promise<void> {
    const lease = await this.api.readNamespacedLease({ name: this.name, namespace: this.ns });
    if (lease.spec?.holderIdentity !== this.identity) return;
    await this.api.replaceNamespacedLease({
      name: this.name,
      namespace: this.ns,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 } },
    });
  }
}

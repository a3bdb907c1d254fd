// Leader election between bot processes, as two electors in one test process contend for it:
// through the Kubernetes twin's Lease API with the real @kubernetes/client-node, and through a
// lock file. Exactly one leads; a leader that stops is followed only after the lock expired;
// a leader whose renewal is lost stops leading before the other starts.
import * as fs from "node:fs";
import * as os from "node:os";
import path from "node:path";
import * as k8s from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { monotonic, newIdentity, timing, type LeaderElector, type TimedElector } from "../src/leader/elector.js";
import { FencedRunner } from "../src/leader/fence.js";
import { LeaseElector } from "../src/leader/lease.js";
import { LockFileElector } from "../src/leader/lockfile.js";
import { leaderFor } from "../src/leader/select.js";
import { readSettings, settingsFrom } from "../src/settings.js";
import { apiClient } from "../src/runner/kubernetes.js";
import { FakeRunner } from "./support/fakes.js";
import { kubeConfigFor, NAMESPACE, startKubeTwin } from "../twins/kube.js";
import type { KubernetesTwin } from "../twins/kubernetes/index.js";

// Short on purpose; the bounds asserted below are orderings, never "within so many ms".
const T = timing(1500, { renewMs: 250, holdMs: 1000, retryMs: 150 });

let kube: { twin: KubernetesTwin; url: string };
let tmp: string;
const electors: LeaderElector[] = [];

beforeAll(async () => {
  kube = await startKubeTwin();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "leader-"));
});
afterEach(async () => {
  for (const e of electors.splice(0)) await e.stop();
  kube.twin.refuseLeaseWrites = null;
  kube.twin.leases.clear();
});
afterAll(async () => {
  await kube.twin.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Every change of leadership of the electors, in order, with the monotonic time it was seen. */
function watch(list: LeaderElector[]) {
  const events: { who: number; leading: boolean; at: number }[] = [];
  list.forEach((e, who) => e.onChange((leading) => events.push({ who, leading, at: monotonic() })));
  // Never two leaders at once: looked at every 20 ms, by each one's own isLeader().
  let overlap = 0;
  const timer = setInterval(() => {
    if (list.filter((e) => e.isLeader()).length > 1) overlap++;
  }, 20);
  return { events, overlaps: () => overlap, stop: () => clearInterval(timer) };
}

async function until<T>(what: string, probe: () => T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const kinds: { name: string; make(): TimedElector }[] = [
  {
    name: "a Kubernetes Lease",
    make: () =>
      new LeaseElector({
        coordination: apiClient(kubeConfigFor(kube.url, kube.twin.token), k8s.CoordinationV1Api, 5000),
        namespace: NAMESPACE,
        identity: newIdentity(),
        timing: T,
      }),
  },
  { name: "a lock file", make: () => new LockFileElector(path.join(tmp, "leader.lock"), newIdentity(), T) },
];

describe.each(kinds)("leader election with $name", ({ make }) => {
  function two(): [TimedElector, TimedElector] {
    const a = make();
    const b = make();
    electors.push(a, b);
    return [a, b];
  }

  it("lets exactly one of two contenders lead, and keeps it there while it renews", async () => {
    const [a, b] = two();
    const w = watch([a, b]);
    a.start();
    b.start();
    await until("a leader", () => a.isLeader() || b.isLeader());
    await new Promise((r) => setTimeout(r, 3 * T.durationMs));
    w.stop();
    expect(w.overlaps()).toBe(0);
    expect([a.isLeader(), b.isLeader()].filter(Boolean)).toHaveLength(1);
    // Led from the start to the end by the same one: renewals kept it.
    expect(w.events).toHaveLength(1);
  });

  it("hands over when the leader stops: at once when it gives the lock up, only after expiry when it just stops renewing", async () => {
    const [a, b] = two();
    const w = watch([a, b]);
    a.start();
    await until("a to lead", () => a.isLeader());
    b.start();
    await new Promise((r) => setTimeout(r, T.durationMs));
    expect(b.isLeader()).toBe(false);

    // A bot that hangs (or is killed) renews no more: b waits out the whole lock.
    const hung = monotonic();
    await a.stop(false);
    await until("b to take over", () => b.isLeader());
    const tookOver = w.events.find((e) => e.who === 1 && e.leading)!.at;
    // b read a's last renewal at most renewMs before a stopped, and then waited durationMs.
    expect(tookOver - hung).toBeGreaterThanOrEqual(T.durationMs - T.renewMs - 50);

    // A bot that stops gives the lock up: the next one does not wait for it to expire.
    const c = make();
    electors.push(c);
    c.start();
    await new Promise((r) => setTimeout(r, T.retryMs * 3));
    expect(c.isLeader()).toBe(false);
    await b.stop();
    await until("c to take over", () => c.isLeader(), T.durationMs);
    w.stop();
    expect(w.overlaps()).toBe(0);
  });

  it("stops leading when a renewal is lost, before the other can start", async () => {
    const [a, b] = two();
    const w = watch([a, b]);
    a.start();
    await until("a to lead", () => a.isLeader());
    b.start();
    await new Promise((r) => setTimeout(r, T.renewMs * 2));
    lose(a);
    await until("a to step down and a leader after it", () => w.events.length >= 3);
    w.stop();
    const [first, down, up] = w.events;
    expect(first).toMatchObject({ who: 0, leading: true });
    // a stepped down, and did so before anyone led again (b, or a once the lock was free):
    // there was no moment with two leaders.
    expect(down).toMatchObject({ who: 0, leading: false });
    expect(up!.leading).toBe(true);
    expect(down!.at).toBeLessThan(up!.at);
    expect(w.overlaps()).toBe(0);
  });
});

/** a's renewals do not get through from now on. */
let lose: (e: TimedElector) => void = () => undefined;
beforeAll(() => {
  lose = (e) => {
    if (e instanceof LeaseElector) kube.twin.refuseLeaseWrites = (holder) => holder === e.identity;
    else if (e instanceof LockFileElector) {
      // Taken over behind its back (it stalled, say): a's next heartbeat finds it is not its own.
      fs.writeFileSync(path.join(tmp, "leader.lock"), JSON.stringify({ identity: "elsewhere-1-x", pid: 1, host: "elsewhere", since: new Date().toISOString() }));
    }
  };
});

describe("the Lease in the twin", () => {
  it("answers a write from a stale resourceVersion with 409 Conflict", async () => {
    const api = apiClient(kubeConfigFor(kube.url, kube.twin.token), k8s.CoordinationV1Api, 5000);
    const created = await api.createNamespacedLease({
      namespace: NAMESPACE,
      body: { metadata: { name: "race" }, spec: { holderIdentity: "x", leaseDurationSeconds: 5 } },
    });
    const first = await api.replaceNamespacedLease({ name: "race", namespace: NAMESPACE, body: { ...created, spec: { ...created.spec, holderIdentity: "y" } } });
    expect(first.spec?.holderIdentity).toBe("y");
    const second = api.replaceNamespacedLease({ name: "race", namespace: NAMESPACE, body: { ...created, spec: { ...created.spec, holderIdentity: "z" } } });
    await expect(second).rejects.toMatchObject({ code: 409 });
    await expect(api.createNamespacedLease({ namespace: NAMESPACE, body: { metadata: { name: "race" }, spec: {} } })).rejects.toMatchObject({ code: 409 });
    expect((await api.readNamespacedLease({ name: "race", namespace: NAMESPACE })).spec?.holderIdentity).toBe("y");
  });
});

describe("choosing the election", () => {
  it("follows the runner unless AUTORESEARCH_LEADER says otherwise, and refuses anything else", () => {
    const kind = (env: Record<string, string>) => settingsFrom(env).leader.kind;
    expect(kind({})).toBe("lockfile");
    expect(kind({ AUTORESEARCH_RUNNER: "kubernetes" })).toBe("lease");
    expect(kind({ AUTORESEARCH_RUNNER: "kubernetes", AUTORESEARCH_LEADER: "off" })).toBe("off");
    const bad = readSettings({ AUTORESEARCH_LEADER: "raft" });
    expect(bad.ok ? "" : bad.error.message).toMatch(/AUTORESEARCH_LEADER is "raft": it must be lease \(a Kubernetes Lease/);
    const e = leaderFor(settingsFrom({ AUTORESEARCH_RUNS_DIR: path.join(tmp, "runs") }));
    expect(e.describe).toBe(`lock file ${path.join(tmp, "runs", "leader.lock")}`);
  });

  it("refuses the runner's writes to a follower, and lets it read", async () => {
    let leading = false;
    const runner = new FakeRunner();
    const fenced = new FencedRunner(runner, () => leading);
    await expect(fenced.cancel("r-1")).rejects.toThrow(/not the leader/);
    expect(await fenced.observe("r-1")).toEqual({ phase: "missing", runId: "r-1" });
    leading = true;
    await fenced.cancel("r-1");
  });

  it("says what the runner it fences says of itself: its name, slots, whether it queues and whether it is sandboxed", () => {
    const fence = (r: FakeRunner) => new FencedRunner(r, () => true);
    const queueing = Object.assign(new FakeRunner(3, true), { sandboxed: false });
    expect([fence(queueing).name, fence(queueing).slots, fence(queueing).queues, fence(queueing).sandboxed]).toEqual(["fake", 3, true, false]);
    expect([fence(new FakeRunner(1)).queues, fence(new FakeRunner(1)).sandboxed]).toEqual([false, true]);
  });
});

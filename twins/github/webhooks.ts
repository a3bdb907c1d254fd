// Signed webhook deliveries, one at a time and in order, after the API response that caused them
// (as GitHub does: the caller never sees its own events synchronously).

import { createHmac, randomUUID } from "node:crypto";

export interface Delivery {
  /** X-GitHub-Delivery. */
  id: string;
  event: string;
  action: string | null;
  appId: number;
  installationId: number | null;
  url: string | null;
  payload: Record<string, unknown>;
  /** HTTP status of the receiver; null while pending, when skipped, or on a network error. */
  status: number | null;
  state: "pending" | "delivered" | "failed" | "skipped";
  error?: string;
  durationMs?: number;
  createdAt: string;
}

export interface QueuedEvent {
  event: string;
  action: string | null;
  appId: number;
  installationId: number | null;
  url: string | null;
  secret: string;
  hookId: number;
  body: string;
}

export function sign(secret: string, body: string, algo: "sha256" | "sha1" = "sha256"): string {
  return `${algo}=${createHmac(algo, secret).update(body).digest("hex")}`;
}

export class WebhookDeliverer {
  readonly deliveries: Delivery[] = [];
  private readonly queue: Array<{ delivery: Delivery; queued: QueuedEvent; ready: Promise<void> }> = [];
  private running = false;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly opts: { enabled: boolean; timeoutMs: number },
  ) {}

  /** Queues an event; it is sent once `ready` settles (the causing API response went out). */
  enqueue(q: QueuedEvent, ready: Promise<void> = Promise.resolve()): Delivery {
    const delivery: Delivery = {
      id: randomUUID(),
      event: q.event,
      action: q.action,
      appId: q.appId,
      installationId: q.installationId,
      url: q.url,
      payload: JSON.parse(q.body) as Record<string, unknown>,
      status: null,
      state: "pending",
      createdAt: new Date().toISOString(),
    };
    this.deliveries.push(delivery);
    if (!this.opts.enabled || !q.url) {
      delivery.state = "skipped";
      return delivery;
    }
    this.queue.push({ delivery, queued: q, ready });
    return delivery;
  }

  /** Starts delivering what is queued (called once the causing API response has been sent). */
  kick(): void {
    if (this.running) return;
    this.running = true;
    setImmediate(() => void this.pump());
  }

  get pending(): number {
    return this.queue.length + (this.running ? 1 : 0);
  }

  /** Resolves once every queued delivery (including ones queued meanwhile) has been attempted. */
  idle(): Promise<void> {
    if (!this.running && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private async pump(): Promise<void> {
    try {
      for (let next = this.queue.shift(); next; next = this.queue.shift()) {
        await next.ready.catch(() => undefined);
        await this.send(next.delivery, next.queued);
      }
    } finally {
      this.running = false;
      if (this.queue.length > 0) {
        this.kick();
      } else {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async send(delivery: Delivery, q: QueuedEvent): Promise<void> {
    const started = Date.now();
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "GitHub-Hookshot/twin",
      "x-github-event": q.event,
      "x-github-delivery": delivery.id,
      "x-github-hook-id": String(q.hookId),
      "x-github-hook-installation-target-type": "integration",
      "x-github-hook-installation-target-id": String(q.appId),
      "x-hub-signature": sign(q.secret, q.body, "sha1"),
      "x-hub-signature-256": sign(q.secret, q.body, "sha256"),
    };
    try {
      const res = await fetch(q.url ?? "", {
        method: "POST",
        headers,
        body: q.body,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      delivery.status = res.status;
      delivery.state = res.ok ? "delivered" : "failed";
    } catch (err) {
      delivery.state = "failed";
      delivery.error = err instanceof Error ? err.message : String(err);
    }
    delivery.durationMs = Date.now() - started;
  }
}

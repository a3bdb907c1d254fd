// The installation's gate (src/github/backoff.ts): a rate-limit refusal holds every later
// request until the time GitHub named.
import { describe, expect, it } from "vitest";
import { BackoffGate, DEFAULT_RETRY_AFTER_SECONDS } from "../../src/github/backoff.js";

function clock() {
  let t = 1_000_000;
  const slept: number[] = [];
  return {
    now: () => t,
    sleep: async (ms: number) => {
      slept.push(ms);
      t += ms;
    },
    slept,
    advance: (ms: number) => (t += ms),
  };
}

const answer = (status: number, headers: Record<string, string> = {}, message = "") =>
  new Response(JSON.stringify({ message }), { status, headers });

describe("the backoff gate", () => {
  it("closes for retry-after on a secondary limit (403 or 429) and holds every request until then", async () => {
    const c = clock();
    const gate = new BackoffGate(c.now, c.sleep);
    await gate.observe(answer(429, { "retry-after": "7" }));
    expect(gate.events).toMatchObject([{ kind: "secondary", status: 429, until: c.now() + 7000 }]);
    await gate.wait();
    expect(c.slept).toEqual([7000]);
    await gate.wait(); // open now: no further wait
    expect(c.slept).toEqual([7000]);
  });

  it("waits a minute when the secondary answer names no time, and until the reset after the primary limit", async () => {
    const c = clock();
    const gate = new BackoffGate(c.now, c.sleep);
    await gate.observe(answer(403, {}, "You have exceeded a secondary rate limit."));
    expect(gate.events[0]).toMatchObject({ kind: "secondary", until: c.now() + DEFAULT_RETRY_AFTER_SECONDS * 1000 });
    c.advance(DEFAULT_RETRY_AFTER_SECONDS * 1000);
    const reset = Math.floor(c.now() / 1000) + 30;
    await gate.observe(answer(403, { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(reset) }, "API rate limit exceeded"));
    expect(gate.events[1]).toMatchObject({ kind: "primary", until: reset * 1000 + 1000 });
  });

  it("ignores refusals that are not rate limits, and never shortens a longer wait", async () => {
    const c = clock();
    const gate = new BackoffGate(c.now, c.sleep);
    await gate.observe(answer(403, { "x-ratelimit-remaining": "4000" }, "Resource not accessible by integration"));
    await gate.observe(answer(404));
    expect(gate.events).toEqual([]);
    await gate.observe(answer(429, { "retry-after": "30" }));
    await gate.observe(answer(429, { "retry-after": "5" }));
    expect(gate.events).toHaveLength(1);
  });

  it("as a fetch: every attempt waits at the gate and is observed", async () => {
    const c = clock();
    const gate = new BackoffGate(c.now, c.sleep);
    const sent: number[] = [];
    const replies = [answer(429, { "retry-after": "3" }), answer(200)];
    const fetch = gate.fetch(async () => {
      sent.push(c.now());
      return replies.shift()!;
    });
    expect((await fetch("https://api.github.test/x")).status).toBe(429);
    expect((await fetch("https://api.github.test/x")).status).toBe(200);
    expect(sent[1]! - sent[0]!).toBe(3000);
  });
});

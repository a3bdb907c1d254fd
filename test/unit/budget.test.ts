// The installation's write budget: writes wait for a place in both windows (80 a minute, 500
// an hour on github.com; configurable for GitHub Enterprise Server), in order; reconcile reads
// what is left, when more fits, and how much a night used.
import { describe, expect, it } from "vitest";
import { GITHUB_WRITE_LIMITS, isBudgetedWrite, WriteBudget } from "../../src/github/budget.js";

function clock(start = Date.parse("2026-03-01T22:00:00Z")) {
  let t = start;
  const sleeps: number[] = [];
  return {
    now: () => t,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      t += ms;
    },
    advance: (ms: number) => {
      t += ms;
    },
    sleeps,
  };
}

describe("the write budget", () => {
  it("lets writes through while both windows have room, then makes the next one wait for the minute", async () => {
    const c = clock();
    const b = new WriteBudget({ perMinute: 3, perHour: 100 }, c.now, c.sleep);
    for (let i = 0; i < 3; i++) await b.acquire();
    expect(c.sleeps).toEqual([]);
    expect(b.left()).toEqual({ minute: 0, hour: 97 });
    await b.acquire();
    // The oldest of the three leaves the minute window 60 s after it was taken.
    expect(c.sleeps).toEqual([60_000]);
    expect(b.left().hour).toBe(96);
  });

  it("never sends more than the hour allows: the 501st write waits until the first is an hour old", async () => {
    const c = clock();
    const b = new WriteBudget(GITHUB_WRITE_LIMITS, c.now, c.sleep);
    const t0 = c.now();
    for (let i = 0; i < 500; i++) {
      await b.acquire();
      c.advance(1000); // one a second: within the minute's 80
    }
    expect(b.left().hour).toBe(0);
    expect(b.fitsAt(1)).toBe(t0 + 3_600_000);
    await b.acquire();
    expect(c.now()).toBe(t0 + 3_600_000);
  });

  it("serves waiting writes in the order they asked", async () => {
    const c = clock();
    const b = new WriteBudget({ perMinute: 1, perHour: 10 }, c.now, c.sleep);
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((i) => b.acquire().then(() => order.push(i))));
    expect(order).toEqual([1, 2, 3]);
    expect(c.sleeps).toEqual([60_000, 60_000]);
  });

  it("tells when n more writes fit, and what a night used, its busiest hour and the hold-backs", async () => {
    const c = clock();
    const b = new WriteBudget({ perMinute: 80, perHour: 10 }, c.now, c.sleep);
    const t0 = c.now();
    for (let i = 0; i < 10; i++) {
      await b.acquire();
      c.advance(60_000);
    }
    // Four more need the four oldest writes to age out.
    expect(b.fitsAt(4)).toBe(t0 + 3 * 60_000 + 3_600_000);
    b.heldBack();
    b.heldBack();
    expect(b.usage(t0, c.now())).toMatchObject({ writes: 10, peakHour: 10, heldBack: 2 });
    expect(b.usage(t0 + 5 * 3_600_000, t0 + 6 * 3_600_000)).toMatchObject({ writes: 0, heldBack: 0 });
  });
});

describe("what counts as a write", () => {
  it("is every request but a read, except minting an installation token", () => {
    expect(isBudgetedWrite("GET", "https://api.github.com/repos/a/b/pulls")).toBe(false);
    expect(isBudgetedWrite("HEAD", "https://api.github.com/repos/a/b")).toBe(false);
    for (const m of ["POST", "PATCH", "PUT", "DELETE"]) expect(isBudgetedWrite(m, "https://api.github.com/repos/a/b/issues/1")).toBe(true);
    expect(isBudgetedWrite("POST", "https://api.github.com/app/installations/42/access_tokens")).toBe(false);
    expect(isBudgetedWrite("POST", "https://ghe.example/api/v3/app/installations/42/access_tokens")).toBe(false);
  });
});

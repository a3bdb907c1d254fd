// The controller's scheduling (src/controller.ts), as a specification: one pass at a time per
// repository, the triggers that arrive during a pass coalesced into one more pass, repositories
// independent of each other, a failed pass retried after growing delays (capped at the resync
// period), a report's `again` and `retryAt` honoured, and stop() draining the pass in flight.
// The pass is scripted (the controller's reconcile seam) and time is vitest's fake clock, so
// every delay is exact and no test waits for real time.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Controller, type ControllerOptions } from "../src/controller.js";
import type { ReconcileDeps, ReconcileReport } from "../src/reconcile/index.js";
import type { GitHubPort, RepoRef, RunSpec } from "../src/types.js";
import { FakeRunner, measured } from "./support/fakes.js";

const T0 = Date.parse("2025-03-01T22:00:00Z");
const RESYNC_MS = 60_000;
const A: RepoRef = { owner: "alice", repo: "research" };
const B: RepoRef = { owner: "bob", repo: "lab" };
const name = (r: RepoRef) => `${r.owner}/${r.repo}`;

/** Every promise continuation that waits on no timer has run: real setImmediate runs after them all. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Move the fake clock (and run the timers it passes), then let the passes they start finish. */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await settle();
}

type Answer = Partial<ReconcileReport> | Error;

interface Held {
  /** Resolves once the held pass has started. */
  started: Promise<void>;
  /** Let the held pass end with this answer. */
  release(answer?: Answer): void;
}

/** The pass, scripted per repository: what each pass answers, and passes held open on request. */
class ScriptedPasses {
  /** Every pass that started, in order, with the fake clock's time. */
  readonly started: { repo: string; firstPass: boolean; at: number }[] = [];
  private readonly answers = new Map<string, Answer[]>();
  private readonly holds = new Map<string, { start(): void; answer: Promise<Answer | undefined> }[]>();

  /** The next passes of `repo` end with these answers, in order; later ones with a clean report. */
  answer(repo: RepoRef, ...answers: Answer[]): void {
    this.answers.set(name(repo), [...(this.answers.get(name(repo)) ?? []), ...answers]);
  }

  /** The next pass of `repo` stays open until released. */
  hold(repo: RepoRef): Held {
    let start!: () => void;
    let release!: (a?: Answer) => void;
    const started = new Promise<void>((r) => (start = r));
    const answer = new Promise<Answer | undefined>((r) => (release = r));
    this.holds.set(name(repo), [...(this.holds.get(name(repo)) ?? []), { start, answer }]);
    return { started, release };
  }

  count(repo: RepoRef): number {
    return this.started.filter((p) => p.repo === name(repo)).length;
  }

  times(repo: RepoRef): number[] {
    return this.started.filter((p) => p.repo === name(repo)).map((p) => p.at - T0);
  }

  readonly reconcile = async (deps: ReconcileDeps): Promise<ReconcileReport> => {
    const repo = name(deps.gh.repo);
    this.started.push({ repo, firstPass: deps.firstPass ?? false, at: Date.now() });
    const hold = this.holds.get(repo)?.shift();
    let answer: Answer | undefined;
    if (hold) {
      hold.start();
      answer = await hold.answer;
    }
    answer ??= this.answers.get(repo)?.shift();
    if (answer instanceof Error) throw answer;
    return { waiting: null, submitted: [], finished: [], proposed: [], errors: [], again: false, ...answer };
  };
}

let passes: ScriptedPasses;
let runner: FakeRunner;
let logged: string[];
let controller: Controller | null;
let repos: { installationId: number; repo: RepoRef }[];

function newController(over: Partial<ControllerOptions> = {}): Controller {
  controller = new Controller({
    runner,
    // The scripted pass reads nothing from GitHub: the port only names the repository.
    github: async (_installationId, repo) => ({ repo }) as unknown as GitHubPort,
    listRepos: async () => repos,
    proposerFor: () => {
      throw new Error("the scripted pass asks for no proposer");
    },
    log: { info: () => undefined, warn: (m) => logged.push(m), error: (m) => logged.push(m) },
    resyncMs: RESYNC_MS,
    reconcile: passes.reconcile,
    // The jitter at its top: each retry comes at its full delay (a test below sets the bottom).
    random: () => 1,
    ...over,
  });
  return controller;
}

function spec(runId: string, repo: RepoRef): RunSpec {
  return {
    runId, repo, pull: 1, sha: "0".repeat(40), source: { url: "https://example.invalid/tarball", token: null }, workdir: ".",
    trainCmd: "python3 train.py", prepareCmd: null, prepareFiles: [], budgetSeconds: 300, evalAllowanceSeconds: 120, timeoutSeconds: null,
  };
}

beforeEach(() => {
  // Only the clock and the timers are faked: setImmediate stays real, for settle().
  vi.useFakeTimers({ now: T0, toFake: ["Date", "setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
  passes = new ScriptedPasses();
  runner = new FakeRunner();
  logged = [];
  controller = null;
  repos = [];
});

afterEach(async () => {
  await controller?.stop();
  vi.useRealTimers();
});

describe("the controller", () => {
  it("runs one more pass, not one per trigger, for the triggers that arrive while a pass runs", async () => {
    const c = newController();
    const first = passes.hold(A);
    c.trigger(1, A);
    await first.started;
    for (let i = 0; i < 5; i++) c.trigger(1, A);
    await settle();
    expect(passes.count(A)).toBe(1); // one pass at a time
    first.release();
    await c.idle();
    expect(passes.count(A)).toBe(2);
    // A trigger once it is quiet is not swallowed: it runs a pass of its own.
    c.trigger(1, A);
    await c.idle();
    expect(passes.started.map((p) => p.firstPass)).toEqual([true, false, false]);
  });

  it("runs each repository's passes independently: one repository's long pass or failures hold no other", async () => {
    const c = newController();
    const long = passes.hold(A);
    c.trigger(1, A);
    await long.started;
    c.trigger(2, B);
    await settle();
    expect(passes.count(B)).toBe(1); // ran while A's pass was still open
    c.trigger(2, B);
    await settle();
    expect(passes.count(B)).toBe(2);
    // A fails and waits for its retry; B is not held back by A's backoff.
    long.release(new Error("GitHub answered 502"));
    await settle();
    c.trigger(2, B);
    await settle();
    expect(passes.count(B)).toBe(3);
    expect(passes.times(B)).toEqual([0, 0, 0]);
    expect(passes.count(A)).toBe(1);
    await advance(5_000);
    expect(passes.count(A)).toBe(2);
    expect(passes.count(B)).toBe(3);
  });

  it("retries a failing pass after 5 s, 10 s, 20 s, … capped at the resync period, and from 5 s again after a pass succeeds", async () => {
    const c = newController();
    // Thrown failures (GitHub down) and errors listed in the report count alike.
    const down = new Error("connect ECONNREFUSED");
    passes.answer(A, down, { errors: ["#3: the check run could not be written"] }, down, down, down, down, {}, down);
    c.trigger(1, A);
    await settle();
    const expected = [0];
    for (const delay of [5_000, 10_000, 20_000, 40_000, RESYNC_MS, RESYNC_MS]) {
      await advance(delay - 1);
      expect(passes.count(A), `not before ${delay} ms`).toBe(expected.length);
      await advance(1);
      expected.push(expected.at(-1)! + delay);
      expect(passes.times(A)).toEqual(expected);
    }
    // The seventh pass succeeded: nothing is retried.
    await advance(10 * RESYNC_MS);
    expect(passes.count(A)).toBe(7);
    // The next failure starts the delays over.
    c.trigger(1, A);
    await settle();
    expect(passes.count(A)).toBe(8);
    await advance(4_999);
    expect(passes.count(A)).toBe(8);
    await advance(1);
    expect(passes.count(A)).toBe(9);
    expect(logged.filter((l) => l.includes("alice/research: reconcile failed: connect ECONNREFUSED"))).toHaveLength(6);
  });

  it("jitters each retry between half and all of its delay, so repositories failing together come back apart", async () => {
    const c = newController({ random: () => 0 });
    const down = new Error("connect ECONNREFUSED");
    passes.answer(A, down, down);
    c.trigger(1, A);
    await settle();
    await advance(2_499);
    expect(passes.count(A)).toBe(1);
    await advance(1);
    expect(passes.times(A)).toEqual([0, 2_500]);
    await advance(5_000); // the second failure: half of 10 s
    expect(passes.times(A)).toEqual([0, 2_500, 7_500]);
  });

  it("runs the next pass at the time a report names in retryAt, not before, and not at once when that time is past", async () => {
    const c = newController();
    passes.answer(A, { retryAt: T0 + 90_000, waiting: "the write budget is spent" }, { retryAt: T0 - 5_000 });
    c.trigger(1, A);
    await settle();
    await advance(89_999);
    expect(passes.count(A)).toBe(1);
    await advance(1);
    expect(passes.times(A)).toEqual([0, 90_000]);
    // A time already past: a second later, not a pass straight after the other.
    await advance(999);
    expect(passes.count(A)).toBe(2);
    await advance(1);
    expect(passes.times(A)).toEqual([0, 90_000, 91_000]);
  });

  it("runs another pass at once when a report says again (the default branch moved)", async () => {
    const c = newController();
    passes.answer(A, { again: true }, { again: true, errors: ["#4: a comment could not be written"] }, {});
    c.trigger(1, A);
    await c.idle();
    // Three passes without the clock moving: `again` waits for no timer, even after an error.
    expect(passes.times(A)).toEqual([0, 0, 0]);
  });

  it("runs a pass of a repository when one of its runs ends, and looks at every repository for a run it does not know", async () => {
    repos = [{ installationId: 1, repo: A }, { installationId: 2, repo: B }];
    const c = newController();
    c.trigger(1, A);
    await c.idle();
    await runner.submit(spec("alice-research-1-1", A));
    await runner.submit(spec("bob-lab-1-1", B));
    runner.finish("alice-research-1-1", measured(1.0));
    await settle();
    expect([passes.count(A), passes.count(B)]).toEqual([2, 0]);
    // B has had no pass since this process started: its run's end leads to a resync of all.
    runner.finish("bob-lab-1-1", measured(1.0));
    await settle();
    expect([passes.count(A), passes.count(B)]).toEqual([3, 1]);
  });

  it("passes every repository it can see at start and again every resync period", async () => {
    repos = [{ installationId: 1, repo: A }, { installationId: 2, repo: B }];
    const c = newController();
    c.start();
    await settle();
    expect([passes.times(A), passes.times(B)]).toEqual([[0], [0]]);
    await advance(RESYNC_MS - 1);
    expect([passes.count(A), passes.count(B)]).toEqual([1, 1]);
    await advance(1);
    expect([passes.times(A), passes.times(B)]).toEqual([[0, RESYNC_MS], [0, RESYNC_MS]]);
  });

  it("lists no repository while another bot leads, and lists them all when this one takes over", async () => {
    repos = [{ installationId: 1, repo: A }, { installationId: 2, repo: B }];
    let leads = false;
    let listings = 0;
    const c = newController({ isLeader: () => leads, listRepos: async () => (listings++, repos) });
    c.start();
    await advance(3 * RESYNC_MS);
    c.trigger(1, A); // a webhook that reached the follower
    await settle();
    expect([listings, passes.count(A), passes.count(B)]).toEqual([0, 0, 0]);
    expect(logged).toEqual([]);
    leads = true;
    await c.resync(); // what the bot does when it becomes leader
    await settle();
    expect([listings, passes.count(A), passes.count(B)]).toEqual([1, 1, 1]);
    await advance(RESYNC_MS);
    expect([listings, passes.count(A), passes.count(B)]).toEqual([2, 2, 2]);
  });

  it("stop() waits for the pass in flight, then runs nothing more: no coalesced pass, retry, wake-up, resync or run's end", async () => {
    repos = [{ installationId: 1, repo: A }, { installationId: 2, repo: B }];
    const c = newController();
    const open = passes.hold(A);
    passes.answer(B, new Error("GitHub answered 502"), { errors: ["#2: the label could not be set"], retryAt: T0 + 30_000 });
    c.start();
    await open.started;
    await settle();
    await advance(5_000); // B's retry fails too: a retry is due at 15 s, and a wake-up at 30 s
    expect(passes.count(B)).toBe(2);
    c.trigger(1, A); // coalesced into one more pass of A, due when the open one ends

    let stopped = false;
    const stopping = c.stop().then(() => (stopped = true));
    await settle();
    expect(stopped).toBe(false);
    open.release();
    await stopping;
    expect(passes.count(A)).toBe(1);
    expect(vi.getTimerCount(), "timers left behind by stop()").toBe(0);

    c.trigger(1, A);
    await runner.submit(spec("alice-research-1-1", A));
    runner.finish("alice-research-1-1", measured(1.0));
    await advance(10 * RESYNC_MS);
    expect([passes.count(A), passes.count(B)]).toEqual([1, 2]);
  });
});

import { describe, expect, it } from "vitest";
import { buildMessages, DEFAULT_MAX_PROMPT_CHARS } from "../../src/prompt.js";
import { SEARCH_REPLACE_FORMAT_HELP } from "../../src/edits.js";
import type { HistoryEntry, ProposalRequest } from "../../src/types.js";

const TRAIN = [
  "import torch",
  "",
  "LEARNING_RATE = 3e-4",
  "WARMUP_STEPS = 100",
  "DEPTH = 8",
  "",
  "def main():",
  "    model = build(depth=DEPTH)",
  "    train(model, lr=LEARNING_RATE, warmup=WARMUP_STEPS)",
  "",
].join("\n");

const OUTCOMES: HistoryEntry["outcome"][] = ["better", "worse", "within noise", "crash", "worse", "worse"];

function entry(n: number): HistoryEntry {
  const outcome = OUTCOMES[n % OUTCOMES.length] ?? "worse";
  return {
    n,
    title: `Experiment idea number ${n}: tweak hyperparameter ${n % 17}`,
    hypothesis: `Hypothesis ${n}`,
    verdict: outcome === "better" ? "keep" : outcome === "crash" ? "crash" : "discard",
    valBpb: outcome === "crash" ? null : 1 - n / 10_000,
    delta: outcome === "crash" ? null : outcome === "better" ? -0.004 : outcome === "within noise" ? -0.0002 : 0.003,
    outcome,
    reason: outcome === "crash" ? `CUDA out of memory at step ${n}` : null,
    treeHash: `hash-${n}`,
  };
}

function request(over: Partial<ProposalRequest> = {}): ProposalRequest {
  return {
    guidance: "# Program\n\nFocus on the optimizer tonight.\n",
    files: { "train.py": TRAIN },
    editablePaths: ["train.py"],
    history: [],
    bestBpb: null,
    triedTreeHashes: new Set(),
    seed: 1,
    ...over,
  };
}

const total = (msgs: { content: string }[]) => msgs.reduce((n, m) => n + m.content.length, 0);

describe("buildMessages", () => {
  it("has a system message with the role and format and a user message with guidance, history and the file", () => {
    const msgs = buildMessages(request({ history: [entry(1), entry(2)], bestBpb: 0.9999 }), { structured: true });
    expect(msgs.map((m) => m.role)).toEqual(["system", "user"]);
    const [system, user] = msgs.map((m) => m.content);
    expect(system).toContain("val_bpb");
    expect(system).toContain("ONE focused change");
    expect(system).toContain("`train.py`");
    expect(system).toContain('"hypothesis"');
    expect(system).toContain('"edits"');
    expect(user).toContain("Focus on the optimizer tonight.");
    expect(user).toContain(TRAIN);
    expect(user).toContain("Best val_bpb so far: 0.999900");
    expect(user).toContain("#1 ");
    expect(user).toContain("Already tried");
  });

  it("uses the SEARCH/REPLACE format help in text mode", () => {
    const [system] = buildMessages(request(), { structured: false });
    expect(system?.content).toContain(SEARCH_REPLACE_FORMAT_HELP);
    expect(system?.content).not.toContain('"edits"');
  });

  it("stays within the bound with 500 experiments and a 200 kB program.md, keeping the newest history and the whole file", () => {
    const history = Array.from({ length: 500 }, (_, i) => entry(i + 1));
    const guidance = `# Program\n\nSTART OF GUIDANCE\n${"Try things with the optimizer and the schedule. ".repeat(200_000 / 48)}\nEND OF GUIDANCE\n`;
    expect(guidance.length).toBeGreaterThan(200_000);
    const msgs = buildMessages(request({ guidance, history, bestBpb: 0.95 }), { structured: true });
    expect(total(msgs)).toBeLessThanOrEqual(DEFAULT_MAX_PROMPT_CHARS);
    const user = msgs[1]?.content ?? "";
    expect(user).toContain(TRAIN);
    expect(user).toContain("START OF GUIDANCE");
    expect(user).not.toContain("END OF GUIDANCE");
    expect(user).toMatch(/program\.md cut here/);
    // The newest experiments are listed, the oldest only summarized.
    expect(user).toContain("#500 ");
    expect(user).toContain("#495 ");
    expect(user).not.toMatch(/#1 [A-Z]/);
    expect(user).toMatch(/… \d+ earlier experiments not listed in detail: \d+ better, \d+ worse, \d+ within noise, \d+ crashed/);
    // within noise is told apart from worse
    expect(user).toMatch(/#\d+ WITHIN NOISE/);
    expect(user).toMatch(/#\d+ WORSE/);
    expect(user).toMatch(/#\d+ CRASH .* reason: CUDA out of memory/);
  });

  it("keeps the whole guidance and truncates the oldest history first when only the history is long", () => {
    const history = Array.from({ length: 500 }, (_, i) => entry(i + 1));
    const guidance = "# Program\n\nKEEP ALL OF THIS GUIDANCE.\n";
    const maxChars = 20_000;
    const msgs = buildMessages(request({ guidance, history, bestBpb: 0.95 }), { structured: true, maxChars });
    expect(total(msgs)).toBeLessThanOrEqual(maxChars);
    const user = msgs[1]?.content ?? "";
    expect(user).toContain("KEEP ALL OF THIS GUIDANCE.");
    expect(user).not.toMatch(/program\.md cut here/);
    // The full detail window of the newest experiments, and the newest of the older titles.
    for (const n of [500, 480, 471]) expect(user).toContain(`#${n} `);
    expect(user).toContain("Experiment idea number 470:");
    expect(user).not.toContain("Experiment idea number 2:");
    expect(user).toMatch(/titles of \d+ older experiments omitted/);
    expect(user).toMatch(/Earlier crashes and their reasons/);
  });

  it("lists the whole history when it fits, with crash reasons and the already-tried titles", () => {
    const history = Array.from({ length: 40 }, (_, i) => entry(i + 1));
    const user = buildMessages(request({ history, bestBpb: 0.99 }), { structured: true })[1]?.content ?? "";
    for (let n = 1; n <= 40; n++) expect(user).toContain(`Experiment idea number ${n}:`);
    expect(user).toContain("CUDA out of memory at step 3");
    expect(user).not.toMatch(/omitted/);
  });

  it("is bounded for any maxChars the file fits in, and never cuts the file", () => {
    const history = Array.from({ length: 300 }, (_, i) => entry(i + 1));
    const guidance = "G".repeat(50_000);
    const notes = Array.from({ length: 20 }, (_, i) => `note ${i} ${"n".repeat(900)}`);
    for (const maxChars of [6_000, 8_000, 12_000, 30_000, 60_000, 200_000]) {
      const msgs = buildMessages(request({ guidance, history, bestBpb: 0.9 }), { structured: false, maxChars, reviewerNotes: notes });
      expect(total(msgs)).toBeLessThanOrEqual(maxChars);
      expect(msgs[1]?.content).toContain(TRAIN);
    }
  });

  it("throws a clear error when the file alone exceeds the bound", () => {
    const big = "x = 1\n".repeat(20_000);
    expect(() => buildMessages(request({ files: { "train.py": big } }), { structured: true, maxChars: 50_000 })).toThrow(
      /editable files alone \(train\.py: 120000 chars\).*prompt bound of 50000/,
    );
  });

  it("puts reviewer notes in their own bounded section, marked as from maintainers, newest kept", () => {
    const notes = ["This only helped because of the LR bump, try it with the old LR.", ...Array.from({ length: 30 }, (_, i) => `Note ${i}: ${"z".repeat(3_000)}`)];
    const user = buildMessages(request(), { structured: true, reviewerNotes: notes })[1]?.content ?? "";
    expect(user).toContain("# Notes from maintainers");
    expect(user).toMatch(/maintainers of this repository/);
    expect(user).toContain("Note 29:");
    expect(user).not.toContain("LR bump");
    expect(user).toMatch(/notes omitted to fit the prompt/);
    const section = user.slice(user.indexOf("# Notes from maintainers"), user.indexOf("# Experiment history"));
    expect(section.length).toBeLessThanOrEqual(8_200);
    expect(section).toContain("[… note cut]");

    const small = buildMessages(request(), { structured: true, reviewerNotes: ["Try it with the old LR."] })[1]?.content ?? "";
    expect(small).toContain("- Try it with the old LR.");
    expect(buildMessages(request(), { structured: true })[1]?.content).not.toContain("Notes from maintainers");
  });

  it("fences files containing backticks safely", () => {
    const text = 'doc = """```python\nx\n```"""\n';
    const user = buildMessages(request({ files: { "train.py": text } }), { structured: true })[1]?.content ?? "";
    expect(user).toContain("````python\n" + text + "````");
  });
});

import { describe, expect, it } from "vitest";
import {
  BODY_LIMIT,
  branchName,
  decodeRecord,
  encodeRecord,
  LABEL,
  LABELS,
  labelsFor,
  parseBranchName,
  renderBody,
  STATE_LABELS,
  toResultsTsv,
  treeHash,
} from "../../src/ledger/index.js";
import type { ExperimentRecord, Measurement, TrainerResult } from "../../src/types.js";

function measurement(sha: string, over: Partial<TrainerResult> = {}): Measurement {
  return {
    runId: `run-${sha.slice(0, 4)}`,
    sha,
    finishedAt: "2025-03-01T23:10:00Z",
    result: {
      status: "ok",
      val_bpb: 0.99,
      exit_code: 0,
      reason: "",
      log_tail: "step 953 | loss 2.81\n",
      summary: { val_bpb: 0.99, training_seconds: 300.1, peak_vram_mb: 45060.2, num_steps: 953, depth: 8 },
      stage: "train",
      ...over,
    },
  };
}

function record(over: Partial<ExperimentRecord> = {}): ExperimentRecord {
  return {
    v: 1,
    n: 7,
    kind: "experiment",
    title: "MATRIX_LR: 0.04 → 0.05",
    hypothesis: "Raising MATRIX_LR from 0.04 to 0.05 may lower val_bpb.",
    proposer: "mutate",
    baseSha: "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    headSha: "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    edits: [{ path: "train.py", search: "MATRIX_LR = 0.04\n", replace: "MATRIX_LR = 0.05\n" }],
    treeHash: "t7",
    baseTreeHash: "t3",
    guidanceSha: "9999999ccccccccccccccccccccccccccccccccc",
    baselineBpb: 0.9979,
    baselineN: 3,
    attempt: 1,
    state: "queued",
    measurements: [],
    decision: null,
    createdAt: "2025-03-01T23:00:00Z",
    updatedAt: "2025-03-01T23:00:00Z",
    ...over,
  };
}

const measured = record({
  state: "kept",
  measurements: [measurement("2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")],
  decision: {
    verdict: "keep",
    delta: -0.0079,
    reasons: ["val_bpb 0.990000 is 0.007900 lower than the baseline 0.997900, more than the noise threshold 0.001000."],
  },
});

describe("the hidden record", () => {
  it("round-trips through a PR body", () => {
    for (const r of [record(), measured]) {
      const body = renderBody(r, { repoUrl: "https://github.com/o/r" });
      expect(decodeRecord(body)).toEqual(r);
      expect(decodeRecord(encodeRecord(r))).toEqual(r);
    }
  });

  it("keeps the mark of a run the machine failed (a full disk), so that later decisions do not hold it against the change", () => {
    const m = measurement("2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    const diskFull = { ...m, result: { ...m.result, status: "crash" as const, val_bpb: null, infrastructure: true, reason: "the disk is full" } };
    const r = record({ state: "queued", attempt: 2, measurements: [diskFull] });
    expect(decodeRecord(renderBody(r, { repoUrl: "https://github.com/o/r" }))?.measurements[0]?.result.infrastructure).toBe(true);
  });

  it("is an HTML comment whose JSON cannot end it early", () => {
    const tricky = record({ hypothesis: "Arrows --> and --!> and <!-- must not break the comment" });
    const block = encodeRecord(tricky);
    expect(block.startsWith("<!-- autoresearch:record\n")).toBe(true);
    expect(block.endsWith("\n-->")).toBe(true);
    expect(block.slice(0, -3)).not.toContain(">");
    expect(decodeRecord(renderBody(tricky))).toEqual(tricky);
  });

  it("survives a person editing the human part in the browser (CRLF, added text)", () => {
    const body = renderBody(measured).replace(/\n/g, "\r\n").replace("**Hypothesis.**", "**Hypothesis (edited).**");
    expect(decodeRecord(`${body}\r\n\r\nThanks, looks good!`)).toEqual(measured);
  });

  it("reads the last block when a body contains several", () => {
    const older = record({ state: "queued" });
    expect(decodeRecord(`${encodeRecord(older)}\n\n${encodeRecord(measured)}`)).toEqual(measured);
  });

  it.each([
    ["a missing body", null],
    ["an empty body", ""],
    ["a body without a record", "Just a normal PR.\n<!-- some other tool -->"],
    ["malformed JSON", "<!-- autoresearch:record\n{not json\n-->"],
    ["a record of another shape", '<!-- autoresearch:record\n{"v":2,"n":1}\n-->'],
    ["an unterminated block", "<!-- autoresearch:record\n{}"],
    ["a last block damaged by an edit", `${encodeRecord(record())}\n<!-- autoresearch:record\n{"v":1,"n":\n-->`],
  ])("returns null, without throwing, for %s", (_what, body) => {
    expect(decodeRecord(body)).toBeNull();
  });

  it("keeps non-finite summary figures readable", () => {
    const r = record({ measurements: [measurement("abc", { summary: { mfu_percent: Number.NaN } })] });
    expect(decodeRecord(encodeRecord(r))?.measurements[0]?.result.summary).toEqual({ mfu_percent: "NaN" });
  });
});

describe("renderBody", () => {
  it("states the hypothesis, the change, the baseline, the status and the record", () => {
    const body = renderBody(record(), { repoUrl: "https://github.com/o/r" });
    expect(body).toContain("**Hypothesis.** Raising MATRIX_LR from 0.04 to 0.05 may lower val_bpb.");
    expect(body).toContain("```diff\n--- a/train.py\n+++ b/train.py\n@@ edit 1 of 1 @@\n-MATRIX_LR = 0.04\n+MATRIX_LR = 0.05\n```");
    expect(body).toContain(
      "val_bpb **0.997900**, measured in experiment 3, for [`1111111`](https://github.com/o/r/commit/1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa), the default-branch commit this change is built on.",
    );
    expect(body).toContain("### Status\n\nQueued or training (run 1): the check run appears with the decision.");
    expect(body).not.toContain("### Result");
    expect(body.trimEnd().endsWith("-->")).toBe(true);
  });

  it("prefers a diff of the whole files when one is given", () => {
    const diff = "--- a/train.py\n+++ b/train.py\n@@ -4 +4 @@\n-MATRIX_LR = 0.04\n+MATRIX_LR = 0.05\n";
    expect(renderBody(record(), { diff })).toContain("```diff\n" + diff + "```");
  });

  it("reports the result, the decision with its reasons and the summary figures", () => {
    const body = renderBody(measured);
    expect(body).toContain("| 1 | `2222222` | ok | 0.990000 |  |");
    expect(body).toContain("val_bpb **0.990000**, delta **-0.007900** against the baseline (negative is better).");
    expect(body).toContain(
      "**Decision: keep.**\n\n- val_bpb 0.990000 is 0.007900 lower than the baseline 0.997900, more than the noise threshold 0.001000.",
    );
    expect(body).toContain("| peak_vram_mb | 45060.2 |");
    expect(body).toContain("Kept: the change improved val_bpb and was merged.");
  });

  it("shows the end of the log of a crashed run", () => {
    const crashed = record({
      state: "crashed",
      measurements: [
        measurement("3333333", { status: "oom", val_bpb: null, exit_code: 137, reason: "CUDA out of memory", log_tail: "x\rTraceback\nOOM\n", summary: {} }),
      ],
      decision: { verdict: "crash", delta: null, reasons: ["The run ran out of memory (exit code 137): CUDA out of memory."] },
    });
    const body = renderBody(crashed);
    expect(body).toContain("| 1 | `3333333` | oom | — | CUDA out of memory |");
    expect(body).toContain("<details><summary>End of the log of the last run</summary>\n\n```\nx\nTraceback\nOOM\n```");
    expect(body).toContain("Crashed: the run failed; the PR is closed unmerged.");
  });

  it("describes a baseline as a measurement of the default branch", () => {
    const body = renderBody(record({ kind: "baseline", title: "Baseline", hypothesis: "", edits: [], baselineBpb: null }));
    expect(body).toContain("**Baseline.** The default branch as it is, measured so that experiments have a figure to beat.");
    expect(body).not.toContain("### What changed");
    expect(body).not.toContain("### Measured against");
  });

  it("escapes HTML in text from the proposer so it cannot hide the rest of the body", () => {
    const body = renderBody(record({ hypothesis: "Use <!-- tricks --> and <b>bold</b>" }));
    expect(body).toContain("**Hypothesis.** Use &lt;!-- tricks --&gt; and &lt;b&gt;bold&lt;/b&gt;");
  });

  it("stays under GitHub's size limit, cutting the shown diff but never the record", () => {
    const big = "x = 1\n".repeat(12_000);
    const r = record({ edits: [{ path: "train.py", search: "A = 1\n", replace: "A = 2\n" }] });
    const body = renderBody(r, { diff: `--- a/train.py\n+++ b/train.py\n@@ -1 +1,12000 @@\n${big.replace(/^/gm, "+")}` });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(BODY_LIMIT);
    expect(body).toMatch(/The diff is cut here: \d+ more lines are not shown; see the Files changed tab\./);
    expect(decodeRecord(body)).toEqual(r);
  });

  it("shortens log tails inside the record when they would not fit", () => {
    const r = record({ measurements: [1, 2, 3].map((i) => measurement(`${i}`.repeat(7), { log_tail: "y".repeat(30_000) }))});
    const body = renderBody(r);
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(BODY_LIMIT);
    const back = decodeRecord(body)!;
    expect(back.measurements.map((m) => m.result.val_bpb)).toEqual([0.99, 0.99, 0.99]);
    expect(back.measurements[0]!.result.log_tail.length).toBeLessThan(30_000);
  });

  it("refuses a record that cannot fit at all", () => {
    const huge = "z".repeat(70_000);
    expect(() => renderBody(record({ edits: [{ path: "train.py", search: "a", replace: huge }] }))).toThrow(
      "experiment 7: its record does not fit in a pull request body (the edits are too large); propose a smaller change",
    );
  });
});

describe("branch names", () => {
  it("is autoresearch/<n>-<slug> with a short, safe slug", () => {
    expect(branchName(12, "MATRIX_LR: 0.04 → 0.05")).toBe("autoresearch/12-matrix-lr-0-04-0-05");
    expect(branchName(3, "Réglage de l'élan")).toBe("autoresearch/3-reglage-de-l-elan");
    expect(branchName(4, "→ ✓ !!!")).toBe("autoresearch/4-experiment");
    const long = branchName(5, "Use a much larger learning rate for the embedding matrices and warm it up");
    expect(long).toBe("autoresearch/5-use-a-much-larger-learning-rate-for-the");
    expect(long.length - "autoresearch/5-".length).toBeLessThanOrEqual(40);
  });

  it("parses back what it writes and nothing else", () => {
    expect(parseBranchName(branchName(12, "Deeper model"))).toEqual({ n: 12, slug: "deeper-model" });
    expect(parseBranchName("refs/heads/autoresearch/3-x")).toEqual({ n: 3, slug: "x" });
    for (const ref of ["main", "autoresearch/x-y", "autoresearch/0-x", "autoresearch/3-", "feature/3-x"]) {
      expect(parseBranchName(ref)).toBeNull();
    }
  });
});

describe("labels", () => {
  it("defines every label the bot sets, with a colour and a description", () => {
    const names = LABELS.map((l) => l.name);
    expect(names).toEqual([LABEL, ...Object.values(STATE_LABELS)]);
    for (const l of LABELS) {
      expect(l.color).toMatch(/^[0-9a-f]{6}$/);
      expect(l.description.length).toBeLessThanOrEqual(100);
    }
  });

  it("labels each state", () => {
    expect(labelsFor({ kind: "experiment", state: "queued" })).toEqual(["autoresearch", "autoresearch:running"]);
    expect(labelsFor({ kind: "experiment", state: "running" })).toEqual(["autoresearch", "autoresearch:running"]);
    expect(labelsFor({ kind: "experiment", state: "kept" })).toEqual(["autoresearch", "autoresearch:keep"]);
    expect(labelsFor({ kind: "experiment", state: "discarded" })).toEqual(["autoresearch", "autoresearch:discard"]);
    expect(labelsFor({ kind: "experiment", state: "crashed" })).toEqual(["autoresearch", "autoresearch:crash"]);
    expect(labelsFor({ kind: "experiment", state: "superseded" })).toEqual(["autoresearch", "autoresearch:superseded"]);
    expect(labelsFor({ kind: "baseline", state: "kept" })).toEqual(["autoresearch", "autoresearch:baseline", "autoresearch:keep"]);
  });
});

describe("toResultsTsv", () => {
  it("writes autoresearch's results.tsv for a small night", () => {
    const records: ExperimentRecord[] = [
      record({
        n: 3,
        title: "MATRIX_LR: 0.04 → 0.05",
        state: "discarded",
        measurements: [measurement("cccccccc1", { val_bpb: 0.9985, summary: { peak_vram_mb: 45060.2 } })],
      }),
      record({
        n: 1,
        kind: "baseline",
        title: "Baseline",
        state: "kept",
        measurements: [measurement("aaaaaaaa1", { val_bpb: 0.9979, summary: { peak_vram_mb: 44000 } })],
      }),
      record({
        n: 2,
        title: "DEPTH: 8 → 16",
        state: "crashed",
        measurements: [measurement("bbbbbbbb1", { status: "oom", val_bpb: null, summary: { peak_vram_mb: 80000 } })],
      }),
      record({
        n: 4,
        title: "Warm up\tfor longer\nand decay",
        state: "kept",
        measurements: [
          measurement("dddddddd1", { val_bpb: 0.99, summary: { peak_vram_mb: 45000 } }),
          measurement("dddddddd1", { val_bpb: 0.992, summary: { peak_vram_mb: 45100 } }),
        ],
      }),
      record({ n: 5, state: "running" }),
      record({ n: 6, state: "superseded", measurements: [measurement("ffffffff1")] }),
    ];
    expect(toResultsTsv(records)).toBe(
      [
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
        "aaaaaaa\t0.997900\t43.0\tkeep\tBaseline",
        "bbbbbbb\t0.000000\t0.0\tcrash\tDEPTH: 8 → 16",
        "ccccccc\t0.998500\t44.0\tdiscard\tMATRIX_LR: 0.04 → 0.05",
        "ddddddd\t0.991000\t44.0\tkeep\tWarm up for longer and decay (mean of 2 runs)",
        "",
      ].join("\n"),
    );
  });

  it("is just the header for an empty ledger", () => {
    expect(toResultsTsv([])).toBe("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n");
  });
});

describe("treeHash", () => {
  it("depends on paths and contents but not on key order", () => {
    const a = treeHash({ "train.py": "A = 1\n", "model.py": "B = 2\n" });
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(treeHash({ "model.py": "B = 2\n", "train.py": "A = 1\n" })).toBe(a);
    expect(treeHash({ "train.py": "A = 1\n", "model.py": "B = 3\n" })).not.toBe(a);
    expect(treeHash({ "train2.py": "A = 1\n", "model.py": "B = 2\n" })).not.toBe(a);
  });

  it("cannot be fooled by moving text between paths and contents", () => {
    expect(treeHash({ a: "b\nc" })).not.toBe(treeHash({ a: "b", c: "" }));
    expect(treeHash({ ab: "" })).not.toBe(treeHash({ a: "b" }));
  });
});

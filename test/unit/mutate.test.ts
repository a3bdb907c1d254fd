import { describe, expect, it } from "vitest";
import { applyEdits, diffLines } from "../../src/edits.js";
import { treeHash } from "../../src/ledger/index.js";
import { findConstants, formatLike, MutateProposer, mulberry32, proposeMutation } from "../../src/proposers/mutate.js";
import type { HistoryEntry, Proposal, ProposalRequest } from "../../src/types.js";

// Shaped like autoresearch's train.py: a block of hyperparameters, then code that must not change.
const TRAIN_PY = `"""Pretrain a small GPT for a fixed time budget."""
import os
import torch

# Model architecture
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128          # target head dimension for attention
WINDOW_PATTERN = "SSSL" # sliding window pattern
# Optimization
TOTAL_BATCH_SIZE = 2**19 # ~524K tokens per optimizer step
EMBEDDING_LR = 0.6      # learning rate for token embeddings (Adam)
UNEMBEDDING_LR = 0.004  # learning rate for lm_head (Adam)
MATRIX_LR = 0.04        # learning rate for matrix parameters (Muon)
SCALAR_LR = 0.5         # learning rate for per-layer scalars (Adam)
WEIGHT_DECAY = 0.2      # cautious weight decay for Muon
ADAM_BETAS = (0.8, 0.95) # Adam beta1, beta2
WARMUP_RATIO = 0.0      # fraction of time budget for LR warmup
WARMDOWN_RATIO = 0.5    # fraction of time budget for LR warmdown
FINAL_LR_FRAC = 0.0     # final LR as fraction of initial
ADAM_EPS = 1e-8
# Model size
DEPTH = 8               # number of transformer layers
DEVICE_BATCH_SIZE = 128  # per-device batch size (reduce if OOM)
N_KV_HEAD = 3
MODEL_DIM: int = 768

def build(depth=DEPTH):
    n_embd = 768
    lr = 3e-4
    if DEPTH == 8:
        scale = MATRIX_LR * 2
    config = dict(n_layer=depth, LR=0.1)
    return config

for step in range(1000):
    LOSS_SCALE = 1.0
`;

const EXPECTED_NAMES = [
  "ASPECT_RATIO",
  "HEAD_DIM",
  "TOTAL_BATCH_SIZE",
  "EMBEDDING_LR",
  "UNEMBEDDING_LR",
  "MATRIX_LR",
  "SCALAR_LR",
  "WEIGHT_DECAY",
  "WARMUP_RATIO",
  "WARMDOWN_RATIO",
  "FINAL_LR_FRAC",
  "ADAM_EPS",
  "DEPTH",
  "DEVICE_BATCH_SIZE",
  "N_KV_HEAD",
  "MODEL_DIM",
  "LOSS_SCALE",
];

function request(over: Partial<ProposalRequest> = {}): ProposalRequest {
  const files = over.files ?? { "train.py": TRAIN_PY };
  return {
    guidance: "Explore the optimizer settings.",
    files,
    editablePaths: ["train.py"],
    history: [],
    bestBpb: null,
    triedTreeHashes: new Set([treeHash(files)]),
    seed: 1,
    ...over,
  };
}

const CONSTANT_LINE = /^\s*([A-Z][A-Z0-9_]*)\s*(?::\s*\w+\s*)?=\s*(-?(?:\d+\s*\*\*\s*\d+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?))\s*(#.*)?$/;

/** The one changed line of a proposal, checked to be a numeric constant before and after. */
function changedLine(before: string, p: Proposal): { name: string; from: string; to: string } {
  const ops = diffLines(before, p.files["train.py"]!).filter((o) => o.op !== " ");
  expect(ops.map((o) => o.op)).toEqual(["-", "+"]);
  const old = CONSTANT_LINE.exec(ops[0]!.line.trimEnd());
  const neu = CONSTANT_LINE.exec(ops[1]!.line.trimEnd());
  expect(old, ops[0]!.line).not.toBeNull();
  expect(neu, ops[1]!.line).not.toBeNull();
  expect(neu![1]).toBe(old![1]);
  // Only the number changes: the rest of the line (spacing, comment) is kept.
  expect(ops[1]!.line.replace(neu![2]!, "#")).toBe(ops[0]!.line.replace(old![2]!, "#"));
  return { name: old![1]!, from: old![2]!, to: neu![2]! };
}

describe("findConstants", () => {
  it("finds the UPPER_CASE numeric assignments and nothing else", () => {
    const found = findConstants({ "train.py": TRAIN_PY }, ["train.py"]);
    expect(found.map((c) => c.name)).toEqual(EXPECTED_NAMES);
    expect(found.find((c) => c.name === "TOTAL_BATCH_SIZE")).toMatchObject({ literal: "2**19", value: 524288, style: "pow" });
    expect(found.find((c) => c.name === "ADAM_EPS")).toMatchObject({ literal: "1e-8", value: 1e-8, style: "sci" });
    expect(found.find((c) => c.name === "MODEL_DIM")).toMatchObject({ literal: "768", style: "int" });
  });

  it("leaves seeds and switches alone: they are not hyperparameters", () => {
    const text = "SEED = 1337\nDATA_SEED = 7\nCOMPILE = 1\nUSE_FLASH = 1\nLEARNING_RATE = 3e-4\nSEED_LR = 0.5\n";
    expect(findConstants({ "train.py": text }, ["train.py"]).map((c) => c.name)).toEqual(["LEARNING_RATE", "SEED_LR"]);
  });
});

describe("formatLike", () => {
  it("keeps the original notation with 4 significant digits", () => {
    expect(formatLike(6e-4, { literal: "3e-4", style: "sci" })).toBe("6e-4");
    expect(formatLike(3.75e-4, { literal: "3e-4", style: "sci" })).toBe("3.75e-4");
    expect(formatLike(1.23456e-3, { literal: "1E-3", style: "sci" })).toBe("1.235E-3");
    expect(formatLike(0.04 * 1.25, { literal: "0.04", style: "float" })).toBe("0.05");
    expect(formatLike(0.6 * 1.5, { literal: "0.6", style: "float" })).toBe("0.9");
    expect(formatLike(2, { literal: "1.0", style: "float" })).toBe("2.0");
    expect(formatLike(0.004 / 3, { literal: "0.004", style: "float" })).toBe("0.001333");
  });
});

describe("MutateProposer", () => {
  it("proposes one constant change with a readable title and hypothesis", async () => {
    const p = await new MutateProposer().propose(request());
    expect(p.proposer).toBe("mutate");
    const { name, from, to } = changedLine(TRAIN_PY, p);
    expect(p.title).toBe(`${name}: ${from} → ${to}`);
    expect(p.hypothesis).toMatch(new RegExp(`^(Raising|Lowering) ${name} from ${from.replace(/\*/g, "\\*")} to `));
    expect(p.edits).toHaveLength(1);
    expect(applyEdits(request().files, p.edits, ["train.py"])).toEqual({ ok: true, files: p.files });
  });

  it("is deterministic for a seed", () => {
    const a = proposeMutation(request({ seed: 42 }));
    const b = proposeMutation(request({ seed: 42 }));
    expect(b).toEqual(a);
    const titles = new Set([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => proposeMutation(request({ seed })).title));
    expect(titles.size).toBeGreaterThan(3);
  });

  it("never repeats a tried tree over a night of 50 proposals, keeping improvements", () => {
    let files: Record<string, string> = { "train.py": TRAIN_PY };
    const tried = new Set([treeHash(files)]);
    const history: HistoryEntry[] = [];
    const rng = mulberry32(7);
    for (let n = 1; n <= 50; n++) {
      const p = proposeMutation(request({ files, history, triedTreeHashes: tried, seed: n }));
      const hash = treeHash(p.files);
      expect(tried.has(hash), `proposal ${n} (${p.title}) repeats a tried tree`).toBe(false);
      tried.add(hash);
      const { name, from, to } = changedLine(files["train.py"]!, p);
      expect(EXPECTED_NAMES).toContain(name);
      // The new number is written in the style of the old one and stays a valid Python literal.
      if (from.includes("**")) expect(to).toMatch(/^\d+\*\*\d+$/);
      else if (/e/i.test(from)) expect(to).toMatch(/^-?\d+(\.\d+)?e-?\d+$/);
      else if (from.includes(".")) expect(to).toMatch(/^-?\d+\.\d+$|^-?\d+(\.\d+)?e-?\d+$/);
      else {
        expect(to).toMatch(/^\d+$/);
        const [a, b] = [Number(from), Number(to)];
        expect(b).toBeGreaterThanOrEqual(1);
        if ((a & (a - 1)) === 0) expect(b & (b - 1)).toBe(0);
      }
      const better = rng() < 0.2;
      history.push({
        n,
        title: p.title,
        hypothesis: p.hypothesis,
        verdict: better ? "keep" : "discard",
        valBpb: 1,
        delta: better ? -0.01 : 0.01,
        outcome: better ? "better" : "worse",
        reason: null,
        treeHash: hash,
      });
      if (better) files = p.files;
    }
  });

  it("never touches zero-valued constants or code below the settings", () => {
    for (let seed = 1; seed <= 100; seed++) {
      const { name } = changedLine(TRAIN_PY, proposeMutation(request({ seed })));
      expect(["WARMUP_RATIO", "FINAL_LR_FRAC"]).not.toContain(name);
    }
  });

  it("keeps fractions below 1", () => {
    const files = { "train.py": "BETA2 = 0.95\nDROPOUT_RATIO = 0.6\n" };
    const tried = new Set([treeHash(files)]);
    for (let n = 1; n <= 12; n++) {
      const p = proposeMutation(request({ files, triedTreeHashes: tried, seed: n }));
      tried.add(treeHash(p.files));
      for (const c of findConstants(p.files, ["train.py"])) expect(c.value).toBeLessThan(1);
    }
  });

  it("prefers constants and directions that helped before, and avoids the ones just tried", () => {
    const helped: HistoryEntry[] = [1, 2, 3].map((n) => ({
      n,
      title: `MATRIX_LR: 0.0${n + 1} → 0.0${n + 2}`,
      hypothesis: "",
      verdict: "keep",
      valBpb: 1,
      delta: -0.01,
      outcome: "better",
      reason: null,
      treeHash: `t${n}`,
    }));
    const filler: HistoryEntry[] = [4, 5, 6].map((n) => ({ ...helped[0]!, n, title: `Something else ${n}`, outcome: "worse" }));
    let chosen = 0;
    let raised = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const p = proposeMutation(request({ seed, history: [...helped, ...filler] }));
      if (p.title.startsWith("MATRIX_LR:")) {
        chosen++;
        if (p.hypothesis.startsWith("Raising")) raised++;
      }
    }
    // Uniform choice would pick MATRIX_LR about 1 time in 15.
    expect(chosen / 200).toBeGreaterThan(0.25);
    expect(raised / chosen).toBeGreaterThan(0.7);

    const justTried: HistoryEntry[] = [{ ...helped[0]!, n: 9, title: "DEPTH: 8 → 16", outcome: "within noise" }];
    let depth = 0;
    for (let seed = 1; seed <= 200; seed++) {
      if (proposeMutation(request({ seed, history: justTried })).title.startsWith("DEPTH:")) depth++;
    }
    expect(depth / 200).toBeLessThan(0.04);
  });

  it("works on CRLF files", () => {
    const files = { "train.py": TRAIN_PY.replace(/\n/g, "\r\n") };
    const p = proposeMutation(request({ files, triedTreeHashes: new Set() }));
    expect(p.files["train.py"]).not.toBe(files["train.py"]);
    expect(p.files["train.py"]!.replace(/\r\n/g, "")).not.toContain("\n");
  });

  it("disambiguates a line that also occurs inside another", () => {
    const files = { "train.py": "MATRIX_LR = 0.04\nLR = 0.04\n" };
    const tried = new Set([treeHash(files)]);
    const seen = new Set<string>();
    for (let n = 1; n <= 12; n++) {
      const p = proposeMutation(request({ files, triedTreeHashes: tried, seed: n }));
      tried.add(treeHash(p.files));
      seen.add(p.title.split(":")[0]!);
    }
    expect(seen).toEqual(new Set(["MATRIX_LR", "LR"]));
  });

  it("says when the neighbourhood is exhausted", () => {
    const files = { "train.py": "DEPTH = 1\n" };
    const tried = new Set([treeHash(files), treeHash({ "train.py": "DEPTH = 2\n" })]);
    expect(() => proposeMutation(request({ files, triedTreeHashes: tried }))).toThrow(
      "mutate: the neighbourhood is exhausted: all 1 single-constant changes of 1 constants in train.py were already tried; change program.md's direction or use an LLM proposer",
    );
  });

  it("says when there is nothing to mutate", () => {
    expect(() => proposeMutation(request({ files: { "train.py": "print('hi')\n" } }))).toThrow(
      "mutate: no UPPER_CASE numeric constants (like `LR = 3e-4`) were found in train.py; there is nothing to change",
    );
  });
});

import { describe, expect, it } from "vitest";
import {
  applyEdits,
  diffLines,
  editsAsDiff,
  fenceFor,
  parseSearchReplaceBlocks,
  SEARCH_REPLACE_FORMAT_HELP,
} from "../../src/edits.js";

const TRAIN = [
  "import torch",
  "",
  "LR = 3e-4        # learning rate",
  "MATRIX_LR = 0.04",
  "DEPTH = 8",
  "",
  "def train():",
  "    for step in range(10):",
  "        loss = step * LR",
  "    return loss",
  "",
].join("\n");

const files = { "train.py": TRAIN, "prepare.py": "DATA = 'x'\n" };

function fail(r: ReturnType<typeof applyEdits>): string {
  if (r.ok) throw new Error("expected the edits to fail");
  return r.error;
}

describe("applyEdits", () => {
  it("replaces a search text that occurs exactly once and returns every file", () => {
    const r = applyEdits(files, [{ path: "train.py", search: "DEPTH = 8", replace: "DEPTH = 12" }], ["train.py"]);
    expect(r).toEqual({ ok: true, files: { "train.py": TRAIN.replace("DEPTH = 8", "DEPTH = 12"), "prepare.py": "DATA = 'x'\n" } });
  });

  it("applies edits in order, each to the text the earlier ones left", () => {
    const r = applyEdits(
      files,
      [
        { path: "train.py", search: "DEPTH = 8", replace: "DEPTH = 9" },
        { path: "train.py", search: "DEPTH = 9", replace: "DEPTH = 10" },
      ],
      ["train.py"],
    );
    expect(r.ok && r.files["train.py"]).toContain("DEPTH = 10\n");
  });

  it("refuses edits to files that are not editable", () => {
    expect(fail(applyEdits(files, [{ path: "prepare.py", search: "DATA", replace: "D" }], ["train.py"]))).toBe(
      "edit 1 touches prepare.py, but only [train.py] may change",
    );
    expect(fail(applyEdits(files, [{ path: "model.py", search: "x", replace: "y" }], ["train.py", "model.py"]))).toBe(
      "edit 1 touches model.py, which does not exist",
    );
  });

  it("accepts ./ in front of a path", () => {
    const r = applyEdits(files, [{ path: "./train.py", search: "DEPTH = 8", replace: "DEPTH = 4" }], ["train.py"]);
    expect(r.ok && r.files["train.py"]).toContain("DEPTH = 4");
  });

  it("requires the search text to occur exactly once, naming the lines when it is ambiguous", () => {
    expect(fail(applyEdits(files, [{ path: "train.py", search: "LR = ", replace: "LR=" }], ["train.py"]))).toBe(
      "edit 1: the search text occurs 2 times in train.py (at lines 3 and 4); include more surrounding lines so that it matches exactly once",
    );
  });

  it("counts overlapping occurrences as ambiguous", () => {
    const r = applyEdits({ "a.txt": "aaa\n" }, [{ path: "a.txt", search: "aa", replace: "b" }], ["a.txt"]);
    expect(fail(r)).toMatch(/occurs 2 times/);
  });

  it("shows the closest region when the search text is not found", () => {
    const error = fail(
      applyEdits(files, [{ path: "train.py", search: "MATRIX_LR = 0.05\nDEPTH = 8\n", replace: "x" }], ["train.py"]),
    );
    expect(error).toBe(
      "edit 1: the search text was not found in train.py. The closest text is at lines 4-5:\n```\nMATRIX_LR = 0.04\nDEPTH = 8\n```",
    );
  });

  it("says when the text differs only in whitespace", () => {
    const error = fail(
      applyEdits(files, [{ path: "train.py", search: "    for step  in range(10) :", replace: "x" }], ["train.py"]),
    );
    expect(error).toContain("The closest text is at line 8: It differs from the search text only in whitespace.");
    expect(error).toContain("    for step in range(10):");
  });

  it("says so when nothing is similar", () => {
    const error = fail(applyEdits(files, [{ path: "train.py", search: "%%%%", replace: "x" }], ["train.py"]));
    expect(error).toBe(
      "edit 1: the search text was not found in train.py. Nothing similar was found; quote lines exactly as they appear in the file.",
    );
  });

  it("mentions earlier edits when a later one no longer matches", () => {
    const error = fail(
      applyEdits(
        files,
        [
          { path: "train.py", search: "DEPTH = 8", replace: "DEPTH = 9" },
          { path: "train.py", search: "DEPTH = 8", replace: "DEPTH = 10" },
        ],
        ["train.py"],
      ),
    );
    expect(error).toMatch(/^edit 2: the search text was not found in train.py \(after the earlier edits\)\. The closest text is at line 5:/);
  });

  it("rejects empty searches, no-op edits and edits that change nothing overall", () => {
    expect(fail(applyEdits(files, [], ["train.py"]))).toBe("there are no edits");
    expect(fail(applyEdits(files, [{ path: "train.py", search: " \n", replace: "x" }], ["train.py"]))).toBe(
      "edit 1 has an empty search text; it must quote the exact lines of train.py to change",
    );
    expect(fail(applyEdits(files, [{ path: "train.py", search: "DEPTH = 8", replace: "DEPTH = 8" }], ["train.py"]))).toBe(
      "edit 1 changes nothing: its search and replace texts are identical",
    );
    expect(
      fail(
        applyEdits(
          files,
          [
            { path: "train.py", search: "DEPTH = 8", replace: "DEPTH = 9" },
            { path: "train.py", search: "DEPTH = 9", replace: "DEPTH = 8" },
          ],
          ["train.py"],
        ),
      ),
    ).toBe("the edits change nothing");
  });

  it("matches LF searches in a CRLF file and keeps its CRLF line ends", () => {
    const crlf = { "train.py": "A = 1\r\nB = 2\r\nC = 3\r\n" };
    const r = applyEdits(crlf, [{ path: "train.py", search: "A = 1\nB = 2\n", replace: "A = 1\nB = 5\n" }], ["train.py"]);
    expect(r).toEqual({ ok: true, files: { "train.py": "A = 1\r\nB = 5\r\nC = 3\r\n" } });
    const r2 = applyEdits({ "t.py": "A = 1\nB = 2\n" }, [{ path: "t.py", search: "B = 2\r\n", replace: "B = 3\r\n" }], ["t.py"]);
    expect(r2).toEqual({ ok: true, files: { "t.py": "A = 1\nB = 3\n" } });
  });

  it("matches a whole-line search on a last line without a newline, keeping it without one", () => {
    const r = applyEdits({ "t.py": "A = 1\nB = 2" }, [{ path: "t.py", search: "B = 2\n", replace: "B = 3\n" }], ["t.py"]);
    expect(r).toEqual({ ok: true, files: { "t.py": "A = 1\nB = 3" } });
  });

  it("keeps $ patterns in replacements literal", () => {
    const r = applyEdits(files, [{ path: "train.py", search: "DEPTH = 8", replace: "DEPTH = '$&$1'" }], ["train.py"]);
    expect(r.ok && r.files["train.py"]).toContain("DEPTH = '$&$1'");
  });
});

describe("parseSearchReplaceBlocks", () => {
  it("parses title, hypothesis and blocks, with whole lines as search and replace", () => {
    const text = [
      "TITLE: Raise the matrix learning rate",
      "HYPOTHESIS: A larger LR converges faster",
      "within the five minute budget.",
      "",
      "<<<<<<< SEARCH",
      "MATRIX_LR = 0.04",
      "=======",
      "MATRIX_LR = 0.05",
      ">>>>>>> REPLACE",
      "",
      "FILE: model.py",
      "```python",
      "<<<<<<< SEARCH",
      "    x = 1",
      "    y = 2",
      "=======",
      ">>>>>>> REPLACE",
      "```",
    ].join("\n");
    expect(parseSearchReplaceBlocks(text, "train.py")).toEqual({
      ok: true,
      title: "Raise the matrix learning rate",
      hypothesis: "A larger LR converges faster within the five minute budget.",
      edits: [
        { path: "train.py", search: "MATRIX_LR = 0.04\n", replace: "MATRIX_LR = 0.05\n" },
        { path: "model.py", search: "    x = 1\n    y = 2\n", replace: "" },
      ],
    });
  });

  it("tolerates markdown decoration, CRLF and chatter around the blocks", () => {
    const text =
      "Sure! Here is my proposal.\r\n**TITLE:** Deeper model\r\n## Hypothesis: More layers help.\r\nFILE: `train.py`\r\n<<<<<<< SEARCH\r\nDEPTH = 8\r\n=======\r\nDEPTH = 10\r\n>>>>>>> REPLACE\r\nHope this helps.";
    expect(parseSearchReplaceBlocks(text, "x.py")).toEqual({
      ok: true,
      title: "Deeper model",
      hypothesis: "More layers help.",
      edits: [{ path: "train.py", search: "DEPTH = 8\n", replace: "DEPTH = 10\n" }],
    });
  });

  it.each([
    ["TITLE: t\nHYPOTHESIS: h\n", "no SEARCH/REPLACE blocks were found; each change must be a <<<<<<< SEARCH ... ======= ... >>>>>>> REPLACE block"],
    ["TITLE: t\nHYPOTHESIS: h\n<<<<<<< SEARCH\na\n>>>>>>> REPLACE\n", "block 1 (starting at line 3): the ======= line between SEARCH and REPLACE is missing"],
    ["TITLE: t\nHYPOTHESIS: h\n<<<<<<< SEARCH\na\n=======\nb\n", "block 1 (starting at line 3): the text ends before the >>>>>>> REPLACE line"],
    ["TITLE: t\nHYPOTHESIS: h\n<<<<<<< SEARCH\na\n", "block 1 (starting at line 3): the text ends inside the SEARCH section; the ======= and >>>>>>> REPLACE lines are missing"],
    ["TITLE: t\nHYPOTHESIS: h\n<<<<<<< SEARCH\na\n=======\nb\n<<<<<<< SEARCH\n", "block 1 (starting at line 3): the >>>>>>> REPLACE line is missing before the next <<<<<<< SEARCH at line 7"],
    ["TITLE: t\nHYPOTHESIS: h\n<<<<<<< SEARCH\n\n=======\nb\n>>>>>>> REPLACE\n", "block 1 (starting at line 3): the SEARCH section is empty; quote the lines to change"],
    ["TITLE: t\nHYPOTHESIS: h\n=======\n", 'line 3: "=======" outside a SEARCH/REPLACE block; each block starts with <<<<<<< SEARCH'],
    ["HYPOTHESIS: h\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", "the TITLE: line is missing or empty"],
    ["TITLE: t\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\n", "the HYPOTHESIS: line is missing or empty"],
  ])("reports a malformed reply clearly: %j", (text, error) => {
    expect(parseSearchReplaceBlocks(text, "train.py")).toEqual({ ok: false, error });
  });

  it("describes the same format it parses", () => {
    expect(SEARCH_REPLACE_FORMAT_HELP).toContain("<<<<<<< SEARCH");
    expect(SEARCH_REPLACE_FORMAT_HELP).toContain("=======");
    expect(SEARCH_REPLACE_FORMAT_HELP).toContain(">>>>>>> REPLACE");
    expect(SEARCH_REPLACE_FORMAT_HELP).toMatch(/^TITLE: /m);
    expect(SEARCH_REPLACE_FORMAT_HELP).toMatch(/^HYPOTHESIS: /m);
  });

  it("produces edits that apply to the file they quote", () => {
    const parsed = parseSearchReplaceBlocks(
      "TITLE: t\nHYPOTHESIS: h\n<<<<<<< SEARCH\n    for step in range(10):\n        loss = step * LR\n=======\n    for step in range(20):\n        loss = step * LR\n>>>>>>> REPLACE\n",
      "train.py",
    );
    if (!parsed.ok) throw new Error(parsed.error);
    const r = applyEdits(files, parsed.edits, ["train.py"]);
    expect(r.ok && r.files["train.py"]).toContain("range(20)");
  });
});

describe("diffLines", () => {
  it("marks a missing final newline as a difference", () => {
    expect(diffLines("a\nb", "a\nb\n")).toEqual([
      { op: " ", line: "a\n" },
      { op: "-", line: "b" },
      { op: "+", line: "b\n" },
    ]);
    expect(editsAsDiff([{ path: "f", search: "a\nb", replace: "a\nb\n" }])).toBe(
      "--- a/f\n+++ b/f\n@@ edit 1 of 1 @@\n a\n-b\n\\ No newline at end of file\n+b\n",
    );
  });

  it("finds a shortest diff", () => {
    const ops = diffLines("a\nb\nc\na\nb\nb\na\n", "c\nb\na\nb\na\nc\n");
    // The classic Myers example: edit distance 5.
    expect(ops.filter((o) => o.op !== " ")).toHaveLength(5);
    const rebuilt = ops.filter((o) => o.op !== "-").map((o) => o.line).join("");
    expect(rebuilt).toBe("c\nb\na\nb\na\nc\n");
  });

  it("stays correct on texts with many differences", () => {
    const before = Array.from({ length: 3000 }, (_, i) => `line ${i}`).join("\n") + "\n";
    const after = Array.from({ length: 3000 }, (_, i) => `line ${i % 2 ? i : -i}`).join("\n") + "\n";
    const ops = diffLines(before, after);
    expect(ops.filter((o) => o.op !== "+").map((o) => o.line).join("")).toBe(before);
    expect(ops.filter((o) => o.op !== "-").map((o) => o.line).join("")).toBe(after);
  });
});

describe("editsAsDiff and fenceFor", () => {
  it("shows each edit as a hunk of its search and replace texts", () => {
    expect(editsAsDiff([{ path: "train.py", search: "A = 1\nB = 2\n", replace: "A = 1\nB = 3\n" }])).toBe(
      "--- a/train.py\n+++ b/train.py\n@@ edit 1 of 1 @@\n A = 1\n-B = 2\n+B = 3\n",
    );
  });

  it("makes fences longer than any backtick run inside", () => {
    expect(fenceFor("plain")).toBe("```");
    expect(fenceFor("has ``` inside")).toBe("````");
  });
});

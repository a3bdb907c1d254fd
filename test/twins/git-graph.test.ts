// The GitHub twin's commit-graph queries (ancestry, merge base, rev-list) are answered in-process
// from commits read through cat-file, and by git where that would not be exact. Each answer is
// checked against git's own over a repository with a linear history, branches, a merge, a
// criss-cross merge, a second root and an annotated tag; and the common cases of a pass (a
// one-commit branch on top of the default branch) must start no git process.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitRepo, gitSpawnCount, runGit, type GitIdentity } from "../../twins/github/git.js";

const scratch = mkdtempSync(join(tmpdir(), "git-graph-test-"));
const MISSING = "1234567890123456789012345678901234567890";

let repo: GitRepo;
let tick = 0;
const c: Record<string, string> = {};

async function commit(name: string, parents: string[]): Promise<string> {
  const id: GitIdentity = { name: "T", email: "t@example.com", date: new Date(Date.UTC(2024, 0, 1, 0, 0, tick++)).toISOString() };
  const blob = await repo.writeBlob(`${name}\n`);
  const tree = await repo.buildTree(null, new Map([[`${name}.txt`, { mode: "100644", sha: blob }]]));
  c[name] = await repo.commitTree(tree, parents.map((p) => c[p] ?? p), name, id, id);
  return c[name];
}

/** git's own answers, asked of a git process. */
const git = {
  async isAncestor(a: string, d: string): Promise<boolean> {
    return (await runGit(repo.dir, ["merge-base", "--is-ancestor", a, d], { ok: [0, 1] })).code === 0;
  },
  async mergeBase(a: string, b: string): Promise<string | null> {
    const r = await runGit(repo.dir, ["merge-base", a, b], { ok: [0, 1] });
    return r.code === 0 ? r.stdout.toString().trim() : null;
  },
  async revList(head: string, exclude: string[], limit?: number): Promise<string[]> {
    const args = ["rev-list", "--topo-order", ...(limit === undefined ? [] : [`--max-count=${limit}`]), head, ...exclude.map((e) => `^${e}`), "--"];
    return (await runGit(repo.dir, args)).stdout.toString().split("\n").filter(Boolean).reverse();
  },
};

beforeAll(async () => {
  repo = await GitRepo.init(join(scratch, "r.git"), "main");
  // main: c1 - c2 - c3 - c4 - c5; f1 on c5; b1 on c2; s1 - s2 on c3, merged into main as m, then m2.
  await commit("c1", []);
  const line: Array<[string, string]> = [["c2", "c1"], ["c3", "c2"], ["c4", "c3"], ["c5", "c4"], ["f1", "c5"], ["b1", "c2"], ["s1", "c3"], ["s2", "s1"]];
  for (const [name, parent] of line) await commit(name, [parent]);
  await commit("m", ["c5", "s2"]);
  await commit("m2", ["m"]);
  // Criss-cross: p2 and q2 both merge p1 and q1, so they have two best merge bases.
  await commit("p1", ["c4"]);
  await commit("q1", ["c4"]);
  await commit("p2", ["p1", "q1"]);
  await commit("q2", ["q1", "p1"]);
  // An unrelated history.
  await commit("r1", []);
  await commit("r2", ["r1"]);
  const env = { GIT_COMMITTER_NAME: "T", GIT_COMMITTER_EMAIL: "t@example.com", GIT_COMMITTER_DATE: "2024-01-02T00:00:00Z" };
  await runGit(repo.dir, ["tag", "-a", "-m", "v1", "v1", c.c3 ?? ""], { env });
  c.tag = (await runGit(repo.dir, ["rev-parse", "refs/tags/v1"])).stdout.toString().trim();
  await repo.updateRef("refs/heads/main", c.m2 ?? "");
});

afterAll(() => {
  repo.close();
  rmSync(scratch, { recursive: true, force: true });
});

const PICKED = ["c1", "c3", "c5", "f1", "b1", "s2", "m", "m2", "p2", "q2", "r2", "tag"];

describe("commit-graph queries match git", () => {
  it("isAncestor, for every pair", async () => {
    for (const a of PICKED) for (const d of PICKED) {
      expect([a, d, await repo.isAncestor(c[a] ?? "", c[d] ?? "")]).toEqual([a, d, await git.isAncestor(c[a] ?? "", c[d] ?? "")]);
    }
  });

  it("mergeBase, for every pair (criss-cross and unrelated histories included)", async () => {
    for (const a of PICKED) for (const b of PICKED) {
      if (a === b) continue; // answered as the SHA itself before any lookup (a tag is not peeled)
      expect([a, b, await repo.mergeBase(c[a] ?? "", c[b] ?? "")]).toEqual([a, b, await git.mergeBase(c[a] ?? "", c[b] ?? "")]);
    }
    expect(await repo.mergeBase(c.p2 ?? "", c.q2 ?? "")).toMatch(new RegExp(`^(${c.p1}|${c.q1})$`));
    expect(await repo.mergeBase(c.c5 ?? "", c.r2 ?? "")).toBeNull();
  });

  it("revList, for every pair and for several exclusions and limits", async () => {
    for (const h of PICKED) for (const e of PICKED) {
      expect([h, e, await repo.revList(c[h] ?? "", [c[e] ?? ""])]).toEqual([h, e, await git.revList(c[h] ?? "", [c[e] ?? ""])]);
    }
    const cases: Array<[string, string[], number?]> = [
      ["m2", []], // whole history with a merge: git's order
      ["c5", []],
      ["c5", [], 2],
      ["c5", [], 0],
      ["m2", ["c5"]], // a line through the merge, whose other parent is excluded
      ["m2", ["c5"], 3],
      ["m2", ["s2"]],
      ["p2", ["c4"]], // two lines: git's order
      ["p2", ["c4"], 1],
      ["f1", ["m2", "b1", "p2", "q2", "r2"]],
      ["r2", ["c5"]],
      ["m2", ["c1", "c3", "tag"]],
    ];
    for (const [h, ex, limit] of cases) {
      const head = c[h] ?? "";
      const exclude = ex.map((e) => c[e] ?? "");
      expect([h, ex, limit, await repo.revList(head, exclude, limit)]).toEqual([h, ex, limit, await git.revList(head, exclude, limit)]);
    }
    expect((await repo.revList(c.m2 ?? "", [c.c5 ?? ""])).length).toBe(4);
  });

  it("an unknown object fails as it does in git", async () => {
    await expect(git.isAncestor(MISSING, c.c5 ?? "")).rejects.toThrow();
    await expect(repo.isAncestor(MISSING, c.c5 ?? "")).rejects.toThrow();
    await expect(repo.isAncestor(c.c5 ?? "", MISSING)).rejects.toThrow();
    await expect(repo.mergeBase(MISSING, c.c5 ?? "")).rejects.toThrow();
    await expect(repo.revList(MISSING, [c.c1 ?? ""])).rejects.toThrow();
    await expect(repo.revList(c.c5 ?? "", [MISSING])).rejects.toThrow();
    // The same holds for an object that is not a commit.
    const tree = (await repo.readCommit(c.c1 ?? "")).tree;
    await expect(repo.isAncestor(tree, c.c5 ?? "")).rejects.toThrow();
  });
});

describe("spawns", () => {
  it("a one-commit branch on top of the default branch is queried without starting git", async () => {
    const fresh = new GitRepo(repo.dir); // nothing cached yet
    try {
      const [base, head] = [c.c5 ?? "", c.f1 ?? ""];
      const others = [c.m2, c.b1, c.p2, c.q2, c.r2].map((s) => s ?? "");
      const before = gitSpawnCount();
      expect(await fresh.isAncestor(base, head)).toBe(true);
      expect(await fresh.isAncestor(head, base)).toBe(false);
      expect(await fresh.isAncestor(head, c.m2 ?? "")).toBe(false);
      expect(await fresh.mergeBase(base, head)).toBe(base);
      expect(await fresh.mergeBase(head, c.m2 ?? "")).toBe(base);
      expect(await fresh.revList(head, [base])).toEqual([head]);
      expect(await fresh.revList(head, others)).toEqual([head]);
      expect(gitSpawnCount() - before).toBe(0);
      // Two best merge bases: git answers.
      await fresh.mergeBase(c.p2 ?? "", c.q2 ?? "");
      expect(gitSpawnCount() - before).toBe(1);
    } finally {
      fresh.close();
    }
  });
});

describe("diff", () => {
  it("lists every changed file with git's status and line counts, from one git process", async () => {
    const id: GitIdentity = { name: "T", email: "t@example.com", date: "2024-01-03T00:00:00.000Z" };
    const blob = (text: string) => repo.writeBlob(text);
    const from = await repo.buildTree(
      null,
      new Map([
        ["train.py", { mode: "100644", sha: await blob("LR = 0.04\nDEPTH = 4\nWIDTH = 8\n") }],
        ["gone.txt", { mode: "100644", sha: await blob("old\n") }],
        ["data/blob.bin", { mode: "100644", sha: await blob("\0\x01binary\0") }],
        ["run.sh", { mode: "100644", sha: await blob("echo hi\n") }],
      ]),
    );
    const to = await repo.buildTree(
      from,
      new Map([
        ["train.py", { mode: "100644", sha: await blob("LR = 0.05\nDEPTH = 4\nWIDTH = 16\nHEADS = 2\n") }],
        ["gone.txt", null],
        ["data/blob.bin", { mode: "100644", sha: await blob("\0\x02binary\0") }],
        ["run.sh", { mode: "100755", sha: await blob("echo hi\n") }],
        ["notes with space.md", { mode: "100644", sha: await blob("# n\n") }],
      ]),
    );
    const a = await repo.commitTree(from, [], "from", id, id);
    const b = await repo.commitTree(to, [a], "to", id, id);
    const before = gitSpawnCount();
    const diff = await repo.diff(a, b);
    expect(gitSpawnCount() - before).toBe(1);
    // git's own numbers: --numstat (binary files count "-").
    const numstat = (await runGit(repo.dir, ["diff-tree", "-r", "-z", "--no-renames", "--numstat", from, to])).stdout.toString().split("\0").filter(Boolean);
    const counts = Object.fromEntries(numstat.map((l) => l.split("\t")).map(([add, del, path]) => [path, [add === "-" ? 0 : Number(add), del === "-" ? 0 : Number(del)]]));
    expect(diff.map((d) => [d.path, d.status, d.additions, d.deletions])).toEqual([
      ["data/blob.bin", "modified", ...(counts["data/blob.bin"] ?? [])],
      ["gone.txt", "removed", ...(counts["gone.txt"] ?? [])],
      ["notes with space.md", "added", ...(counts["notes with space.md"] ?? [])],
      ["run.sh", "modified", ...(counts["run.sh"] ?? [])],
      ["train.py", "modified", ...(counts["train.py"] ?? [])],
    ]);
    expect(counts["train.py"]).toEqual([3, 2]);
    expect(diff.find((d) => d.path === "train.py")?.patch).toContain("-LR = 0.04\n+LR = 0.05");
    expect(diff.find((d) => d.path === "run.sh")).toMatchObject({ oldMode: "100644", newMode: "100755" });
    expect(diff.find((d) => d.path === "run.sh")?.patch).toBeUndefined();
    expect(diff.find((d) => d.path === "data/blob.bin")?.patch).toBeUndefined();
  });
});

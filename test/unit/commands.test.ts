import { describe, expect, it } from "vitest";
import { clickOf } from "../../src/webhooks.js";
import { canWrite, CHECK_ACTIONS, needsWrite, parseCommand } from "../../src/commands.js";

describe("parseCommand", () => {
  it("reads each command, case-insensitively, on any line", () => {
    expect(parseCommand("/autoresearch rerun")).toEqual({ kind: "rerun" });
    expect(parseCommand("Looks flaky.\n/AutoResearch KEEP\nthanks")).toEqual({ kind: "keep" });
    expect(parseCommand("/autoresearch pause")).toEqual({ kind: "pause" });
    expect(parseCommand("/autoresearch resume")).toEqual({ kind: "resume" });
    expect(parseCommand("/autoresearch help")).toEqual({ kind: "help" });
    expect(parseCommand("/autoresearch")).toEqual({ kind: "help" });
  });

  it("takes the idea of `try` from the rest of the line and the lines after it", () => {
    expect(parseCommand("/autoresearch try a cosine schedule\nwith a short warmup")).toEqual({
      kind: "try",
      idea: "a cosine schedule\nwith a short warmup",
    });
    expect(parseCommand("/autoresearch try")).toMatchObject({ kind: "unknown" });
  });

  it("answers an unknown word as unknown, and ignores look-alikes, quotes and code", () => {
    expect(parseCommand("/autoresearch frobnicate now")).toEqual({ kind: "unknown", word: "frobnicate" });
    expect(parseCommand("/autoresearchrerun")).toBeNull();
    expect(parseCommand("> /autoresearch rerun\nI agree")).toBeNull();
    expect(parseCommand("```\n/autoresearch pause\n```")).toBeNull();
    expect(parseCommand("please rerun this")).toBeNull();
  });

  it("turns a mention of the app into a question", () => {
    expect(parseCommand("@autoresearch-bot why did this crash?", "autoresearch-bot")).toEqual({ kind: "ask", question: "why did this crash?" });
    expect(parseCommand("@Autoresearch-Bot[bot] why?", "autoresearch-bot")).toEqual({ kind: "ask", question: "why?" });
    expect(parseCommand("@autoresearch-botany is a plant", "autoresearch-bot")).toBeNull();
    expect(parseCommand("mail me at x@autoresearch-bot.org", "autoresearch-bot")).toBeNull();
    expect(parseCommand("@autoresearch-bot why?")).toBeNull();
  });
});

describe("permissions", () => {
  it("lets write, maintain and admin steer; nobody else", () => {
    for (const p of ["write", "maintain", "admin"]) expect(canWrite(p)).toBe(true);
    for (const p of ["triage", "read", "none", "", null, undefined]) expect(canWrite(p)).toBe(false);
  });

  it("needs write for every command but help (and an unknown word, answered with help)", () => {
    expect(needsWrite({ kind: "help" })).toBe(false);
    expect(needsWrite({ kind: "unknown", word: "x" })).toBe(false);
    expect(needsWrite({ kind: "pause" })).toBe(true);
    expect(needsWrite({ kind: "ask", question: "?" })).toBe(true);
  });
});

describe("check-run buttons", () => {
  it("stay within GitHub's limits", () => {
    for (const a of Object.values(CHECK_ACTIONS)) {
      expect(a.label.length).toBeLessThanOrEqual(20);
      expect(a.identifier.length).toBeLessThanOrEqual(20);
      expect(a.description.length).toBeLessThanOrEqual(40);
    }
  });

  it("are read from the requested_action webhook alone: who clicked, which button, which commit, the delivery", () => {
    const sha = "a".repeat(40);
    const payload = {
      action: "requested_action",
      requested_action: { identifier: "keep" },
      check_run: { head_sha: sha, pull_requests: [{ number: 7 }] },
      sender: { login: "alice" },
    };
    expect(clickOf(payload, "72d3162e-cc78-11e3-81ab-4c9367dc0958")).toEqual({
      command: "keep",
      user: "alice",
      delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
      headSha: sha,
      pull: 7,
    });
    expect(clickOf({ ...payload, check_run: { head_sha: sha } }, "d1")?.pull).toBeNull();
    // Anything else is not a click.
    expect(clickOf({ ...payload, requested_action: { identifier: "merge" } }, "d1")).toBeNull();
    // GitHub's own "Re-run" on the val_bpb check run is the Re-run button; on another check run it is nothing.
    const rerequested = { action: "rerequested", check_run: { name: "val_bpb", head_sha: sha, pull_requests: [{ number: 7 }] }, sender: { login: "alice" } };
    expect(clickOf(rerequested, "d2")).toEqual({ command: "rerun", user: "alice", delivery: "d2", headSha: sha, pull: 7 });
    expect(clickOf({ ...rerequested, check_run: { ...rerequested.check_run, name: "autoresearch" } }, "d2")).toBeNull();
    expect(clickOf({ ...payload, action: "created" }, "d1")).toBeNull();
    expect(clickOf({ ...payload, sender: { login: "<!-- autoresearch:command -->" } }, "d1")).toBeNull();
    expect(clickOf(payload, "not a delivery id!")).toBeNull();
  });
});

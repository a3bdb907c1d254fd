// What each webhook asks of the bot, as a table: the handler only enqueues this.
import { describe, expect, it } from "vitest";
import { webhookWork } from "../../src/webhooks.js";

const repository = { name: "research", owner: { login: "acme" }, default_branch: "main" };
const base = { installation: { id: 7 }, repository, sender: { type: "User" } };
const SHA = "a".repeat(40);

describe("webhookWork", () => {
  it("a push to the default branch asks for a pass; a push elsewhere asks for nothing", () => {
    expect(webhookWork("push", { ...base, ref: "refs/heads/main" }, "d1")).toEqual({
      installationId: 7,
      repos: [{ owner: "acme", repo: "research" }],
      steer: false,
    });
    expect(webhookWork("push", { ...base, ref: "refs/heads/autoresearch/3-lr" }, "d1")).toBeNull();
  });

  it("a comment asks for the comments to be read first", () => {
    expect(webhookWork("issue_comment", base, "d1")).toMatchObject({ steer: true });
    expect(webhookWork("pull_request_review_comment", base, "d1")).toMatchObject({ steer: true });
  });

  it("the bot's own echoes, and events without an installation, ask for nothing", () => {
    expect(webhookWork("pull_request", { ...base, sender: { type: "Bot" } }, "d1")).toBeNull();
    expect(webhookWork("pull_request", { repository, sender: { type: "User" } }, "d1")).toBeNull();
    expect(webhookWork("pull_request", "not an object", "d1")).toBeNull();
  });

  it("a new installation asks for a pass on each repository it names", () => {
    const w = webhookWork("installation", { installation: { id: 7 }, repositories: [{ full_name: "acme/a" }, { full_name: "acme/b" }, { full_name: "bad" }] }, "d1");
    expect(w?.repos).toEqual([
      { owner: "acme", repo: "a" },
      { owner: "acme", repo: "b" },
    ]);
  });

  it("a click on the val_bpb check run carries the click; GitHub's Re-run of it measures again", () => {
    const check_run = { name: "val_bpb", head_sha: SHA, pull_requests: [{ number: 12 }] };
    const clicked = webhookWork("check_run", { ...base, action: "requested_action", requested_action: { identifier: "keep" }, check_run, sender: { login: "alice", type: "User" } }, "d-1");
    expect(clicked?.click).toEqual({ command: "keep", user: "alice", delivery: "d-1", headSha: SHA, pull: 12 });
    const rerun = webhookWork("check_run", { ...base, action: "rerequested", check_run, sender: { login: "alice", type: "User" } }, "d-2");
    expect(rerun?.click).toMatchObject({ command: "rerun" });
    const other = webhookWork("check_run", { ...base, action: "rerequested", check_run: { ...check_run, name: "lint" }, sender: { login: "alice", type: "User" } }, "d-3");
    expect(other?.click).toBeUndefined();
    expect(other?.repos).toHaveLength(1);
  });
});

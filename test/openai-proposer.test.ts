import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { OpenAIProposer, OpenAIProposerError, proposalJsonSchema, proposalReplySchema } from "../src/proposers/openai.js";
import { treeHash } from "../src/ledger/index.js";
import type { ProposalRequest } from "../src/types.js";
import { lastUserMessage, OpenAITwin } from "../twins/openai.js";

const KEY = "sk-test-0123456789abcdef-secret";
const TRAIN = ["import torch", "", "LEARNING_RATE = 3e-4", "WARMUP_STEPS = 100", "", "def main():", "    pass", ""].join("\n");

function request(over: Partial<ProposalRequest> = {}): ProposalRequest {
  return {
    guidance: "Focus on the optimizer.",
    files: { "train.py": TRAIN },
    editablePaths: ["train.py"],
    history: [],
    bestBpb: 0.99,
    triedTreeHashes: new Set(),
    seed: 7,
    ...over,
  };
}

const json = (title: string, search: string, replace: string) =>
  JSON.stringify({ title, hypothesis: `${title} should lower val_bpb.`, edits: [{ path: "train.py", search, replace }] });

const textReply = (title: string, search: string, replace: string) =>
  [`TITLE: ${title}`, `HYPOTHESIS: ${title} should lower val_bpb.`, "", "FILE: train.py", "<<<<<<< SEARCH", search, "=======", replace, ">>>>>>> REPLACE", ""].join("\n");

let twin: OpenAITwin;
let baseURL: string;

beforeEach(async () => {
  twin = new OpenAITwin({ apiKey: KEY });
  ({ baseURL } = await twin.start());
});
afterEach(async () => {
  await twin.stop();
});

const proposer = (over: Partial<ConstructorParameters<typeof OpenAIProposer>[0]> = {}) =>
  new OpenAIProposer({ apiKey: KEY, baseURL, model: "twin-model", maxRetries: 0, timeoutMs: 10_000, ...over });

describe("OpenAIProposer against the twin", () => {
  it("applies a structured proposal", async () => {
    twin.script(json("Double the learning rate", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 6e-4"));
    const p = await proposer({ temperature: 0.7 }).propose(request());
    expect(p.title).toBe("Double the learning rate");
    expect(p.hypothesis).toContain("lower val_bpb");
    expect(p.proposer).toBe("openai:twin-model");
    expect(p.edits).toEqual([{ path: "train.py", search: "LEARNING_RATE = 3e-4", replace: "LEARNING_RATE = 6e-4" }]);
    expect(p.files["train.py"]).toBe(TRAIN.replace("3e-4", "6e-4"));

    const [req] = twin.chatRequests;
    expect(req?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req?.body?.model).toBe("twin-model");
    expect(req?.body?.temperature).toBe(0.7);
    expect(req?.body?.response_format?.type).toBe("json_schema");
    expect(req?.body?.response_format?.json_schema?.name).toBe("proposal");
    expect(req?.body?.response_format?.json_schema?.strict).toBe(true);
    expect(req?.body?.messages?.map((m) => m.role)).toEqual(["system", "user"]);
    expect(lastUserMessage(req?.body)).toContain(TRAIN);
  });

  it("feeds a non-applying edit back with the error, then accepts the fix", async () => {
    twin.script(
      json("Longer warmup", "WARMUP_STEPS = 50", "WARMUP_STEPS = 200"),
      json("Longer warmup", "WARMUP_STEPS = 100", "WARMUP_STEPS = 200"),
    );
    const p = await proposer().propose(request());
    expect(p.files["train.py"]).toContain("WARMUP_STEPS = 200");
    const [first, second] = twin.chatRequests;
    expect(twin.chatRequests).toHaveLength(2);
    expect(second?.body?.messages).toHaveLength(4);
    expect(second?.body?.messages?.[2]?.role).toBe("assistant");
    expect(second?.body?.messages?.[2]?.content).toContain("WARMUP_STEPS = 50");
    const fb = lastUserMessage(second?.body);
    expect(fb).toContain("the edits do not apply: edit 1: the search text was not found in train.py");
    // applyEdits points at the closest text in the file
    expect(fb).toContain("WARMUP_STEPS = 100");
    expect(lastUserMessage(first?.body)).not.toContain("could not be used");
  });

  it("rejects a proposal whose file was already tried and asks again", async () => {
    const dup = { "train.py": TRAIN.replace("3e-4", "1e-3") };
    const req = request({
      triedTreeHashes: new Set([treeHash(dup)]),
      history: [
        { n: 4, title: "Raise LR to 1e-3", hypothesis: "", verdict: "discard", valBpb: 1.01, delta: 0.02, outcome: "worse", reason: null, treeHash: treeHash(dup) },
      ],
    });
    twin.script(json("Bigger LR", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 1e-3"), json("Slightly bigger LR", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 4e-4"));
    const p = await proposer().propose(req);
    expect(p.title).toBe("Slightly bigger LR");
    const fb = lastUserMessage(twin.chatRequests[1]?.body);
    expect(fb).toContain("this exact file was already tried in experiment #4");
    expect(fb).toContain("propose something different");
  });

  it("feeds back invalid replies (schema) and gives up after maxAttempts with every reason", async () => {
    twin.script(
      JSON.stringify({ title: "x".repeat(120), hypothesis: "h", edits: [{ path: "train.py", search: "DEPTH", replace: "D" }] }),
      json("No-op", "WARMUP_STEPS = 100", "WARMUP_STEPS = 100"),
      json("Missing", "NOT IN FILE", "X"),
    );
    const err = await proposer({ maxAttempts: 3 }).propose(request()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAIProposerError);
    const e = err as OpenAIProposerError;
    expect(e.kind).toBe("exhausted");
    expect(e.message).toMatch(/openai:twin-model gave no usable proposal after 3 attempts/);
    expect(e.message).toMatch(/attempt 1: the proposal is invalid: title/);
    expect(e.message).toMatch(/attempt 2: the edits do not apply: edit 1 changes nothing/);
    expect(e.message).toMatch(/attempt 3: the edits do not apply/);
    expect(twin.chatRequests).toHaveLength(3);
    expect(lastUserMessage(twin.chatRequests[1]?.body)).toMatch(/title/);
  });

  it("falls back to SEARCH/REPLACE text when the server rejects json_schema, and remembers it", async () => {
    await twin.stop();
    twin = new OpenAITwin({ apiKey: KEY, jsonSchema: false });
    ({ baseURL } = await twin.start());
    twin.script(textReply("Shorter warmup", "WARMUP_STEPS = 100", "WARMUP_STEPS = 20"), textReply("Lower LR", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 2e-4"));
    const prop = proposer();
    const p = await prop.propose(request());
    expect(p.title).toBe("Shorter warmup");
    expect(p.files["train.py"]).toContain("WARMUP_STEPS = 20");
    expect(twin.chatRequests.map((r) => r.status)).toEqual([400, 200]);
    expect(twin.chatRequests[1]?.body?.response_format).toBeUndefined();
    expect(twin.chatRequests[1]?.body?.messages?.[0]?.content).toContain("<<<<<<< SEARCH");
    expect(prop.replyFormat).toBe("text");

    const q = await prop.propose(request());
    expect(q.title).toBe("Lower LR");
    expect(twin.chatRequests).toHaveLength(3);
    expect(twin.chatRequests[2]?.body?.response_format).toBeUndefined();
  });

  it("falls back to text when the server ignores response_format and answers in prose", async () => {
    twin.script("Sure! Here is my idea: raise the LR.", textReply("Raise LR", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 5e-4"));
    const p = await proposer().propose(request());
    expect(p.title).toBe("Raise LR");
    expect(twin.chatRequests[1]?.body?.response_format).toBeUndefined();
  });

  it("feeds back a refusal and an empty reply without leaving the structured format", async () => {
    twin.script({ content: null, refusal: "I cannot help with that." }, "", json("LR 4e-4", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 4e-4"));
    const prop = proposer();
    const p = await prop.propose(request());
    expect(p.title).toBe("LR 4e-4");
    expect(prop.replyFormat).toBe("json_schema");
    expect(lastUserMessage(twin.chatRequests[1]?.body)).toContain("the model refused: I cannot help with that.");
    expect(lastUserMessage(twin.chatRequests[2]?.body)).toContain("the reply was empty");
    expect(twin.chatRequests.every((r) => r.body?.response_format?.type === "json_schema")).toBe(true);
  });

  it("with structured: 'json_schema' does not fall back", async () => {
    await twin.stop();
    twin = new OpenAITwin({ apiKey: KEY, jsonSchema: false });
    ({ baseURL } = await twin.start());
    const err = await proposer({ structured: "json_schema" }).propose(request()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAIProposerError);
    expect((err as OpenAIProposerError).status).toBe(400);
    expect((err as Error).message).toMatch(/HTTP 400.*json_schema is not supported/);
    expect(twin.chatRequests).toHaveLength(1);
  });

  it("with structured: 'text' asks for SEARCH/REPLACE blocks from the start", async () => {
    twin.script(textReply("Deeper", "WARMUP_STEPS = 100", "WARMUP_STEPS = 300"));
    const p = await proposer({ structured: "text" }).propose(request());
    expect(p.files["train.py"]).toContain("WARMUP_STEPS = 300");
    expect(twin.chatRequests[0]?.body?.response_format).toBeUndefined();
  });

  it("turns a 500 into a clear error without the key, even when the server echoes it", async () => {
    twin.script({ status: 500, error: { message: `upstream exploded for key ${KEY}`, type: "server_error" } });
    const err = await proposer().propose(request()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAIProposerError);
    const e = err as OpenAIProposerError;
    expect(e.kind).toBe("api");
    expect(e.status).toBe(500);
    expect(e.message).toMatch(/openai:twin-model at http:\/\/127\.0\.0\.1:\d+\/v1 failed with HTTP 500/);
    expect(e.message).toContain("upstream exploded");
    expect(e.message).not.toContain(KEY);
    expect(e.message).not.toContain("0123456789abcdef");
    expect(JSON.stringify(e)).not.toContain(KEY);
  });

  it("retries a 500 through the SDK, then succeeds", async () => {
    twin.script({ status: 503, error: "busy" }, json("Warmup 150", "WARMUP_STEPS = 100", "WARMUP_STEPS = 150"));
    const p = await proposer({ maxRetries: 1 }).propose(request());
    expect(p.title).toBe("Warmup 150");
    expect(twin.chatRequests.map((r) => r.status)).toEqual([503, 200]);
  });

  it("turns a timeout into a clear error", async () => {
    twin.script({ content: json("Slow", "DEPTH", "D"), delayMs: 2_000 });
    const err = await proposer({ timeoutMs: 200 }).propose(request()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAIProposerError);
    expect((err as Error).message).toMatch(/timed out after 200 ms/);
    expect((err as Error).message).not.toContain(KEY);
  });

  it("gives up on a proposal past its deadline, every request, retry and correction together", async () => {
    // Each reply arrives within the request timeout, but the corrections add up.
    twin.script({ content: "not json", delayMs: 400 }, { content: "still not json", delayMs: 400 }, { content: json("Late", "DEPTH", "D"), delayMs: 400 });
    const err = await proposer({ timeoutMs: 5_000, deadlineMs: 600, structured: "json_schema" }).propose(request()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAIProposerError);
    expect((err as Error).message).toMatch(/gave no proposal within 600 ms \(every request, retry and correction together\): attempt 1: /);
    // The third reply was never waited for.
    expect(twin.chatRequests.length).toBeLessThan(3);
  });

  it("reports a wrong key as an authentication failure without the key", async () => {
    const err = await proposer({ apiKey: "sk-wrong-key-000000000000" }).propose(request()).catch((e: unknown) => e);
    expect((err as OpenAIProposerError).status).toBe(401);
    expect((err as Error).message).toMatch(/HTTP 401 \(check the API key\)/);
    expect((err as Error).message).not.toContain("sk-wrong-key-000000000000");
  });

  it("reports an unreachable endpoint clearly", async () => {
    await twin.stop();
    const err = await proposer().propose(request()).catch((e: unknown) => e);
    expect((err as OpenAIProposerError).kind).toBe("api");
    expect((err as Error).message).toMatch(/could not reach openai:twin-model at http:\/\/127\.0\.0\.1/);
  });

  it("passes maintainer notes from the request into the prompt", async () => {
    twin.script(json("LR 5e-4", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 5e-4"));
    await proposer().propose({ ...request(), reviewerNotes: ["Try the old LR with the new schedule."] });
    expect(lastUserMessage(twin.chatRequests[0]?.body)).toContain("Try the old LR with the new schedule.");
  });

  it("proposals asked for together share one prompt; another request gets its own", async () => {
    const p = proposer();
    const base = { ...request(), reviewerNotes: ["Keep the warmup."] };
    twin.script(json("LR 5e-4", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 5e-4"), json("LR 2e-4", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 2e-4"));
    await Promise.all([p.propose({ ...base, seed: 1 }), p.propose({ ...base, seed: 2 })]);
    const [a, b] = twin.chatRequests.map((r) => r.body?.messages);
    expect(b).toEqual(a);
    // A request with other notes (or history, files, guidance) is not answered from that prompt.
    twin.script(json("Warmup 50", "WARMUP_STEPS = 100", "WARMUP_STEPS = 50"));
    await p.propose({ ...base, reviewerNotes: ["Shorter warmup now."], seed: 3 });
    expect(lastUserMessage(twin.chatRequests[2]?.body)).toContain("Shorter warmup now.");
    expect(lastUserMessage(twin.chatRequests[2]?.body)).not.toContain("Keep the warmup.");
    twin.script(json("LR 4e-4", "LEARNING_RATE = 3e-4", "LEARNING_RATE = 4e-4"));
    await p.propose({ ...base, guidance: "Focus on the schedule.", seed: 4 });
    expect(lastUserMessage(twin.chatRequests[3]?.body)).toContain("Focus on the schedule.");
  });

  it("sends a JSON schema generated from the zod schema, in the form strict structured outputs accept", () => {
    const generated = z.toJSONSchema(proposalReplySchema) as { properties: Record<string, unknown>; required: string[] };
    const sent = proposalJsonSchema(["train.py", "model.py"]) as { properties: Record<string, Record<string, unknown>>; required: string[] };
    expect(Object.keys(sent.properties).sort()).toEqual(Object.keys(generated.properties).sort());
    expect([...sent.required].sort()).toEqual([...generated.required].sort());
    const edit = (sent.properties.edits!.items as { properties: Record<string, Record<string, unknown>> }).properties;
    expect(edit.path).toMatchObject({ type: "string", enum: ["train.py", "model.py"] });
    expect(sent.properties.title!.description).toMatch(/at most 80 characters/);
    // Strict mode: every object closed and every property required; no keyword it refuses.
    const objects: Record<string, unknown>[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (typeof node !== "object" || node === null) return;
      const o = node as Record<string, unknown>;
      if (o.type === "object") objects.push(o);
      for (const key of ["minLength", "maxLength", "$schema"]) expect(o[key], key).toBeUndefined();
      Object.values(o).forEach(walk);
    };
    walk(sent);
    expect(objects).toHaveLength(2);
    for (const o of objects) {
      expect(o.additionalProperties).toBe(false);
      expect([...(o.required as string[])].sort()).toEqual(Object.keys(o.properties as object).sort());
    }
  });

  it("twin lists models and checks the key", async () => {
    const ok = await fetch(`${baseURL}/models`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { data: { id: string }[] }).data[0]?.id).toBe("twin-model");
    const bad = await fetch(`${baseURL}/models`);
    expect(bad.status).toBe(401);
  });
});

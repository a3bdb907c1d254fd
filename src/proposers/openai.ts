// Proposer adapter for any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama,
// llama.cpp, ...). It asks for one structured proposal (JSON schema, validated with zod), or,
// where the server does not support json_schema replies, for SEARCH/REPLACE blocks. The edits
// are applied and checked here; a proposal that does not apply, is invalid, or reproduces a
// file already tried is fed back to the model as a follow-up message and asked again.

import OpenAI, { APIConnectionTimeoutError, APIError } from "openai";
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { z } from "zod";
import { applyEdits, parseSearchReplaceBlocks } from "../edits.js";
import { treeHash } from "../ledger/index.js";
import { buildMessages, MAX_TITLE_CHARS } from "../prompt.js";
import type { Edit, Proposal, ProposalRequest, ProposerPort } from "../types.js";

export type StructuredMode = "auto" | "json_schema" | "text";

export interface OpenAIProposerOptions {
  apiKey: string;
  /** e.g. http://localhost:8000/v1 for vLLM; default: the SDK's (api.openai.com). */
  baseURL?: string;
  model: string;
  temperature?: number;
  /** Model replies per proposal, follow-ups included (default 3). */
  maxAttempts?: number;
  /** Per HTTP request (default 120 000 ms). */
  timeoutMs?: number;
  /** SDK retries of connection errors, timeouts, 429 and 5xx (default 2). */
  maxRetries?: number;
  /**
   * The whole proposal, every request, retry and correction together (default 300 000 ms): a
   * pass that waits for the model waits at most this long, however the endpoint misbehaves.
   */
  deadlineMs?: number;
  /**
   * "json_schema": structured replies only; "text": SEARCH/REPLACE replies only; "auto" (default):
   * structured, switching to text for good on this instance when the server rejects json_schema.
   */
  structured?: StructuredMode;
  /** Bound on the prompt's characters (default: buildMessages' 60 000). */
  maxPromptChars?: number;
}

/** A request may carry maintainer notes gathered from PR discussions. */
export type ProposalRequestWithNotes = ProposalRequest & { reviewerNotes?: string[] };

/** Raised by OpenAIProposer; `kind` tells an API failure from a model that gave no usable proposal. */
export class OpenAIProposerError extends Error {
  constructor(
    message: string,
    readonly kind: "api" | "exhausted",
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = "OpenAIProposerError";
  }
}

/** The reply's shape; `path` is any path for validation (the loop names a wrong one) or the editable ones for the model. */
function replyShape(path: z.ZodType<string>) {
  return z.object({
    title: z.string().trim().min(1).max(MAX_TITLE_CHARS).describe(`Short imperative summary of the change, at most ${MAX_TITLE_CHARS} characters.`),
    hypothesis: z.string().trim().min(1).describe("Why the change should lower val_bpb within the fixed time budget."),
    edits: z
      .array(
        z.object({
          path,
          search: z.string().describe("Text copied exactly from the current file."),
          replace: z.string().describe("The new text."),
        }),
      )
      .min(1)
      .describe("SEARCH/REPLACE edits applied in order; each search occurs exactly once in the current file."),
  });
}

export const proposalReplySchema = replyShape(z.string().min(1));

export type ProposalReply = z.infer<typeof proposalReplySchema>;

/** Keywords OpenAI's strict structured outputs refuse: zod still checks them on the reply. */
const NOT_IN_STRICT_MODE = ["minLength", "maxLength"] as const;

/**
 * The JSON schema sent as response_format, generated from the same zod schema that validates
 * the reply (strict mode: every property required, no extras), with the editable paths as an enum.
 */
export function proposalJsonSchema(editablePaths: string[]): Record<string, unknown> {
  // Made once per set of paths: generating it was a good part of asking for a proposal.
  const key = JSON.stringify(editablePaths);
  let schema = schemaCache.get(key);
  if (!schema) {
    schema = makeProposalJsonSchema(editablePaths);
    schemaCache.set(key, schema);
    if (schemaCache.size > 32) schemaCache.delete(schemaCache.keys().next().value!);
  }
  return structuredClone(schema);
}
const schemaCache = new Map<string, Record<string, unknown>>();

function makeProposalJsonSchema(editablePaths: string[]): Record<string, unknown> {
  const path = editablePaths.length > 0 ? z.enum(editablePaths as [string, ...string[]]) : z.string();
  const { $schema: _dialect, ...schema } = z.toJSONSchema(replyShape(path), {
    target: "draft-7",
    override: (ctx) => {
      for (const key of NOT_IN_STRICT_MODE) delete (ctx.jsonSchema as Record<string, unknown>)[key];
    },
  }) as Record<string, unknown>;
  return schema;
}

const MAX_FEEDBACK_CHARS = 4_000;
const MAX_ECHO_CHARS = 20_000;

type Message = ChatCompletionMessageParam;
type Reply = { content: string; refusal: string | null; finishReason: string | null };
type Outcome = { ok: true; proposal: Proposal } | { ok: false; error: string };

export class OpenAIProposer implements ProposerPort {
  readonly name: string;
  /** A model takes seconds to minutes: the next proposal is asked for while runs train. */
  readonly asksAhead = true;
  private readonly client: OpenAI;
  private readonly opts: Required<Pick<OpenAIProposerOptions, "model" | "maxAttempts" | "timeoutMs" | "maxRetries" | "structured" | "deadlineMs">> &
    OpenAIProposerOptions;
  /** Current reply format; "auto" starts with json_schema and may fall back to text once. */
  private mode: "json_schema" | "text";
  /** Set once the endpoint returned a JSON reply to a json_schema request. */
  private jsonSeen = false;
  /** The last prompt built, and what it was built from. */
  private lastPrompt: { req: ProposalRequestWithNotes; mode: "json_schema" | "text"; messages: Message[] } | null = null;

  constructor(options: OpenAIProposerOptions) {
    if (!options.apiKey) throw new Error("OpenAIProposer: apiKey is required");
    if (!options.model) throw new Error("OpenAIProposer: model is required");
    this.opts = {
      ...options,
      maxAttempts: Math.max(1, options.maxAttempts ?? 3),
      timeoutMs: options.timeoutMs ?? 120_000,
      maxRetries: options.maxRetries ?? 2,
      deadlineMs: options.deadlineMs ?? 300_000,
      structured: options.structured ?? "auto",
    };
    this.name = `openai:${options.model}`;
    this.mode = this.opts.structured === "text" ? "text" : "json_schema";
    this.client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      timeout: this.opts.timeoutMs,
      maxRetries: this.opts.maxRetries,
    });
  }

  /** The reply format the next request uses ("json_schema" or "text"). */
  get replyFormat(): "json_schema" | "text" {
    return this.mode;
  }

  async propose(req: ProposalRequestWithNotes): Promise<Proposal> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.opts.deadlineMs);
    try {
      return await this.proposeWithin(req, deadline.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  private async proposeWithin(req: ProposalRequestWithNotes, signal: AbortSignal): Promise<Proposal> {
    const failures: string[] = [];
    let messages = this.initialMessages(req);
    let fellBack = false;
    for (let attempt = 1; attempt <= this.opts.maxAttempts; ) {
      let reply: Reply;
      try {
        reply = await this.complete(messages, req.editablePaths, signal);
      } catch (err) {
        if (signal.aborted) {
          throw new OpenAIProposerError(
            this.redact(`${this.name} gave no proposal within ${this.opts.deadlineMs} ms (every request, retry and correction together)${failures.length ? `: ${failures.join("; ")}` : ""}`),
            "api",
          );
        }
        if (!fellBack && this.canFallBack() && isJsonSchemaRejection(err)) {
          this.mode = "text";
          fellBack = true;
          messages = this.initialMessages(req);
          continue;
        }
        throw this.apiError(err);
      }

      const ignoredFormat =
        this.canFallBack() && !fellBack && !this.jsonSeen && reply.refusal === null && reply.content.trim() !== "" && reply.finishReason !== "length" && parseJson(reply.content) === undefined;
      if (ignoredFormat) {
        // The server ignored response_format: talk to it in the text format from now on.
        this.mode = "text";
        fellBack = true;
        messages = this.initialMessages(req);
        continue;
      }

      const outcome = this.evaluate(reply, req);
      if (outcome.ok) return outcome.proposal;
      failures.push(`attempt ${attempt}: ${clip(outcome.error, 600)}`);
      messages = [
        ...messages,
        { role: "assistant", content: clip(reply.content || reply.refusal || "(empty reply)", MAX_ECHO_CHARS) },
        { role: "user", content: feedback(outcome.error, this.mode) },
      ];
      attempt++;
    }
    throw new OpenAIProposerError(
      this.redact(
        `${this.name} gave no usable proposal after ${this.opts.maxAttempts} ${this.opts.maxAttempts === 1 ? "attempt" : "attempts"}: ${failures.join("; ")}`,
      ),
      "exhausted",
    );
  }

  private canFallBack(): boolean {
    return this.opts.structured === "auto" && this.mode === "json_schema";
  }

  private initialMessages(req: ProposalRequestWithNotes): Message[] {
    // Proposals asked for together share one request but for its seed, which the prompt does
    // not show: its messages are built once (history, files and guidance make them long).
    const last = this.lastPrompt;
    const same =
      last !== null &&
      last.mode === this.mode &&
      last.req.history === req.history &&
      last.req.files === req.files &&
      last.req.guidance === req.guidance &&
      last.req.editablePaths === req.editablePaths &&
      last.req.bestBpb === req.bestBpb &&
      last.req.reviewerNotes === req.reviewerNotes;
    if (!same) {
      const messages = buildMessages(req, {
        structured: this.mode === "json_schema",
        maxChars: this.opts.maxPromptChars,
        reviewerNotes: req.reviewerNotes,
      });
      this.lastPrompt = { req, mode: this.mode, messages };
      return [...messages];
    }
    return [...last.messages];
  }

  private async complete(messages: Message[], editablePaths: string[], signal: AbortSignal): Promise<Reply> {
    const params: ChatCompletionCreateParamsNonStreaming = { model: this.opts.model, messages };
    if (this.opts.temperature !== undefined) params.temperature = this.opts.temperature;
    if (this.mode === "json_schema") {
      params.response_format = {
        type: "json_schema",
        json_schema: { name: "proposal", strict: true, schema: proposalJsonSchema(editablePaths) },
      };
    }
    const completion = await this.client.chat.completions.create(params, { signal });
    const choice = completion.choices?.[0];
    if (!choice) return { content: "", refusal: null, finishReason: null };
    const message = choice.message;
    const refusal = typeof message?.refusal === "string" && message.refusal !== "" ? message.refusal : null;
    return {
      content: typeof message?.content === "string" ? message.content : "",
      refusal,
      finishReason: choice.finish_reason ?? null,
    };
  }

  /** Parse, validate and apply one reply. */
  private evaluate(reply: Reply, req: ProposalRequest): Outcome {
    if (reply.refusal !== null) return { ok: false, error: `the model refused: ${reply.refusal}` };
    if (reply.content.trim() === "") return { ok: false, error: "the reply was empty" };
    const cutOff = reply.finishReason === "length" ? " (the reply was cut off at the output token limit; keep the edits shorter)" : "";

    let candidate: unknown;
    if (this.mode === "json_schema") {
      const json = parseJson(reply.content);
      if (json === undefined) return { ok: false, error: `the reply is not a JSON object${cutOff}` };
      this.jsonSeen = true;
      candidate = json;
    } else {
      const parsed = parseSearchReplaceBlocks(reply.content, req.editablePaths[0] ?? "");
      if (!parsed.ok) return { ok: false, error: `${parsed.error}${cutOff}` };
      candidate = { title: parsed.title, hypothesis: parsed.hypothesis, edits: parsed.edits };
    }

    const valid = proposalReplySchema.safeParse(candidate);
    if (!valid.success) return { ok: false, error: `the proposal is invalid: ${describeIssues(valid.error)}${cutOff}` };
    const { title, hypothesis } = valid.data;
    const edits: Edit[] = valid.data.edits.map((e) => ({ path: e.path, search: e.search, replace: e.replace }));

    const applied = applyEdits(req.files, edits, req.editablePaths);
    if (!applied.ok) return { ok: false, error: `the edits do not apply: ${applied.error}${cutOff}` };
    const files = applied.files;
    if (req.editablePaths.every((p) => files[p] === req.files[p])) {
      return { ok: false, error: "the edits leave the files unchanged; propose an actual change" };
    }
    const hash = treeHash(files);
    if (req.triedTreeHashes.has(hash)) {
      const earlier = req.history.find((h) => h.treeHash === hash);
      const which = earlier ? `experiment #${earlier.n} ("${earlier.title}", ${earlier.outcome})` : "an earlier experiment";
      return { ok: false, error: `this exact file was already tried in ${which}; propose something different` };
    }
    return { ok: true, proposal: { title, hypothesis, edits, files, proposer: this.name } };
  }

  private apiError(err: unknown): OpenAIProposerError {
    const where = `${this.name} at ${this.opts.baseURL ?? "the default OpenAI endpoint"}`;
    const retries = this.opts.maxRetries;
    let message: string;
    let status: number | null = null;
    if (err instanceof APIConnectionTimeoutError) {
      message = `chat completion request to ${where} timed out after ${this.opts.timeoutMs} ms (${retries} ${retries === 1 ? "retry" : "retries"})`;
    } else if (err instanceof APIError && err.status === undefined) {
      message = `could not reach ${where} (${retries} ${retries === 1 ? "retry" : "retries"}): ${err.message}`;
    } else if (err instanceof APIError) {
      status = err.status ?? null;
      const hint =
        status === 401 || status === 403
          ? " (check the API key)"
          : status === 404
            ? " (check the model name and baseURL)"
            : status === 429
              ? " (rate limited or out of quota)"
              : "";
      message = `chat completion request to ${where} failed with HTTP ${status}${hint}: ${err.message}`;
    } else {
      message = `chat completion request to ${where} failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    return new OpenAIProposerError(this.redact(message), "api", status);
  }

  /** Never let the API key leave in an error message (some servers echo it). */
  private redact(text: string): string {
    const key = this.opts.apiKey;
    let out = text.split(key).join("[redacted]");
    // Servers may echo a part of the key; hide any long enough piece of it too.
    if (key.length >= 12) {
      for (const piece of [key.slice(0, 8), key.slice(-8)]) out = out.split(piece).join("[redacted]");
    }
    return out;
  }
}

function isJsonSchemaRejection(err: unknown): boolean {
  if (!(err instanceof APIError) || err.status === undefined) return false;
  if (err.status !== 400 && err.status !== 422 && err.status !== 501) return false;
  const text = `${err.message} ${JSON.stringify(err.error ?? "")}`;
  return /response_format|json_schema|structured output|grammar/i.test(text);
}

/** The reply as a JSON object, tolerating a surrounding code fence; undefined when it isn't one. */
function parseJson(text: string): Record<string, unknown> | undefined {
  let t = text.trim();
  const fenced = /^```[a-zA-Z]*\n([\s\S]*?)\n?```$/.exec(t);
  if (fenced?.[1] !== undefined) t = fenced[1].trim();
  if (!t.startsWith("{")) return undefined;
  try {
    const v: unknown = JSON.parse(t);
    return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 8)
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "(reply)"}: ${i.message}`)
    .join("; ");
}

function feedback(error: string, mode: "json_schema" | "text"): string {
  return [
    `Your proposal could not be used: ${clip(error, MAX_FEEDBACK_CHARS)}`,
    "",
    "Fix this and reply again with ONE proposal, using the current files exactly as shown above" +
      (mode === "json_schema" ? " (the JSON object only)." : " (in the SEARCH/REPLACE format only)."),
  ].join("\n");
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)} [… ${text.length - max} characters cut]` : text;
}

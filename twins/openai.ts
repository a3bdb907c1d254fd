// An OpenAI-compatible twin: a real HTTP server on 127.0.0.1 that answers
// `POST /v1/chat/completions` and `GET /v1/models` in the shapes of the real API, with replies
// taken from a script (a queue of handlers) or a rule function. Every request is recorded.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface ChatRequestBody {
  model?: string;
  messages?: { role: string; content: unknown }[];
  response_format?: { type?: string; json_schema?: { name?: string; strict?: boolean; schema?: unknown } };
  temperature?: number;
  [key: string]: unknown;
}

export interface TwinError {
  status: number;
  error: { message: string; type?: string; code?: string | null; param?: string | null } | string;
}

/** A reply: the assistant's text, an HTTP error, or a message with its finish reason. */
export type TwinReply = string | TwinError | { content: string | null; finishReason?: string; refusal?: string; delayMs?: number };

export type TwinHandler = (body: ChatRequestBody, request: RecordedRequest) => TwinReply | Promise<TwinReply>;

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body (undefined for GET or a body that is not JSON). */
  body: ChatRequestBody | undefined;
  /** What the twin answered with. */
  status?: number;
}

export interface OpenAITwinOptions {
  /** Expected bearer token (default "sk-twin-test-key"). */
  apiKey?: string;
  /** false: reject `response_format: json_schema` with a 400, like servers that lack it. */
  jsonSchema?: boolean;
  /** Model ids listed by GET /v1/models (default ["twin-model"]). */
  models?: string[];
  /** Answers requests when the script queue is empty. */
  rule?: TwinHandler;
}

export class OpenAITwin {
  readonly requests: RecordedRequest[] = [];
  readonly apiKey: string;
  private readonly jsonSchema: boolean;
  private readonly models: string[];
  private rule: TwinHandler | undefined;
  private readonly queue: TwinHandler[] = [];
  private server: Server | undefined;
  private counter = 0;

  constructor(opts: OpenAITwinOptions = {}) {
    this.apiKey = opts.apiKey ?? "sk-twin-test-key";
    this.jsonSchema = opts.jsonSchema ?? true;
    this.models = opts.models ?? ["twin-model"];
    this.rule = opts.rule;
  }

  /** Append replies (or handlers producing them) to the queue; each answers one chat request. */
  script(...steps: (TwinReply | TwinHandler)[]): this {
    for (const step of steps) this.queue.push(typeof step === "function" ? step : () => step);
    return this;
  }

  /** Set the rule that answers when the queue is empty. */
  setRule(rule: TwinHandler | undefined): this {
    this.rule = rule;
    return this;
  }

  /** Scripted replies not consumed yet. */
  get pending(): number {
    return this.queue.length;
  }

  /** Chat completion requests received so far. */
  get chatRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.method === "POST" && r.path === "/v1/chat/completions");
  }

  async start(): Promise<{ baseURL: string }> {
    if (this.server) throw new Error("OpenAITwin already started");
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { error: { message: `twin failure: ${String(err)}`, type: "server_error" } });
        else res.destroy();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    return { baseURL: `http://127.0.0.1:${port}/v1` };
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    let body: ChatRequestBody | undefined;
    if (raw !== "") {
      try {
        body = JSON.parse(raw) as ChatRequestBody;
      } catch {
        body = undefined;
      }
    }
    const record: RecordedRequest = { method: req.method ?? "GET", path, headers: req.headers, body };
    this.requests.push(record);
    const reply = (status: number, payload: unknown): void => {
      record.status = status;
      sendJson(res, status, payload);
    };

    if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
      reply(401, {
        error: {
          message: "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      });
      return;
    }

    if (req.method === "GET" && path === "/v1/models") {
      reply(200, { object: "list", data: this.models.map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: "twin" })) });
      return;
    }
    if (req.method !== "POST" || path !== "/v1/chat/completions") {
      reply(404, { error: { message: `Unknown request URL: ${req.method} ${path}`, type: "invalid_request_error", param: null, code: "unknown_url" } });
      return;
    }
    if (body === undefined || !Array.isArray(body.messages) || typeof body.model !== "string") {
      reply(400, { error: { message: "'model' and 'messages' are required properties", type: "invalid_request_error", param: null, code: null } });
      return;
    }
    if (!this.jsonSchema && body.response_format?.type === "json_schema") {
      reply(400, { error: { message: "response_format json_schema is not supported", type: "invalid_request_error", param: "response_format", code: null } });
      return;
    }

    const handler = this.queue.shift() ?? this.rule;
    if (!handler) {
      reply(500, { error: { message: "twin script exhausted: no reply scripted for this request", type: "server_error", param: null, code: null } });
      return;
    }
    const answer = await handler(body, record);
    if (typeof answer === "object" && answer !== null && "status" in answer) {
      const error = typeof answer.error === "string" ? { message: answer.error, type: "server_error", param: null, code: null } : answer.error;
      reply(answer.status, { error });
      return;
    }
    const message = typeof answer === "string" ? { content: answer, finishReason: "stop" } : answer;
    if ("delayMs" in message && message.delayMs) await new Promise((r) => setTimeout(r, message.delayMs));
    if (res.destroyed || res.writableEnded) return;
    const content = message.content;
    const promptChars = body.messages.reduce((n, m) => n + (typeof m.content === "string" ? m.content.length : 0), 0);
    const completionTokens = Math.ceil((content ?? "").length / 4);
    const promptTokens = Math.ceil(promptChars / 4);
    reply(200, {
      id: `chatcmpl-twin${++this.counter}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content, refusal: message.refusal ?? null },
          logprobs: null,
          finish_reason: message.finishReason ?? "stop",
        },
      ],
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
      system_fingerprint: "fp_twin",
    });
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function sendJson(res: ServerResponse, status: number, payload: unknown): void {
  const text = JSON.stringify(payload);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "x-request-id": `req_twin_${Date.now()}` });
  res.end(text);
}

/** The text of the last user message of a chat request (handy in rules and assertions). */
export function lastUserMessage(body: ChatRequestBody | undefined): string {
  const msgs = body?.messages ?? [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i];
    if (m?.role === "user" && typeof m.content === "string") return m.content;
  }
  return "";
}

// A stand-in for a model, for the demo (--model-latency) and `npm run bench:scale`: an
// OpenAI-compatible twin that answers a proposal request after a latency with the built-in
// proposer's change to the files at the head of the default branch when it was asked.
import { randomBytes } from "node:crypto";
import { proposeMutation } from "../src/proposers/mutate.js";
import { OpenAITwin, type ChatRequestBody, type TwinReply } from "../twins/openai.js";

export class ModelDouble {
  readonly twin: OpenAITwin;
  /** When each proposal was asked for (ms since the epoch). */
  readonly asked: number[] = [];
  private seed = 1000;
  private readonly given = new Set<string>();

  constructor(
    private readonly latencyMs: number,
    private readonly head: () => Promise<Record<string, string>>,
    private readonly editable: string[],
  ) {
    this.twin = new OpenAITwin({ apiKey: `sk-double-${randomBytes(12).toString("hex")}`, rule: (body) => this.answer(body) });
  }

  private async answer(body: ChatRequestBody): Promise<TwinReply> {
    if (body.response_format?.json_schema?.name !== "proposal") return "This stand-in for a model only proposes changes.";
    this.asked.push(Date.now());
    const files = await this.head();
    // A change it has proposed before would be refused as a repeat: the next seed instead.
    const propose = () => proposeMutation({ guidance: "", files, editablePaths: this.editable, history: [], bestBpb: null, triedTreeHashes: new Set(), seed: this.seed++ });
    let p = propose();
    for (let i = 0; i < 1000 && this.given.has(JSON.stringify(p.files)); i++) p = propose();
    this.given.add(JSON.stringify(p.files));
    return { content: JSON.stringify({ title: p.title, hypothesis: p.hypothesis, edits: p.edits }), delayMs: this.latencyMs };
  }
}

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
    const propose = (from: Record<string, string>) =>
      proposeMutation({ guidance: "", files: from, editablePaths: this.editable, history: [], bestBpb: null, triedTreeHashes: new Set(), seed: this.seed++ });
    let p = propose(files);
    for (let i = 0; i < 200 && this.given.has(JSON.stringify(p.files)); i++) p = propose(files);
    // A long night runs out of single changes to the head: another change on top of one, and so on.
    let { title, edits, files: after } = p;
    for (let i = 0; i < 1000 && this.given.has(JSON.stringify(after)); i++) {
      const q = propose(after);
      title = `${title}; ${q.title}`;
      edits = [...edits, ...q.edits];
      after = q.files;
    }
    this.given.add(JSON.stringify(after));
    return { content: JSON.stringify({ title: title.slice(0, 200), hypothesis: p.hypothesis, edits }), delayMs: this.latencyMs };
  }
}

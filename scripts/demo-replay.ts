// The demo's --proposals: a list of proposals replayed, in order, through the bot's
// OpenAI-compatible proposer by an OpenAI twin.
import { randomBytes } from "node:crypto";
import { lastUserMessage, OpenAITwin, type ChatRequestBody, type TwinReply } from "../twins/openai.js";
import type { ProposalEntry } from "./demo-args.js";

/**
 * Answers the proposer's requests with the proposals of a --proposals file, in order, in the
 * structured reply format it asks for. Past the end it answers with an error (no experiment can
 * be proposed), and the demo ends the night once the open experiments are decided.
 */
export class ProposalReplay {
  readonly twin: OpenAITwin;
  served = 0;
  exhausted = false;

  constructor(
    private readonly entries: ProposalEntry[],
    private readonly source: string,
    private readonly print: (line: string) => void,
  ) {
    this.twin = new OpenAITwin({ apiKey: `sk-demo-${randomBytes(12).toString("hex")}`, rule: (body) => this.answer(body) });
  }

  private answer(body: ChatRequestBody): TwinReply {
    // The same endpoint answers questions asked of the bot (@mentions); those get no proposal.
    if (body.response_format?.json_schema?.name !== "proposal") {
      return "This demo replays proposals from a file; there is no model here to answer questions.";
    }
    // A follow-up says why the previous reply could not be used (it does not apply, repeats an
    // earlier experiment…); the proposer asks again, and the next proposal answers.
    const refused = /^Your proposal could not be used: ([^\n]*)/.exec(lastUserMessage(body))?.[1];
    if (refused !== undefined && this.served > 0) this.print(`proposal [${this.served - 1}] could not be used: ${refused}`);
    const entry = this.entries[this.served];
    if (!entry) {
      if (!this.exhausted) this.print(`the proposals of ${this.source} are used up: the night ends once the open experiments are decided`);
      this.exhausted = true;
      return { status: 400, error: { message: `no more proposals: all ${this.entries.length} of ${this.source} were replayed`, type: "invalid_request_error" } };
    }
    this.print(`replaying proposal [${this.served}] of ${this.source}: ${entry.title}`);
    this.served += 1;
    return JSON.stringify(entry);
  }
}

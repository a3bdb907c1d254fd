// Writing a record back to its PR: the body, the labels and (with `close`) the closing, in one
// write, since GitHub counts every write against the installation's budget. The loop and
// people's commands both write records this way.
import { renderBody } from "./body.js";
import { labelsFor } from "./labels.js";
import type { ExperimentPull, ExperimentRecord, GitHubPort } from "../types.js";

export async function writeRecord(gh: GitHubPort, pull: ExperimentPull, r: ExperimentRecord, at: Date, close = false): Promise<void> {
  r.updatedAt = at.toISOString();
  const body = renderBody(r);
  const labels = labelsFor(r);
  const closing = close && pull.state === "open";
  await gh.updatePull(pull.number, { body, labels, ...(closing ? { state: "closed" as const } : {}) });
  pull.body = body;
  pull.record = r;
  pull.labels = labels;
  if (closing) pull.state = "closed";
}

// What a webhook asks of the bot: which repositories of which installation to reconcile,
// whether comments must be read first, and the click to carry out, if it is one. Pure and
// checked with zod: a payload is untrusted input like any other, and anything this does not
// recognise asks for nothing.
import { z } from "zod";
import { VAL_BPB_CHECK } from "./checks.js";
import type { Click } from "./steering/index.js";
import type { RepoRef } from "./types.js";

export const EVENTS = [
  "push",
  "pull_request",
  "check_run",
  "issue_comment",
  "pull_request_review_comment",
  "installation",
  "installation_repositories",
] as const;

const clickedCheckRun = {
  check_run: z.object({
    name: z.string().optional(),
    head_sha: z.string().regex(/^[0-9a-f]{40}$/),
    pull_requests: z.array(z.object({ number: z.number().int().positive() })).optional(),
  }),
  sender: z.object({ login: z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]|\[bot\]){0,45}$/) }),
};

/**
 * What a check_run webhook says about a click (null for anything else): one of the val_bpb
 * check run's buttons (`requested_action`), or GitHub's own "Re-run" on it (`rerequested`),
 * which measures again like the Re-run button.
 */
const clickedCheck = z.discriminatedUnion("action", [
  z.object({ action: z.literal("requested_action"), requested_action: z.object({ identifier: z.enum(["rerun", "keep"]) }), ...clickedCheckRun }),
  z.object({ action: z.literal("rerequested"), ...clickedCheckRun }),
]);

export function clickOf(payload: unknown, delivery: string): Click | null {
  const p = clickedCheck.safeParse(payload);
  if (!p.success || !/^[A-Za-z0-9-]{1,100}$/.test(delivery)) return null;
  if (p.data.action === "rerequested" && p.data.check_run.name !== VAL_BPB_CHECK) return null;
  return {
    command: p.data.action === "rerequested" ? "rerun" : p.data.requested_action.identifier,
    user: p.data.sender.login,
    delivery,
    headSha: p.data.check_run.head_sha,
    pull: p.data.check_run.pull_requests?.[0]?.number ?? null,
  };
}


export interface Work {
  installationId: number;
  repos: RepoRef[];
  /** A comment was written: read comments (commands, notes, questions) before the pass. */
  steer: boolean;
  /** A button of the val_bpb check run (or its Re-run): carried out before the repository's next pass. */
  click?: Click;
}

const repoOf = z.object({ name: z.string().min(1), owner: z.object({ login: z.string().min(1) }) });
const fullNames = z.array(z.object({ full_name: z.string() })).optional();
const envelope = z.object({
  installation: z.object({ id: z.number().int().positive() }).optional(),
  repository: repoOf.extend({ default_branch: z.string().optional() }).optional(),
  repositories: fullNames,
  repositories_added: fullNames,
  sender: z.object({ type: z.string().optional() }).optional(),
  ref: z.string().optional(),
});

export function webhookWork(event: string, payload: unknown, delivery: string): Work | null {
  const p = envelope.safeParse(payload);
  if (!p.success) return null;
  const { installation, repository, sender } = p.data;
  // Without an installation there is nothing to act for.
  if (!installation) return null;
  // The bot's own PR edits, labels and check runs echo back as webhooks; they carry nothing a
  // pass does not already know, so only a person's or another app's push counts.
  if (event !== "push" && sender?.type === "Bot") return null;
  // Only the default branch's pushes change what a pass decides; a push to an experiment
  // branch (the bot's own commits) is seen as the pull request's synchronize event.
  if (event === "push" && repository?.default_branch && p.data.ref !== `refs/heads/${repository.default_branch}`) return null;
  const repos: RepoRef[] = [];
  if (repository) repos.push({ owner: repository.owner.login, repo: repository.name });
  for (const r of [...(p.data.repositories ?? []), ...(p.data.repositories_added ?? [])]) {
    const [owner, repo, extra] = r.full_name.split("/");
    if (owner && repo && extra === undefined) repos.push({ owner, repo });
  }
  if (!repos.length) return null;
  const work: Work = {
    installationId: installation.id,
    repos,
    steer: event === "issue_comment" || event === "pull_request_review_comment",
  };
  // A button on the val_bpb check run: carried out from this webhook (who clicked is the
  // sender GitHub vouches for), under the repository's lock before its next pass.
  const click = event === "check_run" && repository ? clickOf(payload, delivery) : null;
  if (click) work.click = click;
  return work;
}

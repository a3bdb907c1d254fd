// GitHub twin: an in-process stand-in for the part of GitHub the bot talks to.
//
//   const twin = new GitHubTwin();
//   const { url, host } = await twin.start();      // url = http://127.0.0.1:PORT/api/v3
//   twin.createApp({ appId, privateKey, webhookSecret, webhookUrl });  // webhookUrl: the bot's
//                                                   // http://127.0.0.1:N/api/github/webhooks
//   await twin.createRepo("alice", "research", { "program.md": "...", "train.py": "..." });
//   await twin.installApp("alice", ["research"]);  // delivers installation.created
//   await twin.pushCommit("alice", "research", "main", { "program.md": "new" }, "Guidance");
//   await twin.waitForIdle();                       // webhooks delivered, bot quiet for 200 ms
//   twin.pulls("alice", "research"); twin.checkRuns(...); twin.requestStats();
//
// Wiring Probot: new Probot({ appId, privateKey, secret: webhookSecret, baseUrl: url }), or the
// environment APP_ID, PRIVATE_KEY, WEBHOOK_SECRET, GHE_HOST=<host>, GHE_PROTOCOL=http (Probot
// then uses http://<host>/api/v3). Probot's Octokit throttles writes like GitHub asks clients to
// (one per second, three for issues/comments/PRs); tests want
//   Octokit: ProbotOctokit.defaults((o) => ({ ...o, throttle: { ...o.throttle, enabled: false } }))
// and usually `retry: { enabled: false }` too (405/409 are otherwise retried with backoff).
//
// REST is served under /api/v3 (GitHub Enterprise layout) and also at the root. Repositories are
// bare git repos in a temp dir; webhooks are signed with the app's secret and delivered one at a
// time, in order, after the API response that caused them.
//
// Git itself is served over smart HTTP at the root, as GitHub does (./smart-http.ts):
//   git -c http.extraHeader="Authorization: Basic <base64 of x-access-token:TOKEN>" \
//     clone http://127.0.0.1:PORT/alice/research.git
// A push moves the branches and raises what a push through the API raises (push webhooks, pull
// requests synchronized, closed or merged); git requests are logged with `git: true` and count
// against no rate limit.

export { GitHubTwin } from "./twin.js";
export type {
  AuthKind,
  Fault,
  CommentSnapshot,
  CreateAppOptions,
  GitHubTwinOptions,
  InstallOptions,
  IssueSnapshot,
  LogEntry,
  PullSnapshot,
  RepoInfo,
  RequestRecord,
  RequestStats,
} from "./twin.js";
export type { Delivery } from "./webhooks.js";
export { sign as signWebhook } from "./webhooks.js";
export type { CheckRunRecord, Permissions, Role } from "./state.js";
export type { CreateRepoOptions, FileChanges } from "./core.js";

// GitHub twin: an in-process stand-in for the part of GitHub the bot talks to.
//
//   const twin = new GitHubTwin();
//   const { url } = await twin.start();            // http://127.0.0.1:PORT/api/v3
//   twin.createApp({ appId, privateKey, webhookSecret, webhookUrl });
//   await twin.createRepo("alice", "research", { "program.md": "...", "train.py": "..." });
//   await twin.installApp("alice", ["research"]);  // delivers installation.created
//   // Probot: new Probot({ appId, privateKey, secret: webhookSecret, baseUrl: url })
//   //   or env GHE_HOST=twin.host GHE_PROTOCOL=http APP_ID=... PRIVATE_KEY=... WEBHOOK_SECRET=...
//   await twin.pushCommit("alice", "research", "main", { "program.md": "new" }, "Guidance");
//   await twin.waitForIdle();
//   twin.pulls("alice", "research"); twin.checkRuns(...); twin.requestStats();
//
// REST is served under /api/v3 (GitHub Enterprise layout, what Probot's GHE_HOST produces) and
// also at the root. Repositories are bare git repos in a temp dir; webhooks are signed with the
// app's secret and delivered one at a time after the API response that caused them.

export { GitHubTwin } from "./twin.js";
export type {
  AuthKind,
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

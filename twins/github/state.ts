// The twin's in-memory state besides git: users, apps, installations, tokens, and per repository
// issues/pulls, labels, comments, reactions and check runs. Accessors hand out copies of these.

import type { KeyObject } from "node:crypto";
import type { GitRepo } from "./git.js";

export type UserType = "User" | "Bot" | "Organization";

export interface User {
  id: number;
  login: string;
  type: UserType;
  name: string | null;
  email: string | null;
}

export type Permissions = Record<string, "read" | "write" | "admin">;

export interface AppRecord {
  id: number;
  slug: string;
  name: string;
  clientId: string;
  publicKey: KeyObject;
  webhookSecret: string;
  webhookUrl: string | null;
  owner: User;
  bot: User;
  permissions: Permissions;
  events: string[];
  createdAt: string;
}

export interface InstallationRecord {
  id: number;
  appId: number;
  account: User;
  repositorySelection: "all" | "selected";
  /** Repository ids for a "selected" installation. */
  repoIds: Set<number>;
  permissions: Permissions;
  events: string[];
  createdAt: string;
}

export interface TokenRecord {
  token: string;
  installationId: number;
  expiresAt: number;
  /** Null: every repository of the installation. */
  repoIds: Set<number> | null;
  permissions: Permissions;
}

export type Role = "admin" | "maintain" | "write" | "triage" | "read" | "none";

export interface LabelRecord {
  id: number;
  name: string;
  color: string;
  description: string | null;
  isDefault: boolean;
}

export interface PullData {
  headRef: string;
  headSha: string;
  baseRef: string;
  baseSha: string;
  draft: boolean;
  merged: boolean;
  mergedAt: string | null;
  mergedBy: User | null;
  mergeCommitSha: string | null;
  maintainerCanModify: boolean;
  /** Set when the head branch was deleted (the pull request keeps its last head SHA). */
  headDeleted: boolean;
}

export interface IssueRecord {
  id: number;
  prId: number;
  number: number;
  title: string;
  body: string | null;
  user: User;
  state: "open" | "closed";
  stateReason: "completed" | "reopened" | "not_planned" | null;
  locked: boolean;
  /** Label names, in the order they were added. */
  labels: string[];
  assignees: User[];
  createdAt: string;
  updatedAt: string;
  closedAt: string | null;
  closedBy: User | null;
  pull: PullData | null;
  /** The app whose installation token created it, if any. */
  viaApp: number | null;
}

export type ReactionContent = "+1" | "-1" | "laugh" | "confused" | "heart" | "hooray" | "rocket" | "eyes";

export interface ReactionRecord {
  id: number;
  user: User;
  content: ReactionContent;
  createdAt: string;
}

export interface CommentRecord {
  id: number;
  issueNumber: number;
  user: User;
  body: string;
  createdAt: string;
  updatedAt: string;
  viaApp: number | null;
  reactions: ReactionRecord[];
}

export interface ReviewCommentRecord {
  id: number;
  pullNumber: number;
  user: User;
  body: string;
  path: string;
  line: number;
  commitId: string;
  createdAt: string;
  updatedAt: string;
}

export interface CheckRunAction {
  label: string;
  description: string;
  identifier: string;
}

export interface CheckRunRecord {
  id: number;
  suiteId: number;
  appId: number;
  name: string;
  headSha: string;
  status: "queued" | "in_progress" | "completed" | "waiting" | "requested" | "pending";
  conclusion: string | null;
  externalId: string;
  detailsUrl: string | null;
  startedAt: string;
  completedAt: string | null;
  output: { title: string | null; summary: string | null; text: string | null; annotationsCount: number };
  actions: CheckRunAction[];
  createdAt: string;
}

export interface CheckSuiteRecord {
  id: number;
  appId: number;
  headSha: string;
  headBranch: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface RepoRecord {
  id: number;
  owner: User;
  name: string;
  private: boolean;
  defaultBranch: string;
  description: string | null;
  git: GitRepo;
  createdAt: string;
  updatedAt: string;
  pushedAt: string;
  labels: LabelRecord[];
  /** Issues and pull requests share one number sequence, like on GitHub. */
  issues: Map<number, IssueRecord>;
  comments: CommentRecord[];
  /** Review comments on pull request diffs (their own id sequence, like on GitHub). */
  reviewComments: ReviewCommentRecord[];
  checkRuns: CheckRunRecord[];
  checkSuites: CheckSuiteRecord[];
  roles: Map<string, Role>;
}

export function fullName(repo: RepoRecord): string {
  return `${repo.owner.login}/${repo.name}`;
}

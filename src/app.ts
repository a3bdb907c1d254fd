// The Probot application: thin webhook handlers that only trigger reconcile passes
// (GitHub wants an answer within 10 s), plus the resync timer and the runner wiring.
import type { Probot, ProbotOctokit } from "probot";
import type { Config } from "./config.js";
import { Controller } from "./controller.js";
import { BackoffGate } from "./github/backoff.js";
import { WriteBudget } from "./github/budget.js";
import { GitWire, gitUrlFor, treeFromApi } from "./github/git-wire.js";
import { OctokitGitHub } from "./github/octokit.js";
import { MutateProposer } from "./proposers/mutate.js";
import { OpenAIProposer } from "./proposers/openai.js";
import { type ReconcileReport } from "./reconcile/index.js";
import { NotLeaderError, SoleLeader, type LeaderElector } from "./leader/elector.js";
import { FencedRunner } from "./leader/fence.js";
import { openaiEnv, settingsFrom, type Env, type Settings } from "./settings.js";
import { openaiAnswerer } from "./steering/index.js";
import { EVENTS, webhookWork } from "./webhooks.js";
import type { Logger } from "./log.js";
import type { ProposerPort, RepoRef, RunnerPort } from "./types.js";

export interface AppOptions {
  runner: RunnerPort;
  /** The bot's settings (src/index.ts parses them at start). */
  settings?: Settings;
  /** Without `settings`: the environment they are parsed from (default process.env; tests, demo). */
  env?: Env;
  /** The resync period in ms, instead of the settings' seconds (tests, demo). */
  resyncMs?: number;
  /** Replace the proposer factory (tests, demo). */
  proposerFor?(config: Config): ProposerPort;
  onPass?(repo: RepoRef, report: ReconcileReport, ms: number): void;
  /** Receives the controller once the app is loaded (demo and tests wait on it). */
  onController?(controller: Controller): void;
  /**
   * Who of several bot processes runs the passes (src/leader/); started by the app, stopped by
   * whoever made it. Absent: this process always does.
   */
  leader?: LeaderElector;
}

/** The proposer a repository's config asks for; the endpoint and key come from the bot's settings. */
export function defaultProposerFor(openai: Settings["openai"]) {
  return (config: Config): ProposerPort => {
    if (config.proposer.kind === "mutate") return new MutateProposer();
    const apiKey = openai.apiKey;
    if (!apiKey) {
      throw new Error(
        "proposer.kind is openai but OPENAI_API_KEY is not set in the bot's environment " +
          "(set it, with OPENAI_BASE_URL for a compatible server, or use proposer.kind: mutate)",
      );
    }
    return new OpenAIProposer({
      apiKey,
      baseURL: openai.baseURL ?? undefined,
      model: config.proposer.model,
      temperature: config.proposer.temperature,
      maxAttempts: config.proposer.maxAttempts,
    });
  };
}

/** Every GitHub call has a deadline; Probot's retry plugin bounds the retries. */
const GITHUB_TIMEOUT_MS = 30_000;

/**
 * Every HTTP attempt of this client (the throttling plugin's retries included) waits at the
 * installation's gate and has its own deadline (src/github/backoff.ts).
 */
export function throughGate(octokit: ProbotOctokit, gate: BackoffGate, ms: number, budget: WriteBudget, leads: () => boolean = () => true): void {
  octokit.hook.wrap("request", async (request, options) => {
    // Only the leader writes: a pass still running when its bot stepped down stops here.
    if (options.method !== "GET" && options.method !== "HEAD" && !leads()) throw new NotLeaderError(`${options.method} ${options.url}`);
    // The hook chain hands every layer the same options object (what a wrapper passes to the
    // next layer is ignored), so the fetch is set on it for the layers within: the throttling
    // and retry plugins and their retries.
    options.request = { ...options.request, fetch: gate.fetch(options.request?.fetch ?? globalThis.fetch, ms, budget) };
    const ours = nativeJson(options);
    const res = await request(options);
    if (ours && res.data instanceof ReadableStream) res.data = await parseBody(res.data, String(res.headers["content-type"] ?? ""));
    return res;
  });
}

/** Set on the options of a request whose body this hook parses (the options object is reused by retries). */
const PARSED_HERE = Symbol("parsed here");

/**
 * Request and response bodies through V8's own JSON instead of Octokit's (json-with-bigint, a
 * parser written in JavaScript that keeps integers past 2^53 exact). At a few experiments a
 * second, listing pull requests with their bodies made that parser the bot's largest single CPU
 * cost; GitHub's ids, the only integers in its answers that could grow that large, are far
 * below 2^53 (about 10^10), and the bot reads none of them as more than a key.
 */
function nativeJson(options: { body?: unknown; request?: { parseSuccessResponseBody?: boolean } }): boolean {
  const own = (options.request ?? {}) as Record<string | symbol, unknown>;
  // A caller that asked for the raw body (a download) gets it.
  if (options.request?.parseSuccessResponseBody === false && !own[PARSED_HERE]) return false;
  options.request = { ...options.request, parseSuccessResponseBody: false, [PARSED_HERE]: true } as typeof options.request;
  const b = options.body;
  if (b !== null && typeof b === "object" && (Array.isArray(b) || Object.getPrototypeOf(b) === Object.prototype)) options.body = JSON.stringify(b);
  return true;
}

/** A success body the way Octokit reads it (JSON, text, or bytes by its type), JSON by V8. */
async function parseBody(stream: ReadableStream, type: string): Promise<unknown> {
  const body = new Response(stream);
  if (/^application\/(scim\+)?json\b/i.test(type)) {
    const text = await body.text();
    try {
      return JSON.parse(text);
    } catch {
      return text; // as Octokit does: a body that says JSON but is not comes back as text
    }
  }
  if (!type || type.startsWith("text/") || (/charset=utf-8/i.test(type) && !type.startsWith("application/octet-stream"))) return body.text();
  return body.arrayBuffer();
}

/**
 * What the app keeps per installation: its client (every request through the installation's
 * backoff gate, with a deadline, counted against its write budget, and refused to a follower),
 * its write budget and its gate.
 */
class Installations {
  private readonly octokits = new Map<number, ProbotOctokit>();
  private readonly budgets = new Map<number, WriteBudget>();
  private readonly gates = new Map<number, BackoffGate>();

  constructor(
    private readonly app: Probot,
    private readonly settings: Settings,
    private readonly leads: () => boolean,
  ) {}

  budget(id: number): WriteBudget {
    let b = this.budgets.get(id);
    if (!b) this.budgets.set(id, (b = new WriteBudget(this.settings.writes)));
    return b;
  }

  gate(id: number): BackoffGate {
    let g = this.gates.get(id);
    if (!g) {
      g = new BackoffGate(Date.now, undefined, (e) =>
        this.app.log.warn(
          `GitHub ${e.kind === "primary" ? "rate limit" : "secondary rate limit"} (HTTP ${e.status}) for installation ${id}: ` +
            `no request of it goes out for ${Math.ceil((e.until - e.at) / 1000)} s`,
        ),
      );
      this.gates.set(id, g);
    }
    return g;
  }

  async octokit(id: number): Promise<ProbotOctokit> {
    // Probot caches installation tokens and refreshes them before they expire.
    let o = this.octokits.get(id);
    if (!o) {
      o = await this.app.auth(id);
      throughGate(o, this.gate(id), GITHUB_TIMEOUT_MS, this.budget(id), this.leads);
      this.octokits.set(id, o);
    }
    return o;
  }

  /**
   * How experiment commits and branch deletions reach the repository: by a git push from this
   * process with the installation's token (no API write), or null: through the REST API
   * (AUTORESEARCH_GIT_PUSH=off).
   */
  async wire(id: number, repo: RepoRef, botLogin: string | null): Promise<GitWire | null> {
    if (this.settings.commits !== "git") return null;
    const o = await this.octokit(id);
    const login = botLogin ?? "autoresearch-bot[bot]";
    return new GitWire({
      url: gitUrlFor(o.request.endpoint.DEFAULTS.baseUrl, repo.owner, repo.repo),
      token: async () => ((await o.auth({ type: "installation" })) as { token: string }).token,
      author: { name: login, email: `${login}@users.noreply.github.com` },
      // The parent's trees along the changed paths, one folder a request (GitHub takes a commit's
      // sha for its root tree); reads, not writes, and mostly none (the wire keeps them).
      readTree: async (sha) => treeFromApi((await o.rest.git.getTree({ owner: repo.owner, repo: repo.repo, tree_sha: sha })).data, sha),
      mayWrite: this.leads,
    });
  }

  /** Every repository of every installation the app can see. */
  async repos(): Promise<{ installationId: number; repo: RepoRef }[]> {
    const appOctokit = await this.app.auth();
    const installations = await appOctokit.paginate(appOctokit.rest.apps.listInstallations, { per_page: 100 });
    const out: { installationId: number; repo: RepoRef }[] = [];
    for (const inst of installations) {
      const o = await this.octokit(inst.id);
      const repos = await o.paginate(o.rest.apps.listReposAccessibleToInstallation, { per_page: 100 });
      for (const r of repos) out.push({ installationId: inst.id, repo: { owner: r.owner.login, repo: r.name } });
    }
    return out;
  }
}

/** The app's slug, which names its bot user (`<slug>[bot]`) and is what people mention: set, or asked of GitHub once. */
function slugReader(app: Probot, configured: string | null): () => Promise<string | null> {
  let slug = configured;
  return async () => {
    if (slug) return slug;
    try {
      const appOctokit = await app.auth();
      const { data } = await appOctokit.rest.apps.getAuthenticated();
      slug = data?.slug ?? null;
    } catch (err) {
      app.log.warn(`the app's slug could not be read: ${(err as Error).message}`);
    }
    return slug;
  };
}

export function createApp(opts: AppOptions) {
  return (app: Probot) => {
    const settings = opts.settings ?? settingsFrom(opts.env ?? process.env);
    const leader = opts.leader ?? new SoleLeader();
    const leads = () => leader.isLeader();
    const log: Logger = {
      info: (m: string) => app.log.info(m),
      warn: (m: string) => app.log.warn(m),
      error: (m: string) => app.log.error(m),
    };
    const installations = new Installations(app, settings, leads);
    const appSlug = slugReader(app, settings.appSlug);

    const controller = new Controller({
      steering: { appSlug, answer: openaiAnswerer(openaiEnv(settings), settings.openai.answerModel) },
      runner: new FencedRunner(opts.runner, leads),
      isLeader: leads,
      // A pass reads only whether an LLM key is set (the config's default proposer).
      env: openaiEnv(settings),
      log,
      resyncMs: opts.resyncMs ?? settings.resyncSeconds * 1000,
      onPass: opts.onPass,
      proposerFor: opts.proposerFor ?? defaultProposerFor(settings.openai),
      github: async (installationId, repo) => {
        const s = await appSlug();
        const botLogin = s ? `${s}[bot]` : null;
        return new OctokitGitHub(await installations.octokit(installationId), repo, {
          botLogin,
          budget: installations.budget(installationId),
          gate: installations.gate(installationId),
          wire: await installations.wire(installationId, repo, botLogin),
        });
      },
      listRepos: () => installations.repos(),
    });
    opts.onController?.(controller);

    // Thin: a webhook only says which repositories to look at (and, for a click, what was
    // clicked); the pass reads everything else from GitHub itself.
    app.on([...EVENTS], async (context) => {
      const work = webhookWork(context.name, context.payload, context.id);
      if (!work) return;
      if (work.click) controller.click(work.installationId, work.repos[0]!, work.click);
      for (const repo of work.repos) controller.trigger(work.installationId, repo, { steer: work.steer });
    });

    // A new leader looks at everything at once: passes are level-triggered, so whatever the
    // last one left half done is finished from what GitHub and the runner say.
    leader.onChange((leading) => {
      if (leading) void controller.resync();
    });
    leader.start();
    controller.start();
  };
}

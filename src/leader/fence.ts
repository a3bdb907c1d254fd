// The runner as a follower sees it: it may read (observe, list, validate) but every write
// (submit, cancel, cleanup) is refused unless this process leads. A pass that was running when
// its bot stepped down stops at its next write instead of racing the new leader.
import type { RepoRef, RunnerPort, RunObservation, RunSpec } from "../types.js";
import { NotLeaderError } from "./elector.js";

export class FencedRunner implements RunnerPort {
  constructor(
    private readonly runner: RunnerPort,
    private readonly isLeader: () => boolean,
  ) {}

  get name(): string {
    return this.runner.name;
  }
  get slots(): number {
    return this.runner.slots;
  }
  get queues(): boolean | undefined {
    return this.runner.queues;
  }
  get sandboxed(): boolean | undefined {
    return this.runner.sandboxed;
  }

  private check(what: string): void {
    if (!this.isLeader()) throw new NotLeaderError(what);
  }

  async submit(spec: RunSpec): Promise<void> {
    this.check(`submitting run ${spec.runId}`);
    return this.runner.submit(spec);
  }
  observe(runId: string): Promise<RunObservation> {
    return this.runner.observe(runId);
  }
  async cancel(runId: string): Promise<void> {
    this.check(`cancelling run ${runId}`);
    return this.runner.cancel(runId);
  }
  list(repo: RepoRef): Promise<string[]> {
    return this.runner.list(repo);
  }
  onFinished(listener: (runId: string, repo: RepoRef) => void): void {
    this.runner.onFinished(listener);
  }
  async cleanup(runId: string): Promise<void> {
    this.check(`cleaning run ${runId} up`);
    await this.runner.cleanup?.(runId);
  }
  async validate(repo: RepoRef): Promise<string[]> {
    return (await this.runner.validate?.(repo)) ?? [];
  }
  onReady(listener: (repo: RepoRef) => void): void {
    this.runner.onReady?.(listener);
  }
}

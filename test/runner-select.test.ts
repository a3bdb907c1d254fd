// The runner a bot process hosts, from its environment.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { KubernetesRunner, templateSource } from "../src/runner/kubernetes.js";
import { LocalRunner } from "../src/runner/local.js";
import { runnerFromEnv } from "../src/runner/select.js";
import { kubeConfigFor } from "../twins/kube.js";

describe("runnerFromEnv", () => {
  it("is the local runner by default and the Kubernetes runner with AUTORESEARCH_RUNNER=kubernetes", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "runner-select-"));
    try {
      const local = runnerFromEnv({ AUTORESEARCH_RUNS_DIR: dir });
      expect(local).toBeInstanceOf(LocalRunner);
      expect(local.slots).toBe(1);
      local.close();
      const quiet = { info() {}, warn() {}, error() {} };
      const kube = runnerFromEnv(
        { AUTORESEARCH_RUNNER: "kubernetes", AUTORESEARCH_NAMESPACE: "research", AUTORESEARCH_SLOTS: "3" },
        { kubeConfig: kubeConfigFor("http://127.0.0.1:9", "t"), logger: quiet },
      );
      expect(kube).toBeInstanceOf(KubernetesRunner);
      expect(kube.name).toBe("kubernetes");
      expect(kube.slots).toBe(3);
      kube.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("sandboxes the local runner unless AUTORESEARCH_SANDBOX=off, and refuses unknown sandbox settings", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "runner-select-"));
    try {
      const quiet = { info() {}, warn() {}, error() {} };
      const on = runnerFromEnv({ AUTORESEARCH_RUNS_DIR: dir });
      expect(on.sandboxed).toBe(true);
      on.close();
      const off = runnerFromEnv({ AUTORESEARCH_RUNS_DIR: dir, AUTORESEARCH_SANDBOX: "off" }, { logger: quiet });
      expect(off.sandboxed).toBe(false);
      off.close();
      expect(() => runnerFromEnv({ AUTORESEARCH_RUNS_DIR: dir, AUTORESEARCH_SANDBOX: "yes" })).toThrow(/AUTORESEARCH_SANDBOX is "yes": it must be bwrap/);
      expect(() => runnerFromEnv({ AUTORESEARCH_RUNS_DIR: dir, AUTORESEARCH_PREPARE_NETWORK: "maybe" })).toThrow(/AUTORESEARCH_PREPARE_NETWORK is "maybe": it must be on/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses an unknown runner or a bad slot count by name", () => {
    expect(() => runnerFromEnv({ AUTORESEARCH_RUNNER: "slurm" })).toThrow(/AUTORESEARCH_RUNNER is "slurm": it must be local \(the default\) or kubernetes/);
    expect(() => runnerFromEnv({ AUTORESEARCH_RUNNER: "kubernetes", AUTORESEARCH_SLOTS: "many" }, { kubeConfig: kubeConfigFor("http://127.0.0.1:9", "t") })).toThrow(
      /AUTORESEARCH_SLOTS is "many": it must be a whole number of runs/,
    );
  });

  it("reads the Job template from a file, or from a folder with per-repository overrides", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "job-templates-"));
    try {
      mkdirSync(path.join(dir, "templates"));
      writeFileSync(path.join(dir, "templates", "job.yaml"), "default\n");
      writeFileSync(path.join(dir, "templates", "alice.gpu.yaml"), "alice's\n");
      const folder = templateSource(path.join(dir, "templates"));
      expect(await folder({ owner: "alice", repo: "gpu" })).toBe("alice's\n");
      expect(await folder({ owner: "bob", repo: "gpu" })).toBe("default\n");
      expect(await templateSource(path.join(dir, "templates", "job.yaml"))({ owner: "x", repo: "y" })).toBe("default\n");
      await expect(templateSource(path.join(dir, "missing.yaml"))({ owner: "x", repo: "y" })).rejects.toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// `autoresearch-bot doctor`: every check driven to its failure through a test double, a local
// HTTP server or a missing binary on PATH, and the rule that makes its exit code.
import { generateKeyPairSync, verify, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { loadAll } from "js-yaml";
import {
  appJwt,
  checkAppCredentials,
  checkFolders,
  checkGit,
  checkGpus,
  checkHarness,
  checkKubernetes,
  checkLlm,
  checkNode,
  checkSandbox,
  checkSandboxTorch,
  checkSettings,
  checkTorch,
  checkWebhookSecret,
  classifyBlas,
  defaultDoctorDeps,
  exitCodeOf,
  fatalAtStart,
  findTorch,
  formatReport,
  runDoctor,
  RUNNER_ACCESS,
  satisfiesEngines,
  type CheckResult,
  type DoctorDeps,
  type Env,
} from "../src/doctor.js";
import { SANDBOX_FIX } from "../src/runner/local.js";
import { JOB_TEMPLATE, kubeConfigFor } from "../twins/kube.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const temps: string[] = [];
const servers: http.Server[] = [];

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "doctor-"));
  temps.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A folder for PATH holding the given executables (shell scripts). */
function binDir(scripts: Record<string, string> = {}): string {
  const dir = tempDir();
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(dir, name), 0o755);
  }
  return dir;
}

/** The real dependencies on an environment, with a few replaced. */
function deps(env: Env, overrides: Partial<DoctorDeps> = {}): DoctorDeps {
  return defaultDoctorDeps(env, { cwd: tempDir(), timeoutMs: 2000, ...overrides });
}

async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => resolve(body));
  });
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const byCheck = (results: CheckResult[], check: string) => results.find((r) => r.check === check);

describe("node and settings", () => {
  it("compares the running Node.js with package.json's engines", () => {
    expect(satisfiesEngines("20.18.0", ">=20.18")).toBe(true);
    expect(satisfiesEngines("22.1.0", ">=20.18")).toBe(true);
    expect(satisfiesEngines("20.17.9", ">=20.18")).toBe(false);
    expect(satisfiesEngines("18.20.0", "^20.18.1 || >= 22")).toBe(false);
    expect(satisfiesEngines("22.0.0", "^20.18.1 || >= 22")).toBe(true);
    expect(satisfiesEngines("20.0.0", "20.x")).toBeNull();
    const old = checkNode({ nodeVersion: "18.19.0", nodeEngines: ">=20.18" });
    expect(old).toMatchObject({ level: "fail", area: "environment" });
    expect(old.message).toContain("older than package.json's engines (>=20.18)");
    expect(old.fix).toMatch(/install Node\.js >=20\.18/);
    expect(checkNode({ nodeVersion: "20.18.0", nodeEngines: ">=20.18" }).level).toBe("ok");
  });

  it("reports the settings with the schema npm start parses them with: every bad variable in one line", () => {
    const r = checkSettings({ AUTORESEARCH_RESYNC_SECONDS: "abc", AUTORESEARCH_SLOTS: "two", AUTORESEARCH_SANDBOX: "maybe", OPENAI_API_KEY: "sk two words" });
    expect(r).toMatchObject({ check: "settings", level: "fail", area: "environment" });
    expect(r.message).toBe([
      'AUTORESEARCH_SLOTS is "two": it must be a whole number of runs from 1 to 1000 (for example AUTORESEARCH_SLOTS=4)',
      'AUTORESEARCH_RESYNC_SECONDS is "abc": it must be a whole number of seconds from 10 to 86400, a day (for example AUTORESEARCH_RESYNC_SECONDS=300)',
      'AUTORESEARCH_SANDBOX is "maybe": it must be bwrap (the default) or off (for example AUTORESEARCH_SANDBOX=bwrap)',
      "OPENAI_API_KEY is <secret, 12 characters>: it must be one word of printable characters without spaces (for example OPENAI_API_KEY=sk-…)",
    ].join("; "));
    expect(r.fix).toMatch(/correct or unset these variables \(an empty value means the default/);
    expect(checkSettings({ AUTORESEARCH_RUNNER: "slurm" }).message).toMatch(/^AUTORESEARCH_RUNNER is "slurm": it must be local \(the default\) or kubernetes/);
  });

  it("says what the settings are when they are usable, blank values being the defaults", () => {
    expect(checkSettings({ AUTORESEARCH_RUNNER: "kubernetes" })).toMatchObject({
      level: "ok",
      message: "runner kubernetes, 8 slots, resync every 300 s, GitHub writes ≤ 80/min and 500/h per installation",
    });
    expect(checkSettings({ AUTORESEARCH_RESYNC_SECONDS: "", AUTORESEARCH_SLOTS: " " }).message).toBe(
      "runner local, 1 slot, resync every 300 s, GitHub writes ≤ 80/min and 500/h per installation",
    );
    // GitHub Enterprise Server sets its own secondary limits.
    expect(checkSettings({ AUTORESEARCH_WRITES_PER_HOUR: "2000" }).message).toMatch(/≤ 80\/min and 2000\/h/);
  });
});

describe("local runner", () => {
  it("only warns without git (the bot pushes with no git program; a local checkout needs it), and fails without python3 on PATH", async () => {
    const d = deps({ PATH: binDir() });
    const git = await checkGit(d);
    expect(git).toMatchObject({ check: "git", level: "warn", area: "environment" });
    expect(git.message).toMatch(/git was not found on PATH: repositories given as a local checkout \(npm run demo\) cannot be read; GitHub repositories can/);
    expect(git.fix).toMatch(/apt-get install git/);
    const harness = await checkHarness(d);
    expect(harness).toMatchObject({ check: "harness", level: "fail", area: "environment" });
    expect(harness.message).toMatch(/python3 was not found on PATH/);
  });

  it("fails when python3 cannot run the harness, and when the harness is missing", async () => {
    const old = deps({ PATH: binDir({ python3: 'echo "SyntaxError: invalid syntax" >&2; exit 1' }) });
    const r = await checkHarness(old);
    expect(r.level).toBe("fail");
    expect(r.message).toMatch(/cannot run .*harness\.py: SyntaxError: invalid syntax/);
    const missing = await checkHarness(deps({ PATH: binDir({ python3: "exit 0" }) }, { harnessPath: "/nonexistent/harness.py" }));
    expect(missing).toMatchObject({ level: "fail", message: "/nonexistent/harness.py was not found" });
  });

  it("fails when no Python can import torch, naming each one tried", async () => {
    const none = await checkTorch(deps({ PATH: binDir() }, { which: () => null }));
    expect(none).toHaveLength(1);
    expect(none[0]).toMatchObject({ check: "pytorch", level: "fail", area: "environment" });
    expect(none[0]!.message).toMatch(/no Python here can import torch \(python3: not found; \/usr\/bin\/python3: not found\)/);
    expect(none[0]!.fix).toMatch(/apt-get install python3-torch libopenblas0-pthread/);

    const bin = binDir({ "py-no-torch": "echo '{\"error\": \"ModuleNotFoundError: No module named torch\"}'" });
    const configured = await checkTorch(deps({ PATH: bin, AUTORESEARCH_PYTHON: path.join(bin, "py-no-torch") }));
    expect(configured[0]!.level).toBe("fail");
    expect(configured[0]!.message).toMatch(/AUTORESEARCH_PYTHON=.*py-no-torch cannot import torch .*ModuleNotFoundError/);
  });

  it("finds torch in python3 on PATH and warns when it computes with a slow BLAS", async () => {
    const probe = { torch: "2.3.0", cuda: null, mkl: false, maps: true, libs: ["/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"] };
    const bin = binDir({ python3: `echo '${JSON.stringify(probe)}'` });
    const [torch, blas] = await checkTorch(deps({ PATH: bin }));
    expect(torch).toMatchObject({ check: "pytorch", level: "ok" });
    expect(torch!.message).toMatch(/torch 2\.3\.0 in python3 \(.*python3\), CPU only/);
    expect(blas).toMatchObject({ check: "blas", level: "warn" });
    expect(blas!.message).toMatch(/reference BLAS .*about 10x slower/);
    expect(blas!.fix).toMatch(/apt-get install libopenblas0-pthread/);
  });

  it("tells the BLAS builds apart by the libraries torch's process has loaded", () => {
    const libs = (...l: string[]) => ({ maps: true, libs: l });
    const d = "/usr/lib/x86_64-linux-gnu";
    expect(classifyBlas(libs(`${d}/openblas-pthread/libblas.so.3`, `${d}/openblas-pthread/libopenblasp-r0.3.21.so`)).level).toBe("ok");
    expect(classifyBlas(libs(`${d}/openblas-openmp/libopenblaso-r0.3.21.so`)).level).toBe("ok");
    expect(classifyBlas(libs("/venv/lib/python3.12/site-packages/torch.libs/libopenblasp-r0-2eadb500.3.29.so")).level).toBe("ok");
    expect(classifyBlas(libs("/opt/conda/lib/libmkl_rt.so.2")).message).toMatch(/MKL/);
    expect(classifyBlas({ maps: true, libs: [], mkl: true }).message).toMatch(/MKL \(linked into torch\)/);
    expect(classifyBlas(libs(`${d}/openblas-serial/libblas.so.3`, `${d}/openblas-serial/libopenblas-r0.3.21.so`))).toMatchObject({
      level: "warn",
      message: expect.stringMatching(/single-threaded/),
    });
    expect(classifyBlas(libs(`${d}/blas/libblas.so.3`, `${d}/lapack/liblapack.so.3`)).level).toBe("warn");
    expect(classifyBlas(libs()).level).toBe("ok");
  });

  it("fails without bubblewrap, or when it cannot build a sandbox, and warns with AUTORESEARCH_SANDBOX=off", () => {
    const missing = checkSandbox(deps({ PATH: binDir() }));
    expect(missing).toMatchObject({ check: "sandbox", level: "fail", message: "bwrap (bubblewrap) was not found on PATH", fix: SANDBOX_FIX });

    const bin = binDir({ bwrap: "exit 1" });
    const probed: string[] = [];
    const denied = checkSandbox(deps({ PATH: bin }, {
      probeSandbox: (bwrap) => (probed.push(bwrap), `${bwrap} cannot create a sandbox: setting up uid map: Permission denied`),
    }));
    expect(probed).toEqual([path.join(bin, "bwrap")]);
    expect(denied.level).toBe("fail");
    expect(denied.message).toMatch(/cannot create a sandbox: setting up uid map/);
    expect(denied.fix).toMatch(/unprivileged_userns_clone/);

    // The local runner's real probe, on a bwrap that cannot do anything.
    expect(checkSandbox(deps({ PATH: bin })).message).toMatch(/bwrap cannot create a sandbox/);

    expect(checkSandbox(deps({ PATH: bin }, { probeSandbox: () => null })).level).toBe("ok");
    const off = checkSandbox(deps({ PATH: binDir(), AUTORESEARCH_SANDBOX: "off" }));
    expect(off).toMatchObject({ level: "warn" });
    expect(off.message).toMatch(/AUTORESEARCH_SANDBOX=off: LLM-written code runs with this process's access/);
  });

  describe("torch and the GPU inside the sandbox", () => {
    /**
     * An interpreter whose `torch` is a small stand-in module in `site` (Debian's python3 with
     * PYTHONPATH set by a wrapper script in `home`/bin; the sandbox shows `home`, as it shows
     * an interpreter's own prefix). With `gpuFile`, its CUDA works only where that file can be
     * seen, as a driver's library would.
     */
    function fakeTorch(site: string, gpuFile?: string, home = tempDir()): string {
      mkdirSync(path.join(site, "torch"), { recursive: true });
      writeFileSync(path.join(site, "torch", "__init__.py"), [
        "import os",
        "__version__ = '9.9.0'",
        "class _T:",
        "    def __matmul__(self, other): return self",
        "    def sum(self): return 1.0",
        "    def __float__(self): return 1.0",
        "def ones(*shape, device=None):",
        "    if device == 'cuda': cuda.init()",
        "    return _T()",
        "class version: cuda = '12.4' if " + JSON.stringify(gpuFile ?? "") + " else None",
        "class backends:",
        "    class mkl:",
        "        @staticmethod",
        "        def is_available(): return False",
        "class cuda:",
        "    @staticmethod",
        "    def init():",
        "        if not (" + JSON.stringify(gpuFile ?? "") + " and os.path.exists(" + JSON.stringify(gpuFile ?? "") + ")):",
        "            raise RuntimeError('Found no NVIDIA driver on your system.\\nPlease check that you have an NVIDIA GPU')",
        "    @staticmethod",
        "    def is_available():",
        "        try: cuda.init(); return True",
        "        except RuntimeError: return False",
        "    @staticmethod",
        "    def get_device_name(i=0): cuda.init(); return 'Stand-in GPU'",
        "    @staticmethod",
        "    def device_count(): return 1",
      ].join("\n") + "\n");
      const python = path.join(home, "bin", "python3");
      mkdirSync(path.dirname(python));
      writeFileSync(python, `#!/bin/sh\nPYTHONPATH=${site} exec /usr/bin/python3 "$@"\n`);
      chmodSync(python, 0o755);
      return python;
    }

    /** The real harness, bwrap and probes, for the interpreter AUTORESEARCH_PYTHON names. */
    async function inSandbox(python: string, env: Env = {}): Promise<CheckResult[]> {
      const d = deps({ PATH: process.env.PATH, AUTORESEARCH_PYTHON: python, ...env });
      const torch = await findTorch(d);
      expect(torch.results[0], JSON.stringify(torch.results)).toMatchObject({ check: "pytorch", level: "ok" });
      const sandbox = checkSandbox(d);
      expect(sandbox.level).toBe("ok");
      return checkSandboxTorch(d, torch, sandbox);
    }

    it("imports the training interpreter's torch where the training runs, and names the folder the sandbox does not show", async () => {
      // Beside the wrapper: shown, as an interpreter's own prefix is.
      const shown = tempDir();
      const python = fakeTorch(path.join(shown, "site"), undefined, shown);
      expect(await inSandbox(python)).toEqual([
        { check: "torch in sandbox", level: "ok", area: "environment", message: "torch 9.9.0 imports inside the sandbox, CPU only" },
      ]);

      // Elsewhere: outside it imports, inside it cannot (or Debian's python3-torch answers in its
      // place), until AUTORESEARCH_SANDBOX_READONLY shows it.
      const elsewhere = tempDir();
      const hidden = fakeTorch(elsewhere);
      const [failed] = await inSandbox(hidden);
      expect(failed).toMatchObject({ check: "torch in sandbox", level: "fail", area: "environment" });
      expect(failed!.message).toMatch(
        new RegExp(`^${hidden} imports torch 9\\.9\\.0 outside the sandbox but (not inside it: ModuleNotFoundError: No module named 'torch'|torch 1\\.\\d+.* inside it)$`),
      );
      expect(failed!.fix).toMatch(/AUTORESEARCH_SANDBOX_READONLY/);
      expect(await inSandbox(hidden, { AUTORESEARCH_SANDBOX_READONLY: elsewhere })).toMatchObject([{ level: "ok" }]);
    });

    it("fails when CUDA works outside the sandbox but not inside it: every run would train on the CPU", async () => {
      const driver = tempDir();
      writeFileSync(path.join(driver, "libcuda.so.1"), "");
      const home = tempDir();
      const python = fakeTorch(path.join(home, "site"), path.join(driver, "libcuda.so.1"), home);
      const [failed] = await inSandbox(python);
      expect(failed).toMatchObject({ check: "torch in sandbox", level: "fail", area: "environment" });
      expect(failed!.message).toBe(
        "CUDA works outside the sandbox (Stand-in GPU) but not inside it: RuntimeError: Found no NVIDIA driver on your system.; every run would train on the CPU",
      );
      // The driver's folder shown read-only (or on LD_LIBRARY_PATH): the GPU is reached, and a kernel runs.
      expect(await inSandbox(python, { AUTORESEARCH_SANDBOX_READONLY: driver })).toEqual([
        { check: "torch in sandbox", level: "ok", area: "environment", message: "torch 9.9.0 imports inside the sandbox, CUDA: Stand-in GPU" },
      ]);
      expect(await inSandbox(python, { LD_LIBRARY_PATH: driver })).toMatchObject([{ level: "ok", message: expect.stringMatching(/CUDA: Stand-in GPU$/) }]);
    });

    it("is not run without a working sandbox or a torch to compare with, and fails on a probe that gives no answer", async () => {
      const found = { results: [], found: { exe: "/usr/bin/python3", probe: { torch: "2.3.0", cuda: null } } };
      const calls: string[][] = [];
      const home = tempDir();
      const d = deps({ PATH: binDir({ python3: "exit 0", bwrap: "exit 0" }), HOME: home, AUTORESEARCH_SANDBOX_READONLY: "/opt/a:/opt/b" }, {
        exec: async (_file, args) => (calls.push(args), { code: 1, stdout: "", stderr: "Traceback …\nSyntaxError: invalid syntax\n" }),
      });
      expect(await checkSandboxTorch(d, found, { check: "sandbox", level: "warn", area: "environment", message: "off", fix: "" })).toEqual([]);
      expect(await checkSandboxTorch(d, { results: [], found: null }, { check: "sandbox", level: "ok", area: "environment", message: "" })).toEqual([]);
      expect(calls).toEqual([]);
      const [failed] = await checkSandboxTorch(d, found, { check: "sandbox", level: "ok", area: "environment", message: "" });
      expect(failed).toMatchObject({ level: "fail", message: "the harness's sandbox probe gave no answer: SyntaxError: invalid syntax" });
      expect(calls[0]).toEqual([
        d.harnessPath, "--sandbox-probe", "--sandbox", "bwrap", "--bwrap", d.which("bwrap"), "--python", "/usr/bin/python3",
        "--sandbox-ro", "/opt/a", "--sandbox-ro", "/opt/b",
        // The folders a run never sees, as the local runner names them.
        "--private", d.cwd, "--private", path.join(d.cwd, ".runs"), "--private", path.join(home, ".cache", "autoresearch-bot"),
      ]);
    });
  });

  it("says how the GPUs are shared out among the slots, and warns when slots must share one", async () => {
    const smi = binDir({ "nvidia-smi": '[ "$1" = "--query-gpu=index" ] && printf "0\\n1\\n2\\n3\\n"' });
    expect(await checkGpus(deps({ PATH: smi, AUTORESEARCH_SLOTS: "2" }))).toEqual([
      { check: "gpus", level: "ok", area: "environment", message: "0,1,2,3: each of the 2 slots trains on its own (0,1 | 2,3)" },
    ]);
    // CUDA_VISIBLE_DEVICES narrows what the bot may use; nvidia-smi is not asked.
    expect((await checkGpus(deps({ PATH: smi, CUDA_VISIBLE_DEVICES: "3", AUTORESEARCH_SLOTS: "2" })))[0]).toMatchObject({
      level: "warn",
      message: "2 slots share 1 GPU (3): runs that train at the same time on one GPU slow each other down, and their val_bpb with them",
      fix: "set AUTORESEARCH_SLOTS to at most 1, or AUTORESEARCH_GPUS to more GPUs",
    });
    expect((await checkGpus(deps({ PATH: smi, AUTORESEARCH_GPUS: "none" })))[0]!.message).toMatch(/^none .*: runs train on the CPU$/);
    expect((await checkGpus(deps({ PATH: binDir() })))[0]!.message).toMatch(/^none /);
    expect((await checkGpus(deps({ PATH: smi, AUTORESEARCH_GPUS: "1,3" })))[0]!.message).toBe(
      "1,3: one slot, whose runs see all of them (the template trains on one; AUTORESEARCH_SLOTS=2 trains 2 experiments at once, one GPU each)",
    );
    expect((await checkGpus(deps({ PATH: smi, CUDA_VISIBLE_DEVICES: "GPU-0a1b2c3d-4e5f" })))[0]!.message).toBe("GPU-0a1b2c3d-4e5f: one slot, whose runs train on it");
    expect(await checkGpus(deps({ PATH: smi, AUTORESEARCH_GPUS: "x" }))).toEqual([]); // the settings line reports it
  });

  it("checks that the run and data folders can be written", () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "a-file"), "");
    const [runs, cache] = checkFolders(deps({ AUTORESEARCH_RUNS_DIR: path.join(dir, "runs"), AUTORESEARCH_CACHE_DIR: path.join(dir, "a-file", "cache") }));
    expect(runs).toMatchObject({ check: "runs folder", level: "ok" });
    expect(runs!.message).toMatch(/is writable, .* free/);
    expect(cache).toMatchObject({ check: "data cache", level: "fail" });
    expect(cache!.message).toMatch(/a-file is not a folder/);
    expect(cache!.fix).toMatch(/AUTORESEARCH_CACHE_DIR/);
  });
});

describe("Kubernetes runner", () => {
  const FAKE_NS = "autoresearch";

  /** The API server's answers the runner's checks need: access reviews and dry-run Job creates. */
  async function fakeApiServer(o: { deny?: string[]; refuse?: string; namespaces?: string[] } = {}) {
    const requests: { method: string; url: string; body: Record<string, unknown> }[] = [];
    const url = await serve(async (req, res) => {
      const body = JSON.parse((await readBody(req)) || "{}") as Record<string, unknown>;
      requests.push({ method: req.method!, url: req.url!, body });
      if (req.url === "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") {
        const a = (body.spec as { resourceAttributes: { verb: string; resource: string; subresource?: string } }).resourceAttributes;
        const name = `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ""}`;
        const allowed = !(o.deny ?? []).includes(name);
        return json(res, 201, { ...body, status: { allowed, ...(allowed ? {} : { reason: "no RBAC policy matched" }) } });
      }
      const m = /^\/apis\/batch\/v1\/namespaces\/([^/]+)\/jobs\?(.*)$/.exec(req.url!);
      if (m && req.method === "POST") {
        if (!(o.namespaces ?? [FAKE_NS]).includes(m[1]!)) {
          return json(res, 404, { kind: "Status", apiVersion: "v1", status: "Failure", message: `namespaces "${m[1]}" not found`, reason: "NotFound", code: 404 });
        }
        if (o.refuse) return json(res, 422, { kind: "Status", apiVersion: "v1", status: "Failure", message: o.refuse, reason: "Invalid", code: 422 });
        return json(res, 201, body);
      }
      json(res, 404, { kind: "Status", code: 404, message: "not found" });
    });
    return { url, requests };
  }

  function kubeDeps(url: string, env: Env = {}): DoctorDeps {
    const dir = tempDir();
    writeFileSync(path.join(dir, "job.yaml"), JOB_TEMPLATE);
    return deps({ AUTORESEARCH_RUNNER: "kubernetes", AUTORESEARCH_JOB_TEMPLATE: path.join(dir, "job.yaml"), ...env }, {
      kubeConfig: () => kubeConfigFor(url, "token"),
    });
  }

  // Inside a pod the default chain finds the service account: there is no "none" to find.
  it.skipIf(existsSync("/var/run/secrets/kubernetes.io/serviceaccount/token"))("says so when there is no kubeconfig instead of trying a made-up localhost cluster", async () => {
    const saved = { HOME: process.env.HOME, KUBECONFIG: process.env.KUBECONFIG };
    process.env.HOME = tempDir();
    delete process.env.KUBECONFIG;
    try {
      // The default factory: KubeConfig.loadFromDefault with nothing to find.
      const results = await checkKubernetes(deps({ AUTORESEARCH_RUNNER: "kubernetes" }));
      expect(results).toEqual([
        expect.objectContaining({ check: "kubeconfig", level: "fail", message: "no kubeconfig found: set KUBECONFIG or run in a cluster" }),
      ]);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it("fails on a kubeconfig that cannot be read", async () => {
    const results = await checkKubernetes(deps({}, {
      kubeConfig: () => {
        throw new Error("ENOENT: no such file or directory, open '/nope/config'");
      },
    }));
    expect(results[0]).toMatchObject({ check: "kubeconfig", level: "fail" });
    expect(results[0]!.message).toMatch(/could not be loaded: ENOENT/);
  });

  it("passes with the RBAC the runner needs and Jobs the API server accepts, creating nothing", async () => {
    const api = await fakeApiServer();
    const results = await checkKubernetes(kubeDeps(api.url));
    expect(results.map((r) => [r.check, r.level])).toEqual([
      ["kubeconfig", "ok"], ["namespace", "ok"], ["job template", "ok"], ["rbac", "ok"], ["job dry run", "ok"],
    ]);
    expect(byCheck(results, "namespace")!.message).toBe("autoresearch (from the default chain)");
    const reviews = api.requests.filter((r) => r.url.includes("selfsubjectaccessreviews"));
    expect(reviews.map((r) => (r.body.spec as { resourceAttributes: unknown }).resourceAttributes)).toEqual(
      RUNNER_ACCESS.map((a) => ({ namespace: FAKE_NS, group: a.group, resource: a.resource, verb: a.verb, ...(a.subresource ? { subresource: a.subresource } : {}) })),
    );
    const creates = api.requests.filter((r) => r.url.includes("/jobs"));
    expect(creates).toHaveLength(4);
    for (const c of creates) expect(c.url).toMatch(/[?&]dryRun=All(&|$)/);
    expect(creates.map((c) => (c.body.metadata as { name: string }).name)).toEqual([
      expect.stringMatching(/-fetch$/),
      expect.stringMatching(/-[0-9a-f]{8}$/),
      expect.stringMatching(/-eval$/),
      expect.stringMatching(/-probe$/),
    ]);
  });

  it("names each permission the runner lacks", async () => {
    const api = await fakeApiServer({ deny: ["delete secrets", "get pods/log", "watch jobs"] });
    const results = await checkKubernetes(kubeDeps(api.url));
    const rbac = byCheck(results, "rbac")!;
    expect(rbac.level).toBe("fail");
    expect(rbac.message).toBe(
      "in namespace autoresearch the runner may not: watch jobs (no RBAC policy matched), get pods/log (no RBAC policy matched), delete secrets (no RBAC policy matched)",
    );
    expect(rbac.fix).toMatch(/kubectl apply -n autoresearch -f k8s\/role\.yaml/);
    expect(exitCodeOf(results)).toBe(1);
    expect(fatalAtStart(results)).toContain(rbac);
  });

  it("skips the dry run when the runner may not create Jobs", async () => {
    const api = await fakeApiServer({ deny: ["create jobs"] });
    const results = await checkKubernetes(kubeDeps(api.url));
    expect(byCheck(results, "rbac")!.message).toMatch(/may not: create jobs/);
    expect(byCheck(results, "job dry run")).toBeUndefined();
    expect(api.requests.some((r) => r.url.includes("/jobs"))).toBe(false);
  });

  it("fails on a template the runner refuses, and on Jobs the API server refuses", async () => {
    const api = await fakeApiServer();
    const dir = tempDir();
    writeFileSync(path.join(dir, "job.yaml"), JOB_TEMPLATE.replace("restartPolicy: Never", "restartPolicy: Never\n      hostNetwork: true"));
    const bad = await checkKubernetes(deps({ AUTORESEARCH_JOB_TEMPLATE: path.join(dir, "job.yaml") }, { kubeConfig: () => kubeConfigFor(api.url, "t") }));
    const template = byCheck(bad, "job template")!;
    expect(template.level).toBe("fail");
    expect(template.message).toMatch(/hostNetwork is not allowed/);
    expect(byCheck(bad, "job dry run")).toBeUndefined();

    // A folder: job.yaml and every <owner>.<repo>.yaml override are checked.
    const folder = tempDir();
    writeFileSync(path.join(folder, "job.yaml"), JOB_TEMPLATE);
    writeFileSync(path.join(folder, "alice.research.yaml"), JOB_TEMPLATE.replace("restartPolicy: Never", "restartPolicy: OnFailure"));
    const overrides = byCheck(await checkKubernetes(deps({ AUTORESEARCH_JOB_TEMPLATE: folder }, { kubeConfig: () => kubeConfigFor(api.url, "t") })), "job template")!;
    expect(overrides.level).toBe("fail");
    expect(overrides.message).toMatch(/alice\.research\.yaml: .*restartPolicy must be Never/);
    expect(overrides.message).not.toMatch(/job\.yaml/);

    const missing = await checkKubernetes(deps({ AUTORESEARCH_JOB_TEMPLATE: path.join(dir, "absent.yaml") }, { kubeConfig: () => kubeConfigFor(api.url, "t") }));
    expect(byCheck(missing, "job template")!.message).toMatch(/could not be read: ENOENT/);

    const refusing = await fakeApiServer({ refuse: 'Job.batch "x" is invalid: spec.template.spec.containers[0].resources.limits: Invalid value' });
    const refused = byCheck(await checkKubernetes(kubeDeps(refusing.url)), "job dry run")!;
    expect(refused.level).toBe("fail");
    expect(refused.message).toMatch(/the API server refuses the rendered Jobs: .*HTTP 422: Job\.batch "x" is invalid/);
  });

  it("fails when the namespace does not exist or the cluster cannot be reached", async () => {
    const api = await fakeApiServer({ namespaces: ["elsewhere"] });
    const ns = byCheck(await checkKubernetes(kubeDeps(api.url)), "job dry run")!;
    expect(ns.level).toBe("fail");
    expect(ns.message).toMatch(/namespace autoresearch does not exist/);
    expect(ns.fix).toMatch(/kubectl create namespace autoresearch/);

    const down = await checkKubernetes(kubeDeps(`http://127.0.0.1:${await closedPort()}`));
    const rbac = byCheck(down, "rbac")!;
    expect(rbac.level).toBe("fail");
    expect(rbac.message).toMatch(/could not ask the API server at http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it("checks exactly the access k8s/role.yaml grants", () => {
    const [role] = (loadAll(readFileSync(path.join(ROOT, "k8s/role.yaml"), "utf8")) as unknown[]).map((d) => d as {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    });
    const granted = role!.rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g} ${res} ${v}`))));
    const needed = RUNNER_ACCESS.map((a) => `${a.group} ${a.subresource ? `${a.resource}/${a.subresource}` : a.resource} ${a.verb}`);
    expect(needed.sort()).toEqual(granted.sort());
  });
});

describe("app credentials", () => {
  const rsa = () => generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = (k: KeyObject) => k.export({ type: "pkcs1", format: "pem" }).toString();

  /** GET /app as GitHub answers it: 200 for a JWT signed by app 123's key, else 401. */
  async function fakeGitHub(appPublicKey: KeyObject, app = { id: 123, slug: "autoresearch-bot", installations_count: 1 }): Promise<string> {
    return serve((req, res) => {
      const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      const [h, p, s] = token.split(".");
      const good =
        req.url === "/app" && !!h && !!p && !!s &&
        verify("RSA-SHA256", Buffer.from(`${h}.${p}`), appPublicKey, Buffer.from(s, "base64url")) &&
        (JSON.parse(Buffer.from(p, "base64url").toString()) as { iss: string }).iss === String(app.id);
      if (good) return json(res, 200, { ...app, owner: { login: "alice" } });
      json(res, 401, { message: "A JSON web token could not be decoded", status: "401" });
    });
  }

  it("fails without credentials with one line that says how to register the app", async () => {
    const results = await checkAppCredentials(deps({}));
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ check: "app", level: "fail", area: "credentials" });
    expect(results[0]!.fix).toMatch(/npm start (\(it builds first\) )?with no credentials serves the registration page/);
    expect(fatalAtStart(results)).toEqual([]);
  });

  it("fails on a non-numeric APP_ID and on a private key that does not parse", async () => {
    const results = await checkAppCredentials(deps({
      APP_ID: "Iv1.0123456789abcdef",
      PRIVATE_KEY: "-----BEGIN RSA PRIVATE KEY-----\\nbm90IGEga2V5\\n-----END RSA PRIVATE KEY-----",
    }));
    expect(byCheck(results, "app id")).toMatchObject({ level: "fail", message: 'APP_ID must be the app\'s numeric ID, not "Iv1.0123456789abcdef"' });
    const key = byCheck(results, "private key")!;
    expect(key.level).toBe("fail");
    expect(key.message).toMatch(/^the private key does not parse/);

    const path404 = await checkAppCredentials(deps({ APP_ID: "1", PRIVATE_KEY_PATH: "/nope/key.pem" }));
    expect(byCheck(path404, "private key")!.message).toMatch(/Private key does not exists at path: "\/nope\/key\.pem"/);

    const garbage = await checkAppCredentials(deps({ APP_ID: "1", PRIVATE_KEY: "hunter2" }));
    expect(byCheck(garbage, "private key")!.message).toMatch(/could not be validated/);

    const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const notRsa = await checkAppCredentials(deps({ APP_ID: "1", PRIVATE_KEY: ec }));
    expect(byCheck(notRsa, "private key")!.message).toMatch(/is ec, not RSA/);
  });

  it("fails when GitHub answers 401: the key is not the app's", async () => {
    const app = rsa();
    const other = rsa();
    const url = await fakeGitHub(app.publicKey);
    const wrongKey = await checkAppCredentials(deps({ APP_ID: "123", PRIVATE_KEY: pem(other.privateKey), GITHUB_API_URL: url }));
    expect(byCheck(wrongKey, "private key")!.level).toBe("ok");
    const github = byCheck(wrongKey, "github app")!;
    expect(github).toMatchObject({ level: "fail", area: "credentials" });
    expect(github.message).toMatch(/GitHub refused the app's JWT \(401: A JSON web token could not be decoded\): the private key does not belong to app 123/);
    expect(github.fix).toMatch(/generate a new private key/);

    const wrongId = await checkAppCredentials(deps({ APP_ID: "124", PRIVATE_KEY: pem(app.privateKey), GITHUB_API_URL: url }));
    expect(byCheck(wrongId, "github app")!.level).toBe("fail");
  });

  it("passes when GitHub accepts the key (Probot's escaped-newline PRIVATE_KEY too), and warns about a wrong slug", async () => {
    const app = rsa();
    const url = await fakeGitHub(app.publicKey);
    const escaped = pem(app.privateKey).replace(/\n/g, "\\n");
    const results = await checkAppCredentials(deps({ APP_ID: "123", PRIVATE_KEY: escaped, GITHUB_API_URL: url, AUTORESEARCH_APP_SLUG: "other-bot" }));
    expect(byCheck(results, "github app")).toMatchObject({ level: "ok", message: "GitHub accepts the key for app autoresearch-bot (owned by alice)" });
    const slug = byCheck(results, "app slug")!;
    expect(slug.level).toBe("warn");
    expect(slug.fix).toBe("set AUTORESEARCH_APP_SLUG=autoresearch-bot, or unset it (the bot then reads the slug from GitHub)");

    const dir = tempDir();
    writeFileSync(path.join(dir, "app.pem"), pem(app.privateKey));
    const fromFile = await checkAppCredentials(deps({ APP_ID: "123", PRIVATE_KEY_PATH: path.join(dir, "app.pem"), GITHUB_API_URL: url }));
    expect(fromFile.every((r) => r.level === "ok")).toBe(true);
  });

  it("signs a JWT GitHub can check", () => {
    const { privateKey, publicKey } = rsa();
    const [h, p, s] = appJwt("42", privateKey, 1_700_000_000_000).split(".");
    expect(JSON.parse(Buffer.from(h!, "base64url").toString())).toEqual({ alg: "RS256", typ: "JWT" });
    expect(JSON.parse(Buffer.from(p!, "base64url").toString())).toEqual({ iat: 1_699_999_940, exp: 1_700_000_540, iss: "42" });
    expect(verify("RSA-SHA256", Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s!, "base64url"))).toBe(true);
  });

  it("only warns when GitHub cannot be reached", async () => {
    const { privateKey } = rsa();
    const results = await checkAppCredentials(deps({ APP_ID: "123", PRIVATE_KEY: pem(privateKey), GITHUB_API_URL: `http://127.0.0.1:${await closedPort()}` }));
    const github = byCheck(results, "github app")!;
    expect(github.level).toBe("warn");
    expect(github.message).toMatch(/^could not verify the key with http:\/\/127\.0\.0\.1:\d+\/app: fetch failed \(.*ECONNREFUSED/);
    expect(exitCodeOf(results)).toBe(0);
  });

  it("fails without WEBHOOK_SECRET", () => {
    expect(checkWebhookSecret({})).toMatchObject({ level: "fail", area: "credentials" });
    expect(checkWebhookSecret({}).message).toMatch(/default secret "development"/);
    expect(checkWebhookSecret({ WEBHOOK_SECRET: "s" }).level).toBe("ok");
  });
});

describe("LLM endpoint", () => {
  it("is not checked without OPENAI_API_KEY", async () => {
    expect(await checkLlm(deps({}))).toMatchObject({ level: "ok", message: expect.stringMatching(/mutate proposer/) });
  });

  it("lists the endpoint's models, and fails on a refused key", async () => {
    const url = await serve((req, res) => {
      if (req.url !== "/v1/models") return json(res, 404, { error: { message: "no" } });
      if (req.headers.authorization !== "Bearer good") return json(res, 401, { error: { message: "Incorrect API key provided" } });
      json(res, 200, { object: "list", data: ["llama-3", "qwen"].map((id) => ({ id, object: "model", created: 0, owned_by: "me" })) });
    });
    expect(await checkLlm(deps({ OPENAI_API_KEY: "good", OPENAI_BASE_URL: `${url}/v1` }))).toMatchObject({
      level: "ok",
      message: `${url}/v1 answers, 2 models: llama-3, qwen`,
    });
    const refused = await checkLlm(deps({ OPENAI_API_KEY: "bad", OPENAI_BASE_URL: `${url}/v1` }));
    expect(refused).toMatchObject({ level: "fail", area: "llm", message: `${url}/v1 refuses OPENAI_API_KEY (401)` });
    const answer = await checkLlm(deps({ OPENAI_API_KEY: "good", OPENAI_BASE_URL: `${url}/v1`, AUTORESEARCH_ANSWER_MODEL: "gpt-4o-mini" }));
    expect(answer.level).toBe("warn");
  });

  it("fails when the endpoint is down or does not answer in time", async () => {
    const down = await checkLlm(deps({ OPENAI_API_KEY: "k", OPENAI_BASE_URL: `http://127.0.0.1:${await closedPort()}/v1` }));
    expect(down).toMatchObject({ level: "fail", area: "llm" });
    expect(down.message).toMatch(/\/models: Connection error/);
    expect(down.fix).toMatch(/OPENAI_BASE_URL/);

    const silent = await serve(() => undefined); // accepts, never answers
    // The check ends on its own timeout (the message names it), not on the server, which never answers.
    const slow = await checkLlm(deps({ OPENAI_API_KEY: "k", OPENAI_BASE_URL: `${silent}/v1` }, { timeoutMs: 300 }));
    expect(slow).toMatchObject({ level: "fail", message: `${silent}/v1/models: no answer within 0.3 s` });
    expect(fatalAtStart([slow])).toEqual([]);
  });
});

describe("the verdict", () => {
  const r = (check: string, level: CheckResult["level"], area: CheckResult["area"] = "environment"): CheckResult => ({
    check, level, area, message: `${check} ${level}`, ...(level === "ok" ? {} : { fix: `fix ${check}` }),
  });

  it("exits 0 with warnings and 1 with any failure; only environment failures are fatal at start", () => {
    expect(exitCodeOf([r("a", "ok"), r("b", "warn")])).toBe(0);
    expect(exitCodeOf([r("a", "ok"), r("b", "fail", "llm")])).toBe(1);
    const results = [r("sandbox", "fail"), r("github app", "fail", "credentials"), r("llm", "fail", "llm"), r("git", "warn")];
    expect(fatalAtStart(results).map((x) => x.check)).toEqual(["sandbox"]);
  });

  it("prints one line per check and the fix under each problem", () => {
    const text = formatReport([r("node", "ok"), r("git", "warn"), r("sandbox", "fail")]);
    expect(text.split("\n")).toEqual([
      "ok    node     node ok",
      "warn  git      git warn",
      "               fix: fix git",
      "FAIL  sandbox  sandbox fail",
      "               fix: fix sandbox",
      "",
      "1 FAIL, 1 warning: this setup cannot run an experiment yet.",
    ]);
    expect(formatReport([r("node", "ok")])).toMatch(/all checks passed; this setup can run experiments\.$/);
  });

  it("runs every check of the local runner, and exits 1 when the programs are missing from PATH", async () => {
    const results = await runDoctor(deps({ PATH: binDir(), HOME: tempDir() }, { which: (c) => (c.startsWith("/") ? null : deps({ PATH: binDir() }).which(c)) }));
    expect(results.map((x) => x.check)).toEqual([
      "node", "settings", "git", "harness", "pytorch", "sandbox", "gpus", "runs folder", "data cache", "app", "webhook secret", "llm",
    ]);
    expect(fatalAtStart(results).map((x) => x.check)).toEqual(["harness", "pytorch", "sandbox"]);
    expect(exitCodeOf(results)).toBe(1);
  });

  it("exits 0 when everything the configured path needs is there", async () => {
    const app = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const github = await serve((_req, res) => json(res, 200, { id: 1, slug: "autoresearch-bot", installations_count: 1 }));
    const probe = { torch: "2.3.0", cuda: "NVIDIA H200", mkl: true, maps: true, libs: [] };
    const inside = { torch: "2.3.0", cuda: "NVIDIA H200", sandbox: "bwrap" };
    const bin = binDir({
      python3: `[ "$1" = "-c" ] && echo '${JSON.stringify(probe)}'; [ "$2" = "--sandbox-probe" ] && echo '${JSON.stringify(inside)}'; exit 0`,
      git: "echo git version 2.43.0",
      bwrap: "exit 0",
    });
    const home = tempDir();
    mkdirSync(path.join(home, ".cache"));
    const results = await runDoctor(deps({
      PATH: bin, HOME: home, APP_ID: "1", PRIVATE_KEY: app.privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
      WEBHOOK_SECRET: "s", GITHUB_API_URL: github,
    }, { probeSandbox: () => null }));
    expect(results.filter((x) => x.level === "fail")).toEqual([]);
    // Only a machine short of disk space would warn here.
    expect(results.filter((x) => x.level === "warn").every((x) => x.check === "runs folder" || x.check === "data cache")).toBe(true);
    expect(byCheck(results, "pytorch")!.message).toMatch(/CUDA: NVIDIA H200/);
    expect(byCheck(results, "torch in sandbox")!.message).toBe("torch 2.3.0 imports inside the sandbox, CUDA: NVIDIA H200");
    expect(exitCodeOf(results)).toBe(0);
  });
});

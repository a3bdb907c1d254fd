// What the demo's night runs on, read and checked before anything starts: the research
// project's files (the template, or --repo DIR), the `.github/autoresearch.yml` its repository
// gets, the --proposals list and the Python that trains. DIR is only read, never written: git is
// asked for the last commit's files without taking its index lock.
import { execFileSync } from "node:child_process";
import { lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CONFIG_PATH, type Config } from "../src/config.js";
import { checkProposalPaths, DemoError, demoConfig, parseProposals, type DemoArgs, type ProposalEntry } from "./demo-args.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Bounds on a project folder: the demo copies it into its GitHub twin, one git object per file. */
export const MAX_PROJECT_FILES = 2000;
export const MAX_PROJECT_BYTES = 100 * 1024 * 1024;
/** A proposals file is text a person wrote; anything this large is a mistake. */
const MAX_PROPOSALS_BYTES = 10 * 1024 * 1024;
/** Folders a project folder never needs in its repository (never tracked in a git repository either). */
const SKIPPED_DIRS = new Set([".git", "node_modules", "__pycache__"]);

export interface ProjectFiles {
  /** Files as text (repository path → content). */
  text: Record<string, string>;
  /** Files that are not UTF-8 text, committed as they are. */
  binary: Record<string, Buffer>;
  /** How the files were found, for the progress line ("git HEAD 1a2b3c4", "the folder"). */
  source: string;
  /** What the reader should know (skipped links, uncommitted changes). */
  notes: string[];
}

export interface DemoPlan {
  args: DemoArgs;
  /** The repository's files, the demo's `.github/autoresearch.yml` included. */
  files: Record<string, string>;
  binary: Record<string, Buffer>;
  configText: string;
  /** The config the bot will read (parsed with the bot's parser). */
  config: Config;
  /** The proposals to replay, in order (--proposals), or null. */
  proposals: ProposalEntry[] | null;
  /** What the night runs on, for the first progress line. */
  source: string;
  notes: string[];
  /** The Python with PyTorch the training commands get; null: none here (a project then trains with python3). */
  torch: { python: string; version: string } | null;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 text without NUL bytes, or null for anything else. */
function asText(content: Buffer): string | null {
  if (content.includes(0)) return null;
  try {
    return decoder.decode(content);
  } catch {
    return null;
  }
}

function tooMany(dir: string, what: string): DemoError {
  return new DemoError(
    `--repo ${dir}: ${what}; the demo copies at most ${MAX_PROJECT_FILES} files and ${MAX_PROJECT_BYTES / 1024 / 1024} MiB ` +
      "into its repository. Make DIR a git repository (only its committed files are used) or leave out data and outputs.",
    2,
  );
}

function git(dir: string, args: string[], input?: string, maxBuffer = 16 * 1024 * 1024): Buffer {
  return execFileSync("git", ["-C", dir, ...args], {
    input,
    maxBuffer,
    stdio: ["pipe", "pipe", "pipe"],
    // Reading must not write: no index refresh (status takes no lock), and no fsmonitor hook.
    env: { ...process.env, GIT_OPTIONAL_LOCKS: "0" },
  });
}

function gitError(err: unknown): string {
  const e = err as { stderr?: Buffer; message: string };
  return (e.stderr?.toString("utf8").trim() || e.message).split("\n")[0] ?? "";
}

/** The files of DIR's last commit (below DIR, when DIR is a folder inside a repository), or null when DIR is not in one. */
function readGitProject(dir: string): ProjectFiles | null {
  let prefix: string;
  try {
    prefix = git(dir, ["rev-parse", "--show-prefix"]).toString("utf8").trim().replace(/\/$/, "");
  } catch {
    return null;
  }
  try {
    git(dir, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]);
  } catch {
    throw new DemoError(`--repo ${dir}: a git repository without commits; commit its files first (the demo uses the last commit)`, 2);
  }
  const tree = prefix ? `HEAD:${prefix}` : "HEAD^{tree}";
  let kind = "";
  try {
    kind = git(dir, ["cat-file", "-t", tree]).toString("utf8").trim();
  } catch {
    // below
  }
  // A folder inside a repository that is not in its last commit: not its files to take from git.
  if (kind !== "tree") return null;
  const head = git(dir, ["rev-parse", "--short", "HEAD"]).toString("utf8").trim();
  const notes: string[] = [];
  const entries: { sha: string; size: number; path: string }[] = [];
  const skipped: string[] = [];
  let bytes = 0;
  // --full-tree: from a subfolder, ls-tree would otherwise filter the listing by that folder again.
  const listing = git(dir, ["ls-tree", "--full-tree", "-r", "-l", "-z", tree], undefined, 256 * 1024 * 1024).toString("utf8");
  for (const line of listing.split("\0")) {
    if (!line) continue;
    const m = /^(\d+) (\w+) ([0-9a-f]+)\s+(-|\d+)\t([\s\S]+)$/.exec(line);
    if (!m) continue;
    const [, mode, type, sha, size, file] = m as unknown as [string, string, string, string, string, string];
    // Links and submodules have no content of their own to copy.
    if (type !== "blob" || mode === "120000") {
      skipped.push(file);
      continue;
    }
    entries.push({ sha, size: Number(size), path: file });
    bytes += Number(size);
  }
  if (entries.length > MAX_PROJECT_FILES) throw tooMany(dir, `its last commit has ${entries.length} files`);
  if (bytes > MAX_PROJECT_BYTES) throw tooMany(dir, `its last commit holds ${(bytes / 1024 / 1024).toFixed(1)} MiB`);
  if (skipped.length) notes.push(`not copied (links or submodules): ${skipped.slice(0, 5).join(", ")}${skipped.length > 5 ? ", …" : ""}`);

  // One `cat-file --batch` for every blob: "<sha> blob <size>\n<content>\n" each.
  const out = entries.length
    ? git(dir, ["cat-file", "--batch"], entries.map((e) => e.sha).join("\n") + "\n", bytes + entries.length * 128 + 1024)
    : Buffer.alloc(0);
  const files: ProjectFiles = { text: {}, binary: {}, source: `git HEAD ${head}`, notes };
  let at = 0;
  for (const e of entries) {
    const nl = out.indexOf(10, at);
    const size = Number(out.subarray(at, nl).toString("utf8").split(" ")[2]);
    const content = out.subarray(nl + 1, nl + 1 + size);
    at = nl + 1 + size + 1;
    const text = asText(content);
    if (text === null) files.binary[e.path] = Buffer.from(content);
    else files.text[e.path] = text;
  }
  try {
    const dirty = git(dir, ["-c", "core.fsmonitor=false", "status", "--porcelain", "--", "."]).toString("utf8").trim();
    if (dirty) notes.push(`${dir} has uncommitted changes; the demo uses its last commit (${head})`);
  } catch (err) {
    notes.push(`git status failed in ${dir}: ${gitError(err)}`);
  }
  return files;
}

/** Every regular file under DIR but the skipped folders, bounded in count and size. */
function readFolderProject(dir: string): ProjectFiles {
  const files: ProjectFiles = { text: {}, binary: {}, source: "the folder", notes: [] };
  const links: string[] = [];
  let count = 0;
  let bytes = 0;
  const walk = (abs: string, rel: string) => {
    for (const e of readdirSync(abs, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(abs, e.name);
      const relPath = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!SKIPPED_DIRS.has(e.name)) walk(full, relPath);
        continue;
      }
      if (e.isSymbolicLink()) {
        links.push(relPath);
        continue;
      }
      if (!e.isFile()) continue;
      // Stop early: a folder with a dataset or a virtual environment in it can be huge.
      if (++count > MAX_PROJECT_FILES) throw tooMany(dir, `it holds more than ${MAX_PROJECT_FILES} files`);
      bytes += lstatSync(full).size;
      if (bytes > MAX_PROJECT_BYTES) throw tooMany(dir, `it holds more than ${MAX_PROJECT_BYTES / 1024 / 1024} MiB`);
      const content = readFileSync(full);
      const text = asText(content);
      if (text === null) files.binary[relPath] = content;
      else files.text[relPath] = text;
    }
  };
  walk(dir, "");
  if (links.length) files.notes.push(`not copied (symbolic links): ${links.slice(0, 5).join(", ")}${links.length > 5 ? ", …" : ""}`);
  return files;
}

/** The files of a research project folder: its last commit if it is a git repository, else the folder's files. */
export function readProject(dir: string): ProjectFiles {
  return readGitProject(dir) ?? readFolderProject(dir);
}

function joinWorkdir(workdir: string, file: string): string {
  const w = workdir.replace(/^\.\/?/, "").replace(/\/$/, "");
  return w ? `${w}/${file}` : file;
}

/** The Python training gets: AUTORESEARCH_PYTHON, else the first of python3 and /usr/bin/python3 that imports torch. */
export function findTorchPython(env: Record<string, string | undefined>): { python: string; version: string } | null {
  const candidates = [env.AUTORESEARCH_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c);
  for (const python of candidates) {
    try {
      const version = execFileSync(python, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
      return { python, version: version.trim() };
    } catch {
      // not this one
    }
  }
  return null;
}

const NO_TORCH =
  "The demo trains the template with PyTorch, and no Python here can import torch.\n" +
  "Install it, for example on Debian or Ubuntu:\n\n" +
  "    sudo apt-get install python3-torch libopenblas0-pthread\n\n" +
  "or `pip install torch` for your python3. If the Python that has torch is not the first\n" +
  "python3 on PATH, point to it: AUTORESEARCH_PYTHON=/path/to/python3 npm run demo";

/**
 * Read and check everything the night needs, before anything starts. Throws a DemoError: exit
 * status 2 for a bad project folder, config or proposals file, 1 when this machine cannot train
 * the template (no PyTorch).
 */
export function planDemo(args: DemoArgs, env: Record<string, string | undefined>): DemoPlan {
  const notes: string[] = [];
  let proposals: ProposalEntry[] | null = null;
  if (args.proposals !== null) {
    const size = statSync(args.proposals).size;
    if (size > MAX_PROPOSALS_BYTES) throw new DemoError(`--proposals ${args.proposals}: larger than ${MAX_PROPOSALS_BYTES / 1024 / 1024} MiB`, 2);
    proposals = parseProposals(readFileSync(args.proposals, "utf8"), args.proposals);
  }

  let project: ProjectFiles;
  let fileText: string | null;
  let workdir: string;
  let source: string;
  if (args.repo === null) {
    project = {
      text: {
        "program.md": readFileSync(path.join(ROOT, "program.md"), "utf8"),
        "trainer/train.py": readFileSync(path.join(ROOT, "trainer/train.py"), "utf8"),
        "trainer/prepare.py": readFileSync(path.join(ROOT, "trainer/prepare.py"), "utf8"),
      },
      binary: {},
      source: "the template",
      notes: [],
    };
    fileText = null;
    workdir = "trainer";
    source = "the template in trainer/";
  } else {
    project = readProject(args.repo);
    if (project.binary[CONFIG_PATH]) throw new DemoError(`--repo ${args.repo}: ${CONFIG_PATH} is not UTF-8 text`, 2);
    fileText = project.text[CONFIG_PATH] ?? null;
    workdir = ".";
    source = `${args.repo} (${project.source}, ${Object.keys(project.text).length + Object.keys(project.binary).length} files)`;
  }
  notes.push(...project.notes);

  const fileLabel = args.repo === null ? CONFIG_PATH : path.join(args.repo, CONFIG_PATH);
  const { text: configText, config, notes: configNotes } = demoConfig({
    args,
    fileText,
    fileLabel,
    workdir,
    hasPrepare: `${workdir === "." ? "" : `${workdir}/`}prepare.py` in project.text,
    replay: proposals !== null,
    modelDouble: args.modelLatency !== null,
    // The built-in template follows the outside evaluation's contract, with either runner.
    outsideEvaluation: args.repo === null,
    env,
  });
  if (configNotes.length) notes.push(`using ${fileLabel} with ${configNotes.join(", ")}`);

  // What the bot needs from the default branch: the program and the editable files, as text.
  if (args.repo !== null) {
    const where = fileText === null ? `(the demo's config, as no ${CONFIG_PATH} is there, expects them at the top)` : `(where ${CONFIG_PATH} expects them)`;
    const missing: string[] = [];
    for (const file of [config.program, ...config.editable.map((e) => joinWorkdir(config.workdir, e))]) {
      if (project.binary[file]) throw new DemoError(`--repo ${args.repo}: ${file} is not UTF-8 text`, 2);
      if (!(file in project.text)) missing.push(file);
    }
    if (missing.length) {
      const inCommit = project.source.startsWith("git") ? ` in its last commit (${project.source})` : "";
      throw new DemoError(`--repo ${args.repo}: ${missing.join(", ")} not found${inCommit} ${where}`, 2);
    }
  }
  if (proposals !== null) checkProposalPaths(proposals, config.editable, args.proposals!);

  // The template needs PyTorch; a project may train with anything, so there torch is optional.
  const torch = findTorchPython(env);
  if (!torch && args.repo === null) throw new DemoError(NO_TORCH, 1);
  const files = { ...project.text, [CONFIG_PATH]: configText };
  return {
    args,
    files,
    binary: project.binary,
    configText,
    config,
    proposals,
    source,
    notes,
    torch,
  };
}

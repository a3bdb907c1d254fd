#!/usr/bin/env python3
"""Run one autoresearch experiment and report it as one JSON object.

The harness obtains the research repository at the experiment commit, runs the
data preparation once per cache key, runs the training command under a time
budget and a hard timeout, parses the summary block that autoresearch's
``train.py`` prints at the end, classifies failures and emits one JSON result.
It needs only the Python 3.9+ standard library.

Usage
-----

    python3 harness.py --repo PATH|URL [--commit SHA]
                       [--token-file FILE | --token-stdin]
                       [--workdir DIR] [--train-cmd CMD] [--prepare-cmd CMD]
                       [--prepare-files GLOB ...] [--python INTERP]
                       [--sandbox none|bwrap|container] [--sandbox-ro PATH ...]
                       [--prepare-network on|off] [--cache-dir DIR]
                       [--budget SECONDS] [--timeout SECONDS]
                       [--prepare-timeout SECONDS] [--result FILE]
                       [--termination-log FILE] [--log FILE] [--run-id ID]
                       [--score-cmd CMD --serve-cmd CMD [--eval-repo PATH|URL]
                        [--eval-commit SHA] [--score-timeout SECONDS]
                        [--heldout-root DIR] [--output-dir DIR]]
                       [--fetch-only DIR [--prune-root DIR] | --prepare-only | --prepared-only]
                       [--score-later | --score-only DIR | --serve-only DIR]
                       [--probe-plan FILE]
    python3 harness.py --probe-only DIR --probe-plan FILE [--score-timeout SECONDS]
    python3 harness.py --parse-log FILE
    python3 harness.py --sandbox-probe [--sandbox bwrap] [--python INTERP] [--sandbox-ro PATH ...]
                       [--private PATH ...]

``--repo`` is one of

* a local directory, used in place;
* a local ``.tar`` or ``.tar.gz`` with one top-level folder (what
  ``--fetch-only`` leaves), unpacked into a scratch directory;
* a local git repository (or a directory inside one) together with
  ``--commit``: the tree of that commit is exported with ``git archive`` into a
  scratch directory, so the caller's checkout is never touched;
* an http(s) URL of a ``.tar.gz`` such as GitHub's
  ``https://api.github.com/repos/OWNER/REPO/tarball/SHA``. Redirects are
  followed; ``Authorization: Bearer <token>`` is sent when ``--token-file`` is
  given (and dropped on a redirect to another origin). The single top-level
  folder (``owner-repo-sha/``) is stripped; with a hexadecimal ``--commit`` it
  must end with that commit's short sha. Absolute paths, ``..`` and links
  that point outside the tree are refused, and so are archives past
  ``--max-archive-bytes``, ``--max-source-files`` or ``--max-source-bytes``.
  Network errors are retried.

Both commands run with ``/bin/sh -c`` in the work directory, in a new session
(process group), with these environment variables:

* ``AUTORESEARCH_TIME_BUDGET``: ``--budget`` in seconds (unsandboxed, the
  commands get the harness's environment less ``AUTORESEARCH_RUN_DIR``; in the
  sandbox only locale, time zone, the numeric libraries' ``CUDA_*``, ``OMP_*``,
  ``MKL_*``... variables, ``LD_LIBRARY_PATH``'s absolute folders (shown read-only),
  ``AUTORESEARCH_DATA_*``, ``AUTORESEARCH_CORPUS`` and ``AUTORESEARCH_SEED``);
* ``AUTORESEARCH_DATA_DIR``: ``<cache-dir>/data-<key16>``, where the key is a
  sha256 over the ``--prepare-files`` (paths and contents), the prepare command
  every ``AUTORESEARCH_DATA_*`` variable other than
  ``AUTORESEARCH_DATA_DIR``, and ``AUTORESEARCH_CORPUS``. The prepare command runs only while that
  directory has no ``.prepared`` marker whose content hash still matches,
  under an exclusive lock, so concurrent runs prepare once;
* ``PYTHONUNBUFFERED=1`` unless set; with ``--python``, ``python3`` and
  ``python`` on ``PATH`` run that interpreter.

The token is never logged, never written anywhere by the harness and never
reaches the commands (their environment, their files or, in the sandbox,
their view of the harness's process). When
the training command exits, whatever else is left in its process group is
killed; at the hard timeout the whole group gets SIGTERM, then SIGKILL after a
grace period. SIGTERM or SIGINT sent to the harness kills the group too and
still writes a result.

Result
------

One flat JSON object, always printed as the last line of stdout and, with
``--result``, written to that file atomically (``--termination-log`` gets the
same object cut to 4096 bytes):

``status``
    ``ok``, ``crash``, ``oom``, ``timeout``, ``nan`` or ``over_budget``.
``val_bpb``
    the validation bits per byte (a number), or null.
summary fields
    every other ``key: value`` of the last summary block, numbers parsed:
    ``training_seconds``, ``total_seconds``, ``peak_vram_mb``, ``mfu_percent``,
    ``total_tokens_M``, ``num_steps``, ``num_params_M``, ``depth`` and any extra
    key (a key equal to one of the reserved names below gets a ``summary_``
    prefix; non-finite numbers are written as the strings "nan", "inf").
``exit_code``
    the exit status of the command of the stage where the run ended (negative
    signal number when killed by a signal), or null.
``reason``
    one line for humans: what happened.
``stage``
    ``fetch``, ``prepare``, ``train`` or ``eval``: where the run ended (a run
    scored outside the experiment that passed says ``train``).
``run_id``, ``commit``
    echoed from ``--run-id`` and ``--commit`` (the full sha for a local git
    repository), or null.
``duration_seconds``
    wall time of the training command, or null when it never started.
``harness_version``
    the version of this script.
``log_tail``
    the last lines of the command's output (at most 50 lines and 3000 bytes,
    ``\\r`` progress collapsed to its last state).
``sandbox``
    ``bwrap``, ``container`` or ``none``: how the commands were isolated.
``notes``
    a list of sentences about the run a reader should know (prepared data
    that had to be prepared again, no sandbox).
``evaluation``
    ``outside`` (val_bpb computed by ``--score-cmd``, see below) or
    ``self_reported`` (the number the training printed).
``reported_val_bpb``, ``eval_seconds``, ``probe_windows``, ``probe_max_difference``
    with ``--score-cmd``: the val_bpb the training printed about itself (ignored),
    how long the evaluation took, how many windows the causality probe checked
    and the largest disagreement it found (total variation distance).
``infrastructure``
    ``true`` when the run failed for a reason of the machine and not of the
    experiment: the disk filled up (a file of the run could not be written:
    ENOSPC or EDQUOT). The reason says so, with the folder and its free space.
    Absent otherwise.
``hardware``
    what the training ran on, seen from outside: the GPUs' names from
    ``nvidia-smi`` (``2 x NVIDIA H200``), else the CPU model and the number of
    CPUs the run may use. Set when the run reached the training stage.

Sandbox
-------

With ``--sandbox bwrap`` both commands run under bubblewrap: new user, PID,
network, IPC, UTS and cgroup namespaces, no capabilities, no nested user
namespaces, the system folders and a few files of ``/etc`` read-only, a
private ``/tmp`` and home, the run's own copy of the repository at
``/experiment`` (read-only while preparing), and the prepared data at
``/data`` and ``~/.cache`` (writable only while preparing). Nothing else of
the host is there: not the runner's folders, tokens or configuration, not
other runs, not the harness's processes (``--private`` names the runner's
folders besides the harness's working folder: a read-only folder that holds
one is not bound, and one inside a system folder is hidden under an empty
one). Training has no network; preparing has the host's unless
``--prepare-network off``. The PID namespace dies with the run, so nothing it
started survives it. GPUs (``/dev/nvidia*``, with ``/sys`` read-only for the
driver) are passed through, and the folders of ``LD_LIBRARY_PATH`` are shown
read-only, where a driver's libraries may be. When bwrap cannot create the
sandbox the run fails at stage ``prepare`` (exit 3) and says how to fix it.
``--sandbox-probe`` starts only the ``--python`` interpreter there, on an
empty tree, and prints what it finds of PyTorch and CUDA (``doctor`` compares
it with what it finds outside).

With ``--sandbox container`` (the caller isolates: a Kubernetes pod) the
commands get a scratch ``HOME`` whose ``.cache`` is the prepared data, as in
the sandbox: an autoresearch fork's ``prepare.py`` keeps its data in
``~/.cache/autoresearch``. Wherever a command has no network (bwrap or
container, all but preparation) it gets ``HF_HUB_OFFLINE=1``, so hub libraries
load what preparation downloaded, and a training that fails on a connection
is told that its download belongs in the preparation.

Outside evaluation
------------------

With ``--score-cmd`` val_bpb is not what the training says about itself:

* prepare and the scorer run in the trusted tree (``--eval-repo`` at
  ``--eval-commit``: the default branch), never in the experiment's; prepare
  writes the validation data to ``AUTORESEARCH_EVAL_DIR`` (``/eval``), a
  folder beside the prepared data that the training never sees;
* the training gets ``AUTORESEARCH_OUTPUT_DIR`` (``/output``) and saves its
  weights there; a ``val_bpb`` it prints is kept as ``reported_val_bpb`` only;
* then ``--serve-cmd`` runs in the experiment's tree (no network, the output
  read-only, no held-out data) and answers request frames on stdin with logits
  on stdout, while ``--score-cmd`` (sandboxed apart, with the held-out data)
  sends it the validation inputs through the harness, on the fds named in
  ``AUTORESEARCH_MODEL_FDS`` ("read,write"), and prints a ``val_bpb:`` summary.
  Frames, little-endian: request ``ARQ1``, uint32 B, uint32 T, B*T int32 ids;
  answer ``ARS1``, uint32 B, uint32 T, uint32 V, B*T*V float32 logits. One
  batch is answered before the next is sent;
* the causality probe: a fresh model process is asked about every scored
  window again, regrouped and reordered, either unchanged or with the bytes
  after a random position replaced by another window's; its answers before
  that position must match the scored ones (total variation at most 0.1).
  A model that reads ahead, or whose answers depend on what it was asked
  before, fails: status ``crash`` at stage ``eval``, val_bpb null.

The same steps split over pods (the Kubernetes runner), where the pod and not
bubblewrap is the sandbox:

* ``--score-later`` (with ``--output-dir`` on the data volume): train only; a
  run that trained within its budget reports status ``ok``, val_bpb null and
  evaluation ``pending``;
* ``--score-only DIR`` and ``--serve-only DIR``, two containers of one pod: the
  first runs the scorer in the trusted tree with the held-out data and makes
  two FIFOs in DIR (``request``, ``answer``; a shared emptyDir), the second runs
  the model on them. The scorer's result has val_bpb; the probe plan (the probe
  windows and the answers they must agree with) goes to ``--probe-plan``;
* ``--probe-only DIR`` and ``--serve-only DIR`` in a later pod: the probe against
  a fresh model; its result has evaluation ``probe`` and the probe's figures.

Prepared data is verified before every run against the sha256 of its content
recorded when it was prepared; data that changed is prepared again (and a
note says so), or, with ``--prepared-only``, the run fails at stage prepare.
Without a prepare command the commands get an empty data folder of their own.

Classification of a training run, first match wins: killed at the hard
timeout -> ``timeout``; CUDA out-of-memory in the output (and no valid
result) -> ``oom``; killed by SIGKILL that the harness did not send (exit -9 or
137) -> ``oom`` (host out-of-memory); a ``FAIL`` line or a non-finite val_bpb
-> ``nan``; a non-zero exit -> ``crash`` (reason: the last Python exception);
exit 0 without a ``val_bpb:`` line -> ``crash``; a result that broke the time
budget as measured from outside -> ``over_budget`` (the command ran longer than
``--budget`` + ``--eval-allowance`` by the wall clock, or it reports more
``training_seconds`` than the budget plus 2% + 2 s, or than the wall clock it
ran; the reason gives both figures); otherwise ``ok``.

Exit codes
----------

0  result written, status ok
1  result written, the experiment failed (crash, oom, timeout, nan or over_budget)
2  usage error (bad flags); no result
3  infrastructure failure: fetching the repository or preparing the data
   failed, the harness was interrupted, the disk is full, or the harness itself
   failed; a result is written (status crash, ``stage`` says where), and
   retrying may help. A harness that could not write its result (a full disk)
   exits 3 too, with no result file
"""

from __future__ import annotations

import argparse
import array
import atexit
import base64
import collections
import errno
import fcntl
import glob
import hashlib
import http.client
import json
import math
import os
import platform
import pwd
import random
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zlib

HARNESS_VERSION = "1.4.0"

EXIT_OK = 0
EXIT_EXPERIMENT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRASTRUCTURE = 3

TAIL_MAX_LINES = 50
TAIL_MAX_BYTES = 3000
LINE_MAX_BYTES = 4096
TERMINATION_LOG_MAX_BYTES = 4096
READ_CHUNK_BYTES = 65536
KILL_GRACE_SECONDS = 5.0
DRAIN_SECONDS = 2.0
FETCH_ATTEMPTS = 4
FETCH_BACKOFF_SECONDS = 1.0
FETCH_SOCKET_TIMEOUT = 60.0
HEARTBEAT_TEXT_CHARS = 200
REASON_MAX_CHARS = 300

RESERVED_KEYS = (
    "status",
    "infrastructure",
    "sandbox",
    "notes",
    "hardware",
    "exit_code",
    "reason",
    "log_tail",
    "stage",
    "run_id",
    "commit",
    "duration_seconds",
    "harness_version",
)
CORE_KEYS = ("status", "val_bpb", "exit_code", "reason", "stage", "run_id", "commit", "log_tail")

_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*:\s*(.*?)\s*$")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?")
_NONFINITE = ("nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")
_FAIL_LINE = re.compile(r"(?:^|\s)FAIL\s*$")
_CUDA_OOM = re.compile(
    r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError|CUDA error: out of memory|HIP out of memory"
)
_TRACEBACK_START = "Traceback (most recent call last):"


def log(message: str) -> None:
    """Diagnostics go to stderr; stdout is reserved for the result."""
    try:
        sys.stderr.write("[harness] " + message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _fmt_bytes(count: int) -> str:
    return "%.0f MiB" % (count / 1048576.0) if count >= 1048576 else "%d bytes" % count


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else "%g" % value


# --------------------------------------------------------------------------- output parsing


def parse_value(text: str):
    """A summary value: an int, a float, or the string itself."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text) or text.lower() in _NONFINITE:
        return float(text)
    return text


class OutputMonitor:
    """Follows a command's output in bounded memory.

    Keeps the last lines with ``\\r`` progress collapsed (of ``a\\rb\\rc\\n`` only
    ``c`` is kept), the last summary block (a ``---`` line followed by
    ``key: value`` lines), the last Python exception line, CUDA out-of-memory
    messages and ``FAIL`` lines. No line is ever held beyond LINE_MAX_BYTES.
    """

    def __init__(self) -> None:
        self.lines = collections.deque(maxlen=TAIL_MAX_LINES)  # type: collections.deque
        self.summary = {}  # type: dict
        self.exception_line = None  # type: str | None
        self.oom_line = None  # type: str | None
        self.fail_line = None  # type: str | None
        self.bytes_seen = 0
        self._current = bytearray()
        self._pending_cr = False
        self._block = None  # type: dict | None
        self._in_traceback = False

    def feed(self, data: bytes) -> None:
        self.bytes_seen += len(data)
        start = 0
        while True:
            newline = data.find(b"\n", start)
            piece = data[start:] if newline < 0 else data[start:newline]
            if piece:
                for index, part in enumerate(piece.split(b"\r")):
                    if index:
                        self._pending_cr = True
                    if part:
                        self._text(part)
            if newline < 0:
                return
            self._end_line()
            start = newline + 1

    def close(self) -> None:
        """End of output: an unterminated last line still counts."""
        if self._current:
            self._end_line()

    def _text(self, part: bytes) -> None:
        if self._pending_cr:
            # A carriage return followed by more text: the line is overwritten.
            self._current = bytearray()
            self._pending_cr = False
        room = LINE_MAX_BYTES - len(self._current)
        if room > 0:
            self._current += part[:room]

    def _end_line(self) -> None:
        text = bytes(self._current).decode("utf-8", "replace").rstrip()
        self._current = bytearray()
        self._pending_cr = False
        self.lines.append(text)
        self._scan(text)

    def _scan(self, line: str) -> None:
        stripped = line.strip()
        # Summary block.
        if stripped == "---":
            self._block = {}
        elif self._block is not None:
            match = _KEY_VALUE.match(stripped)
            if match:
                self._block[match.group(1)] = parse_value(match.group(2))
                self.summary = self._block
            else:
                self._block = None
        # Python tracebacks: the first unindented line after the frames.
        if _TRACEBACK_START in line:
            self._in_traceback = True
        elif self._in_traceback and stripped and not line[:1].isspace():
            self.exception_line = stripped
            self._in_traceback = False
        if _CUDA_OOM.search(line):
            self.oom_line = stripped
        if _FAIL_LINE.search(line):
            self.fail_line = stripped

    def latest(self) -> str:
        """The newest progress segment or line, for heartbeats."""
        if self._current:
            text = bytes(self._current).decode("utf-8", "replace")
        else:
            text = self.lines[-1] if self.lines else ""
        return text.strip()[:HEARTBEAT_TEXT_CHARS]

    def tail(self) -> str:
        lines = list(self.lines)
        if self._current:
            lines.append(bytes(self._current).decode("utf-8", "replace").rstrip())
        while lines and not lines[-1].strip():
            lines.pop()
        data = "\n".join(lines[-TAIL_MAX_LINES:]).encode("utf-8")
        if len(data) > TAIL_MAX_BYTES:
            data = data[-TAIL_MAX_BYTES:]
        return data.decode("utf-8", "ignore")


def parse_summary(text: str) -> dict:
    """Parse the last autoresearch summary block of a whole log.

    >>> parse_summary("step 1\\r step 2\\n---\\nval_bpb: 0.99\\nnum_steps: 953\\n")
    {'val_bpb': 0.99, 'num_steps': 953}
    """
    monitor = OutputMonitor()
    monitor.feed(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
    monitor.close()
    return dict(monitor.summary)


def _parse_summary_file(path: str) -> dict:
    monitor = OutputMonitor()
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    try:
        while True:
            chunk = stream.read(READ_CHUNK_BYTES)
            if not chunk:
                break
            monitor.feed(chunk)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    monitor.close()
    return dict(monitor.summary)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- classification


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def _shorten(text: str, limit: int = REASON_MAX_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def no_space(error: BaseException) -> bool:
    """A write failed because the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def free_space(path: str) -> str:
    """The free space of the file system holding `path` (or its nearest existing parent)."""
    folder = os.path.abspath(path)
    while folder != os.path.dirname(folder) and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        info = os.statvfs(folder)
    except OSError:
        return "unknown"
    return _fmt_bytes(info.f_bavail * info.f_frsize)


def disk_full_reason(error: OSError, path: str) -> str:
    """One line on a write the disk refused: what failed, where, and how much space is left."""
    where = error.filename if isinstance(error.filename, str) else path
    return _shorten("the disk is full: %s writing %s (%s free there)" % (
        error.strerror or error, where, free_space(where)))


def _oom_reason(line: str) -> str:
    detail = ""
    match = re.search(r"out of memory[.:]?\s*(.*)", line)
    if match:
        detail = match.group(1)
        # Keep the first sentences ("Tried to allocate ... GPU 0 has ... free.").
        sentences = re.split(r"(?<=\.)\s+", detail)
        kept = []
        for sentence in sentences:
            if kept and len(" ".join(kept + [sentence])) > 160:
                break
            kept.append(sentence)
        detail = " ".join(kept)
    return _shorten("CUDA out of memory: " + detail if detail else "CUDA out of memory")


def budget_tolerance(budget: float) -> float:
    """How far a run's own training_seconds may pass the budget: its last step (2% + 2 s)."""
    return budget * 0.02 + 2.0


def check_budget(summary: dict, wall: float, budget: float, allowance: float):
    """Why a run that printed a result broke its time budget, measured from outside; or None.

    The wall clock of the training command must stay within budget + allowance (start-up,
    compilation and evaluation); the training_seconds it reports must stay within the budget
    (plus its last step) and within the wall clock it actually ran."""
    reported = summary.get("training_seconds")
    if wall > budget + allowance:
        return "ran %s s by the wall clock, more than the budget of %s s plus %s s for start-up and evaluation" % (
            _fmt_seconds(round(wall, 1)), _fmt_seconds(budget), _fmt_seconds(allowance))
    if _is_number(reported) and math.isfinite(reported):
        if reported > budget + budget_tolerance(budget):
            return "reported %s s of training, more than the budget of %s s (the wall clock says %s s)" % (
                _fmt_seconds(reported), _fmt_seconds(budget), _fmt_seconds(round(wall, 1)))
        if reported > wall + 1.0:
            return "reported %s s of training, but its command ran only %s s by the wall clock" % (
                _fmt_seconds(reported), _fmt_seconds(round(wall, 1)))
    return None


# An exception that says the command tried to reach the network (a hub download at start-up).
NETWORK_ERROR = re.compile(
    r"offline mode|OfflineModeIsEnabled|LocalEntryNotFound|name resolution|Name or service not known|"
    r"Network is unreachable|No address associated|Failed to resolve|getaddrinfo|Connection ?Error|ConnectError|"
    r"URLError|MaxRetryError|could ?n[o']t connect", re.IGNORECASE)
NO_NETWORK_HINT = ("; runs have no network: download what train.py fetches at start (a dataset, a hub kernel) "
                   "in the preparation (prepare_command), which may reach it")


def classify(exit_code, timed_out: bool, timeout_seconds: float, monitor: OutputMonitor, wall: float = 0.0,
             budget: float = 0.0, allowance: float = 0.0, outside: bool = False, offline: bool = False):
    """(status, reason) of a finished training command. See the module docstring. With `outside`
    the training need not print val_bpb: the evaluation measures it afterwards. `offline`: the
    command had no network, so an exception about one says where the download belongs."""
    summary = monitor.summary
    val_bpb = summary.get("val_bpb")
    numeric = _is_number(val_bpb)
    finite = numeric and math.isfinite(val_bpb)
    succeeded = exit_code == 0 and finite
    if timed_out:
        return "timeout", "timed out after %s s (hard timeout); the process group was killed" % _fmt_seconds(
            timeout_seconds
        )
    if monitor.oom_line and not succeeded:
        return "oom", _oom_reason(monitor.oom_line)
    if exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return "oom", "killed by SIGKILL (likely host out-of-memory)"
    if monitor.fail_line:
        return "nan", "training printed FAIL (the loss exploded or became NaN)"
    if numeric and not finite:
        return "nan", "val_bpb is %s" % _json_value(val_bpb)
    if exit_code != 0:
        if monitor.exception_line:
            if offline and NETWORK_ERROR.search(monitor.exception_line):
                return "crash", _shorten(monitor.exception_line, REASON_MAX_CHARS - len(NO_NETWORK_HINT)) + NO_NETWORK_HINT
            return "crash", _shorten(monitor.exception_line)
        if exit_code is not None and exit_code < 0:
            return "crash", "killed by %s (exit %d)" % (_signal_name(-exit_code), exit_code)
        if exit_code is not None and 128 < exit_code < 128 + 65:
            # A shell reports a child killed by signal N as 128 + N.
            return "crash", "exited with code %d (killed by %s?)" % (exit_code, _signal_name(exit_code - 128))
        return "crash", "exited with code %s" % exit_code
    if outside:
        broke = check_budget(summary, wall, budget, allowance) if budget > 0 else None
        if broke:
            return "over_budget", "not a valid measurement: the run " + broke
        return "ok", "trained"
    if val_bpb is None:
        return "crash", "exited 0 but printed no val_bpb summary"
    if not numeric:
        return "crash", _shorten("val_bpb is not a number: %r" % (val_bpb,))
    broke = check_budget(summary, wall, budget, allowance) if budget > 0 else None
    if broke:
        return "over_budget", "not a valid measurement: the run " + broke
    seconds = summary.get("training_seconds")
    if _is_number(seconds):
        return "ok", "val_bpb %.6f after %s s of training" % (val_bpb, _fmt_seconds(seconds))
    return "ok", "val_bpb %.6f" % val_bpb


# --------------------------------------------------------------------------- errors and signals


class StageError(Exception):
    """A failure of the harness's own work (fetch or prepare): exit code 3."""

    def __init__(self, stage: str, reason: str, exit_code=None, log_tail: str = "") -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.exit_code = exit_code
        self.log_tail = log_tail


class UnsafeArchive(Exception):
    pass


class HarnessInterrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(_signal_name(signum))
        self.signum = signum


class _Signals:
    received = None  # type: int | None
    # Outside a command's wait loop the handler raises; inside it, the loop
    # sees `received`, kills the process group and then raises.
    raise_in_handler = True


def _on_signal(signum, _frame) -> None:
    if _Signals.received is None:
        _Signals.received = signum
        if _Signals.raise_in_handler:
            raise HarnessInterrupted(signum)


def _install_signal_handlers() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)


# --------------------------------------------------------------------------- running commands


class CommandOutcome:
    def __init__(self) -> None:
        self.exit_code = None  # type: int | None
        self.timed_out = False
        self.interrupted = None  # type: int | None
        self.duration = 0.0


def _make_death_signal_setup():
    """Ask Linux to SIGKILL the command if the harness itself dies abruptly."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return setup


def _killpg(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _exited_without_reaping(proc: subprocess.Popen) -> bool:
    """True once the process has exited; the zombie is left for Popen.wait so
    its pid (and process group id) cannot be reused while we kill the group."""
    if proc.returncode is not None:
        return True
    waitid = getattr(os, "waitid", None)
    if waitid is not None:
        try:
            return waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
        except OSError:
            pass
    return proc.poll() is not None


def run_command(
    argv,
    cwd: str,
    env: dict,
    timeout: float,
    log_file,
    monitor: OutputMonitor,
    label: str,
    heartbeat: float,
) -> CommandOutcome:
    """Run `argv` (``/bin/sh -c CMD``, or bwrap around it) in a new session,
    stream its combined output to `log_file` and `monitor`, and enforce the
    hard timeout on its group. In a sandbox the group is bwrap itself: when it
    dies, its PID namespace and every process in it die too."""
    outcome = CommandOutcome()
    _Signals.raise_in_handler = False
    pgid = None
    try:
        if _Signals.received is not None:
            raise HarnessInterrupted(_Signals.received)
        start = time.monotonic()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_make_death_signal_setup(),
        )
        pgid = proc.pid
        fd = proc.stdout.fileno()
        deadline = start + timeout
        kill_started = None  # type: float | None
        hard_killed = False
        exited_at = None  # type: float | None
        eof = False
        last_heartbeat = start
        while True:
            now = time.monotonic()
            if kill_started is None:
                if _Signals.received is not None:
                    outcome.interrupted = _Signals.received
                elif now >= deadline:
                    outcome.timed_out = True
                if outcome.interrupted is not None or outcome.timed_out:
                    why = "interrupted by %s" % _signal_name(outcome.interrupted) if outcome.interrupted else (
                        "hard timeout of %s s reached" % _fmt_seconds(timeout)
                    )
                    log("%s: %s; sending SIGTERM to the process group" % (label, why))
                    kill_started = now
                    _killpg(pgid, signal.SIGTERM)
            if kill_started is not None and not hard_killed and now - kill_started >= KILL_GRACE_SECONDS:
                log("%s: still running %s s after SIGTERM; sending SIGKILL" % (label, _fmt_seconds(KILL_GRACE_SECONDS)))
                _killpg(pgid, signal.SIGKILL)
                hard_killed = True
            if exited_at is None and _exited_without_reaping(proc):
                exited_at = now
                # Whatever the command left behind in its group goes with it.
                _killpg(pgid, signal.SIGKILL)
            if exited_at is not None and (eof or now - exited_at >= DRAIN_SECONDS):
                break
            if heartbeat > 0 and now - last_heartbeat >= heartbeat:
                last_heartbeat = now
                latest = monitor.latest()
                log("%s %ds%s" % (label, int(now - start), (" | " + latest) if latest else ""))
            if eof:
                time.sleep(0.1)
                continue
            wait = 0.25
            if kill_started is None:
                wait = max(0.0, min(wait, deadline - now))
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                data = os.read(fd, READ_CHUNK_BYTES)
                if not data:
                    eof = True
                else:
                    log_file.write(data)
                    monitor.feed(data)
        outcome.exit_code = proc.wait()
        outcome.duration = time.monotonic() - start
        proc.stdout.close()
        log_file.flush()
        monitor.close()
    except BaseException:
        # The log could not be written (a full disk) or the harness failed: the command must
        # not outlive the run that would have measured it.
        if pgid is not None:
            _killpg(pgid, signal.SIGKILL)
        raise
    finally:
        _Signals.raise_in_handler = True
    if outcome.interrupted is not None:
        raise HarnessInterrupted(outcome.interrupted)
    return outcome


# --------------------------------------------------------------------------- the sandbox

# Inside the sandbox the experiment sees only these paths (everything else of the host, the
# bot's working directory, its .env, other runs and the harness's own files, does not exist):
SANDBOX_TREE = "/experiment"  # the repository at the experiment commit: the per-run scratch copy
SANDBOX_DATA = "/data"  # the prepared data: read-only while training, writable while preparing
SANDBOX_HOME = "/home/experiment"  # a private tmpfs; ~/.cache is the prepared data too
# The user name the commands are told ($USER, $LOGNAME). Without it getpass.getuser() looks the
# uid up in /etc/passwd and raises when it is not there (a container started under an arbitrary
# uid), and TorchInductor names its cache folder with it: torch.compile would crash.
SANDBOX_USER = "experiment"
SANDBOX_BIN = "/run/autoresearch/bin"  # the python3/python shims for --python
SANDBOX_TMP_BYTES = 4 << 30
SANDBOX_HOME_BYTES = 1 << 30
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc is not bound whole (it can hold host keys and credentials): only what programs need to
# run, resolve names and verify TLS.
SANDBOX_ETC = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "gai.conf", "group", "host.conf",
    "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "mime.types",
    "nsswitch.conf", "os-release", "passwd", "pki", "protocols", "resolv.conf", "services", "ssl",
    "timezone",
)
# Environment the commands may see besides what the harness sets: locale, time zone and the
# knobs of the numeric libraries. Nothing else of the harness's environment crosses.
SANDBOX_ENV_NAMES = ("LANG", "LANGUAGE", "TZ", "TERM", "PYTHONUNBUFFERED", "PYTHONHASHSEED")
SANDBOX_ENV_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "PYTORCH_", "TORCH", "TRITON_", "OMP_", "MKL_", "OPENBLAS_",
                        "AUTORESEARCH_DATA_", "AUTORESEARCH_CORPUS", "AUTORESEARCH_SEED", "HF_HUB_OFFLINE")
# Never passed, whatever their name matches: where the runner keeps the run.
PRIVATE_ENV = ("AUTORESEARCH_RUN_DIR", "AUTORESEARCH_EVAL_DIR", "AUTORESEARCH_OUTPUT_DIR", "AUTORESEARCH_MODEL_FDS")
SANDBOX_FIX = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow unprivileged user "
    "namespaces (sysctl kernel.unprivileged_userns_clone=1 on Debian; on Ubuntu 24.04 also "
    "kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap)"
)


class SandboxUnavailable(Exception):
    pass


def probe_bwrap(bwrap: str) -> None:
    """Raise SandboxUnavailable unless `bwrap` can build the namespaces a run needs."""
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--disable-userns", "--cap-drop", "ALL",
            "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=30, universal_newlines=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise SandboxUnavailable("%s cannot run: %s" % (bwrap, error))
    if proc.returncode != 0:
        raise SandboxUnavailable("%s cannot create a sandbox: %s" % (bwrap, _shorten(proc.stdout.strip() or "exit %d" % proc.returncode)))


def _interpreter_prefixes(interpreter: str) -> list:
    """The folders a Python interpreter needs (its prefixes and the folders on sys.path), asked of
    the interpreter itself in isolated mode: it is the operator's, not the experiment's."""
    code = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix] + sys.path))"
    try:
        proc = subprocess.run([interpreter, "-I", "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=60, universal_newlines=True)
        paths = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        paths = []
    real = os.path.realpath(interpreter)
    paths.append(os.path.dirname(os.path.dirname(real)))  # <prefix>/bin/python3
    return [path for path in paths if isinstance(path, str) and os.path.isabs(path)]


def _under(path: str, roots) -> bool:
    return any(_inside(path, root) for root in roots)


class Sandbox:
    """bubblewrap around one command: new user, PID, network, IPC, UTS and cgroup namespaces, no
    capabilities, no further user namespaces, a read-only view of the system, and writable only
    the run's own tree (and, while preparing, the data folder). The PID namespace dies with
    bwrap, so no process of a run outlives it. GPUs (/dev/nvidia*) are passed through."""

    def __init__(self, bwrap: str, tree: str, shim_dir, extra_ro, masked=()) -> None:
        self.bwrap = bwrap
        self.tree = os.path.realpath(tree)
        self.shim_dir = shim_dir
        self.extra_ro = list(extra_ro)  # real paths, checked by make_sandbox
        self.masked = list(masked)  # the runner's folders inside a system folder: hidden

    def inside(self, host_path: str) -> str:
        """Where a path of the run's tree is inside the sandbox."""
        return SANDBOX_TREE + os.path.realpath(host_path)[len(self.tree):]

    def for_tree(self, tree: str) -> "Sandbox":
        """The same sandbox around another tree (the trusted tree the scorer and prepare run in)."""
        return Sandbox(self.bwrap, tree, self.shim_dir, self.extra_ro, self.masked)

    def argv(self, command: str, workdir: str, data_dir: str, env: dict, network: bool, data_writable: bool,
             tree_writable: bool = True, binds=()) -> list:
        """`binds`: further (host folder, path inside, writable) mounts: the held-out data, the
        training's output."""
        argv = [self.bwrap, "--unshare-all", "--unshare-user"]
        if network:
            argv.append("--share-net")
        argv += ["--die-with-parent", "--new-session", "--disable-userns", "--cap-drop", "ALL"]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        argv += ["--dir", "/etc"]
        for name in SANDBOX_ETC:
            argv += ["--ro-bind-try", "/etc/" + name, "/etc/" + name]
        for entry in sorted(glob.glob("/etc/python3*")):
            argv += ["--ro-bind", entry, entry]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        gpus = sorted(glob.glob("/dev/nvidia*"))
        for device in gpus:
            argv += ["--dev-bind", device, device]
        if gpus:
            # The CUDA driver and NVML read the devices' PCI and NUMA topology.
            argv += ["--ro-bind-try", "/sys", "/sys"]
        else:
            argv += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
        argv += ["--size", str(SANDBOX_TMP_BYTES), "--tmpfs", "/tmp"]
        argv += ["--size", str(SANDBOX_HOME_BYTES), "--tmpfs", SANDBOX_HOME]
        for path in self.extra_ro:
            argv += ["--ro-bind", path, path]
        for path in self.masked:
            # An empty, read-only folder over the runner's own (its .env, runs, other repositories' data).
            argv += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
        argv += ["--bind" if tree_writable else "--ro-bind", self.tree, SANDBOX_TREE]
        bind = "--bind" if data_writable else "--ro-bind"
        argv += [bind, data_dir, SANDBOX_DATA, bind, data_dir, SANDBOX_HOME + "/.cache"]
        for host, inside, writable in binds:
            argv += ["--bind" if writable else "--ro-bind", host, inside]
        if self.shim_dir:
            argv += ["--ro-bind", self.shim_dir, SANDBOX_BIN]
        argv += ["--chdir", self.inside(workdir), "--clearenv"]
        for name, value in sorted(env.items()):
            argv += ["--setenv", name, value]
        return argv + ["--", "/bin/sh", "-c", command]


def library_path() -> list:
    """The absolute folders of LD_LIBRARY_PATH that exist: where an operator may keep the GPU
    driver's or CUDA's libraries (/usr/local/nvidia/lib64, /opt/cuda/lib64). The sandbox shows
    them read-only and keeps the variable; empty and relative entries (the current folder) go."""
    entries = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    return [entry for entry in entries if os.path.isabs(entry) and os.path.isdir(entry)]


def sandbox_environment(args, shim: bool) -> dict:
    """The whole environment of a sandboxed command: set here, not inherited."""
    env = {}
    libraries = library_path()
    if libraries:
        env["LD_LIBRARY_PATH"] = ":".join(libraries)
    for name, value in os.environ.items():
        if name in PRIVATE_ENV:
            continue
        if name in SANDBOX_ENV_NAMES or any(name.startswith(prefix) for prefix in SANDBOX_ENV_PREFIXES):
            env[name] = value
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.update({
        "PATH": (SANDBOX_BIN + ":" + path) if shim else path,
        "HOME": SANDBOX_HOME,
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "TMPDIR": "/tmp",
        "AUTORESEARCH_TIME_BUDGET": _fmt_seconds(args.budget),
        "AUTORESEARCH_DATA_DIR": SANDBOX_DATA,
    })
    if args.seed is not None:
        env["AUTORESEARCH_SEED"] = str(args.seed)
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


EVAL_DIR_ENV = "AUTORESEARCH_EVAL_DIR"
OUTPUT_DIR_ENV = "AUTORESEARCH_OUTPUT_DIR"


def stage_environment(args, sandbox, data_dir: str, shim_dir, heldout=None, output=None, network=False) -> dict:
    """The environment of one command: where the held-out data (prepare and the scorer only) and
    the training's output folder (training and the model process only) are, and nothing else.
    `network`: whether the command may reach the network (only preparation may)."""
    if sandbox:
        env = sandbox_environment(args, shim_dir is not None)
        places = {EVAL_DIR_ENV: SANDBOX_EVAL if heldout else None, OUTPUT_DIR_ENV: SANDBOX_OUTPUT if output else None}
    else:
        env = child_environment(args, data_dir, shim_dir)
        places = {EVAL_DIR_ENV: heldout, OUTPUT_DIR_ENV: output}
        if args.sandbox == "container":
            # As in the sandbox: ~/.cache is the prepared data, where an autoresearch fork's
            # prepare.py keeps it (~/.cache/autoresearch) and hub libraries their downloads.
            env["HOME"] = container_home(data_dir)
            env["XDG_CACHE_HOME"] = os.path.join(env["HOME"], ".cache")
    if not network and args.sandbox != "none":
        # No network here: hub libraries (huggingface_hub, and with it `kernels`' get_kernel) then
        # load what preparation downloaded into ~/.cache instead of failing on a connection.
        env["HF_HUB_OFFLINE"] = "1"
    for name, value in places.items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    return env


_CONTAINER_HOMES = {}


def container_home(data_dir: str) -> str:
    """With --sandbox container, the HOME of the commands: a scratch folder (removed at exit) whose
    .cache is the prepared data, writable only where the caller mounts it so (preparation)."""
    home = _CONTAINER_HOMES.get(data_dir)
    if home is None:
        home = tempfile.mkdtemp(prefix="autoresearch-home-")
        os.symlink(os.path.abspath(data_dir), os.path.join(home, ".cache"))
        atexit.register(shutil.rmtree, home, True)  # not through the link: rmtree never follows one
        _CONTAINER_HOMES[data_dir] = home
    return home


def make_sandbox(args, tree: str, shim_dir):
    """The sandbox of this run, or None with --sandbox none. Raises StageError (an
    infrastructure failure: the experiment is not to blame) when bwrap cannot run."""
    if args.sandbox != "bwrap":
        return None
    bwrap = shutil.which(args.bwrap) if os.sep not in args.bwrap else os.path.abspath(args.bwrap)
    try:
        if not bwrap:
            raise SandboxUnavailable("%s was not found on PATH" % args.bwrap)
        probe_bwrap(bwrap)
    except SandboxUnavailable as error:
        raise StageError("prepare", "the sandbox is unavailable: %s; %s" % (error, SANDBOX_FIX))
    extra = list(args.sandbox_ro or []) + library_path()
    if args.python:
        extra += _interpreter_prefixes(args.python)
    corpus = os.environ.get("AUTORESEARCH_CORPUS", "")
    if corpus and os.path.isabs(corpus):
        extra.append(corpus)
    # The runner's folders (the harness's own working directory, the run folder, and what the
    # runner names with --private: its working folder with .env, its runs, the data of every
    # repository) are never shown: a further folder that holds one is not bound, and one that a
    # system folder holds is hidden under an empty folder.
    private = [os.path.realpath(os.getcwd())] + [os.path.realpath(path) for path in args.private or []]
    kept = []
    for path in extra:
        real = os.path.realpath(path)
        if not os.path.exists(real) or _under(real, SYSTEM_DIRS) or real in kept:
            continue  # nothing to show, or shown already
        holds = [folder for folder in private if _inside(folder, real)]
        if real == "/" or holds:
            log("sandbox: not binding %s: it holds the runner's %s" % (real, holds[0] if holds else "folders"))
            continue
        kept.append(real)
    system = [os.path.realpath(path) for path in SYSTEM_DIRS if os.path.isdir(path)]
    masked = sorted({folder for folder in private
                     if _under(folder, system) and folder not in system and os.path.isdir(folder)})
    for folder in private:
        if folder in system:
            raise StageError("prepare", "the sandbox is unavailable: the runner's folder %s is a system folder every "
                             "sandbox shows; move it out of %s" % (folder, ", ".join(SYSTEM_DIRS)))
    return Sandbox(bwrap, tree, shim_dir, kept, masked)


# What a training command finds of PyTorch and CUDA where it runs (--sandbox-probe). A GPU that
# works outside the sandbox but not inside would make every run train on the CPU.
SANDBOX_PROBE = r"""
import glob, json, sys
out = {"python": sys.version.split()[0], "nvidia_devices": len(glob.glob("/dev/nvidia[0-9]*"))}
try:
    import torch
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
else:
    out["torch"] = torch.__version__
    out["cuda"] = None
    if torch.version.cuda:
        try:
            torch.cuda.init()
            out["cuda"] = torch.cuda.get_device_name(0)
            out["cuda_devices"] = torch.cuda.device_count()
            float(torch.ones(8, device="cuda").sum())  # a kernel runs, not only the driver answers
        except Exception as e:
            out["cuda"] = None
            out["cuda_error"] = "%s: %s" % (type(e).__name__, (str(e).strip().splitlines() or [""])[0])
print(json.dumps(out))
"""
SANDBOX_PROBE_TIMEOUT = 300.0


def sandbox_probe(args) -> int:
    """--sandbox-probe: the --python interpreter, started as a training command is (the same
    sandbox, binds, environment and python3 shim, no network, an empty tree and data folder),
    says what it finds of PyTorch and CUDA. Prints one JSON line; with "error" when it found no
    torch or could not run."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-probe-") as scratch:
        tree, data = os.path.join(scratch, "tree"), os.path.join(scratch, "data")
        os.makedirs(tree)
        os.makedirs(data)
        shim_dir = python_shim_dir(args, scratch)
        try:
            sandbox = make_sandbox(args, tree, shim_dir)
        except StageError as error:
            print(json.dumps({"sandbox": args.sandbox, "error": error.reason}))
            return EXIT_INFRASTRUCTURE
        command = "python3 -c " + shlex.quote(SANDBOX_PROBE)
        env = stage_environment(args, sandbox, data, shim_dir)  # a training command's
        if sandbox:
            argv, env = sandbox.argv(command, tree, data, env, network=False, data_writable=False), None
        else:
            argv = ["/bin/sh", "-c", command]
        try:
            proc = subprocess.run(argv, cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=SANDBOX_PROBE_TIMEOUT, universal_newlines=True)
        except subprocess.TimeoutExpired:
            found = {"error": "no answer within %d s" % SANDBOX_PROBE_TIMEOUT}
        except OSError as error:
            found = {"error": "cannot start %s: %s" % (argv[0], error.strerror or error)}
        else:
            try:
                found = json.loads(proc.stdout.strip().splitlines()[-1])
                if not isinstance(found, dict):
                    raise ValueError("not an object")
            except (ValueError, IndexError):
                found = {"error": _shorten(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                                           else "exit %d and no answer" % proc.returncode)}
    found["sandbox"] = args.sandbox
    print(json.dumps(found))
    return EXIT_OK


# --------------------------------------------------------------------------- fetching the repository


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _member_parts(name: str):
    if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise UnsafeArchive("absolute path in archive: %r" % name)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive("path with '..' in archive: %r" % name)
    return parts


def safe_extract(tar: tarfile.TarFile, dest: str, strip_top: bool, max_entries: int = 0, max_bytes: int = 0,
                 top_suffix: str = "") -> int:
    """Extract regular files, folders and links that stay inside `dest`.

    With `strip_top`, the archive must have one top-level folder, which is
    removed. At most `max_entries` entries and `max_bytes` bytes of file
    content (0: no limit). With `top_suffix`, the top-level folder must end
    with it (GitHub names it owner-repo-<short sha>: the archive is of the
    commit asked for). Returns the number of files written."""
    root = os.path.realpath(dest)
    top = None
    files = 0
    entries = 0
    unpacked = 0
    for member in tar:
        entries += 1
        if max_entries and entries > max_entries:
            raise UnsafeArchive("more than %d entries in the archive (--max-source-files)" % max_entries)
        if member.isfile():
            unpacked += member.size
            if max_bytes and unpacked > max_bytes:
                raise UnsafeArchive("more than %s unpacked in the archive (--max-source-bytes)" % _fmt_bytes(max_bytes))
        parts = _member_parts(member.name)
        if strip_top:
            if not parts:
                continue
            if top is None:
                top = parts[0]
                if top_suffix and not top.endswith(top_suffix):
                    raise UnsafeArchive("the archive's folder %r is not of the commit asked for (%s)" % (top, top_suffix.lstrip("-")))
            elif parts[0] != top:
                raise UnsafeArchive("archive has more than one top-level folder (%r, %r)" % (top, parts[0]))
            parts = parts[1:]
        if not parts:
            continue
        target = os.path.join(root, *parts)
        if member.isdir():
            os.makedirs(target, exist_ok=True)
            if not _inside(os.path.realpath(target), root):
                raise UnsafeArchive("folder outside the tree: %r" % member.name)
            continue
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        if not _inside(os.path.realpath(parent), root):
            raise UnsafeArchive("path through a link outside the tree: %r" % member.name)
        if os.path.islink(target) or os.path.isfile(target):
            os.unlink(target)
        if member.isfile():
            source = tar.extractfile(member)
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
            files += 1
        elif member.issym():
            link = member.linkname
            if os.path.isabs(link):
                raise UnsafeArchive("absolute link in archive: %r -> %r" % (member.name, link))
            if not _inside(os.path.realpath(os.path.join(os.path.realpath(parent), link)), root):
                raise UnsafeArchive("link pointing outside the tree: %r -> %r" % (member.name, link))
            os.symlink(link, target)
        elif member.islnk():
            link_parts = _member_parts(member.linkname)
            if strip_top:
                link_parts = link_parts[1:]
            source_path = os.path.join(root, *link_parts)
            if not link_parts or not _inside(os.path.realpath(source_path), root) or not os.path.isfile(source_path):
                raise UnsafeArchive("hard link to outside the tree: %r -> %r" % (member.name, member.linkname))
            shutil.copyfile(source_path, target)
            shutil.copymode(source_path, target)
            files += 1
        else:
            log("fetch: skipping special file %r in archive" % member.name)
    # Links may resolve differently once later members exist: check them all.
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), root):
                raise UnsafeArchive("link pointing outside the tree: %r" % os.path.relpath(path, root))
    return files


def _origin(url: str):
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme.lower(), parts.hostname, parts.port)


def _safe_url(url: str) -> str:
    """The URL without credentials or query string, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += ":%d" % parts.port
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects; the Authorization header goes only to the same origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


RETRY_AFTER_MAX_SECONDS = 600.0


def _retry_after(error) -> "float | None":
    """The seconds a 403 or 429 rate-limit answer asks to wait (its retry-after), or None."""
    if error.code not in (403, 429):
        return None
    value = (error.headers or {}).get("retry-after") if hasattr(error, "headers") else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX_SECONDS)


def _retryable_http(code: int) -> bool:
    return code in (408, 425, 429) or code >= 500


class SourceLimits:
    """Bounds on a repository archive: its size, its entries, its unpacked size."""

    def __init__(self, archive_bytes: int, entries: int, unpacked_bytes: int) -> None:
        self.archive_bytes = archive_bytes
        self.entries = entries
        self.unpacked_bytes = unpacked_bytes

    @classmethod
    def of(cls, args) -> "SourceLimits":
        return cls(args.max_archive_bytes, args.max_source_files, args.max_source_bytes)


def _commit_suffix(commit) -> str:
    """`-<short sha>` when `commit` is a hexadecimal sha (GitHub's archive folder ends with it)."""
    if commit and re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return "-" + commit[:7].lower()
    return ""


def _copy_bounded(source, out, limit: int, what: str) -> int:
    total = 0
    while True:
        chunk = source.read(1 << 20)
        if not chunk:
            return total
        total += len(chunk)
        if limit and total > limit:
            raise UnsafeArchive("%s is larger than %s (--max-archive-bytes)" % (what, _fmt_bytes(limit)))
        out.write(chunk)


def extract_archive(path: str, dest: str, limits: "SourceLimits", commit=None) -> int:
    """Unpack a .tar or .tar.gz with one top-level folder into `dest` (replaced), within `limits`."""
    size = os.path.getsize(path)
    if limits.archive_bytes and size > limits.archive_bytes:
        raise UnsafeArchive("the archive is larger than %s (--max-archive-bytes)" % _fmt_bytes(limits.archive_bytes))
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    with tarfile.open(path, "r:*") as tar:
        return safe_extract(tar, dest, strip_top=True, max_entries=limits.entries, max_bytes=limits.unpacked_bytes,
                            top_suffix=_commit_suffix(commit))


def download_tarball(url: str, token, dest: str, scratch: str, limits: "SourceLimits", commit=None) -> None:
    opener = urllib.request.build_opener(_RedirectHandler)
    archive = os.path.join(scratch, "source.tar.gz")
    shown = _safe_url(url)
    last_error = ""
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        wait = None  # seconds GitHub asked for (retry-after), else the backoff below
        request = urllib.request.Request(url, headers={"User-Agent": "autoresearch-bot-harness/" + HARNESS_VERSION})
        if token:
            request.add_header("Authorization", "Bearer " + token)
        retry = True
        try:
            log("fetch: downloading %s (attempt %d/%d)" % (shown, attempt, FETCH_ATTEMPTS))
            with opener.open(request, timeout=FETCH_SOCKET_TIMEOUT) as response, open(archive, "wb") as out:
                _copy_bounded(response, out, limits.archive_bytes, "the archive")
            files = extract_archive(archive, dest, limits, commit)
            log("fetch: extracted %d files" % files)
            return
        except UnsafeArchive as error:
            raise StageError("fetch", "unsafe archive from %s: %s" % (shown, error))
        except urllib.error.HTTPError as error:
            retry = _retryable_http(error.code)
            last_error = "HTTP %d %s" % (error.code, error.reason)
            asked = _retry_after(error)
            if asked is not None:
                # A rate limit: nothing is sent again before the time GitHub named.
                retry, wait = True, asked
                last_error += " (rate limited; retry-after %s s)" % _fmt_seconds(asked)
            if error.code in (401, 403, 404):
                last_error += " (check the URL, the commit and the token's access to the repository)"
        except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as error:
            last_error = "%s: %s" % (type(error).__name__, getattr(error, "reason", error))
        except (tarfile.TarError, EOFError, zlib.error) as error:
            last_error = "invalid or truncated archive: %s" % error
        finally:
            if os.path.exists(archive):
                os.unlink(archive)
        if not retry or attempt == FETCH_ATTEMPTS:
            break
        delay = wait if wait is not None else FETCH_BACKOFF_SECONDS * (2 ** (attempt - 1))
        log("fetch: %s; retrying in %s s" % (last_error, _fmt_seconds(delay)))
        time.sleep(delay)
    raise StageError("fetch", "download of %s failed: %s" % (shown, last_error))


def _git_environment() -> dict:
    """The environment without variables that would point git elsewhere."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                        "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_NAMESPACE")
    }


def _git(args, cwd: str):
    return subprocess.run(
        ["git"] + list(args),
        cwd=cwd,
        env=_git_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )


def export_git_commit(path: str, commit: str, dest: str, limits: "SourceLimits"):
    """Export the tree of `commit` (the subfolder `path` stands for) into
    `dest` with git archive. Returns the full commit sha, or None when `path`
    is not in a git repository."""
    try:
        prefix = _git(["rev-parse", "--show-prefix"], path)
    except FileNotFoundError:
        if os.path.exists(os.path.join(path, ".git")):
            raise StageError("fetch", "--commit needs git, which is not installed")
        return None
    if prefix.returncode != 0:
        return None
    resolved = _git(["rev-parse", "--verify", "--quiet", commit + "^{commit}"], path)
    if resolved.returncode != 0 or not resolved.stdout.strip():
        raise StageError("fetch", "commit %s not found in the git repository %s" % (commit, path))
    sha = resolved.stdout.strip()
    subdir = prefix.stdout.strip().rstrip("/")
    treeish = sha
    archive_cwd = path
    if subdir:
        # git archive run in a subfolder would apply that subfolder again: run it at the top.
        treeish = "%s:%s" % (sha, subdir)
        toplevel = _git(["rev-parse", "--show-toplevel"], path)
        if toplevel.returncode != 0:
            raise StageError("fetch", _shorten("cannot find the top of the git repository %s: %s" % (
                path, toplevel.stderr.strip())))
        archive_cwd = toplevel.stdout.strip()
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            ["git", "archive", "--format=tar", treeish], cwd=archive_cwd, env=_git_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=errors,
        )
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                safe_extract(tar, dest, strip_top=False, max_entries=limits.entries, max_bytes=limits.unpacked_bytes)
            # The stream reader stops at the end-of-archive blocks; git may still be writing the
            # tar's record padding. Read it, so that closing the pipe does not kill git with
            # SIGPIPE (exit -13) after a complete archive. Bounded: padding is under 10 KiB.
            for _ in range(64):
                if not proc.stdout.read(65536):
                    break
        except (tarfile.TarError, UnsafeArchive) as error:
            proc.kill()
            proc.wait()
            raise StageError("fetch", "git archive of %s failed: %s" % (sha, error))
        finally:
            proc.stdout.close()
        code = proc.wait()
        errors.seek(0)
        message = errors.read().decode("utf-8", "replace").strip()
    if code != 0:
        raise StageError("fetch", _shorten("git archive of %s failed: %s" % (sha, message or "exit %d" % code)))
    return sha


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def fetch_repository(args, token, scratch: str, trusted: bool = False):
    """Returns (root folder of the repository tree, commit to report): the experiment's, or with
    `trusted` the tree the evaluation code comes from (--eval-repo at --eval-commit)."""
    repo = (args.eval_repo or args.repo) if trusted else args.repo
    commit = args.eval_commit if trusted else args.commit
    name = "trusted" if trusted else "src"
    limits = SourceLimits.of(args)
    if re.match(r"^https?://", repo, re.IGNORECASE):
        dest = os.path.join(scratch, name)
        download_tarball(repo, token, dest, scratch, limits, commit)
        return dest, commit
    path = os.path.abspath(os.path.expanduser(repo))
    if os.path.isfile(path) and path.endswith(ARCHIVE_SUFFIXES):
        # An archive another step fetched (Kubernetes: the fetch Job's source.tar on the data
        # volume): unpacked into this run's scratch with the same bounds as a download.
        dest = os.path.join(scratch, name)
        try:
            files = extract_archive(path, dest, limits, commit)
        except UnsafeArchive as error:
            raise StageError("fetch", "unsafe archive %s: %s" % (path, error))
        except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
            raise StageError("fetch", "cannot unpack %s: %s" % (path, error))
        log("fetch: unpacked %d files from %s" % (files, path))
        return dest, commit
    if not os.path.isdir(path):
        raise StageError("fetch", "repository %s is neither a folder, a .tar(.gz) archive nor an http(s) URL" % repo)
    if not commit:
        log("fetch: using %s in place" % path)
        return path, None
    dest = os.path.join(scratch, name)
    sha = export_git_commit(path, commit, dest, limits)
    if sha is None:
        log("fetch: %s is not a git repository; using it in place (--commit is informative)" % path)
        return path, commit
    log("fetch: exported %s at %s" % (path, sha[:12]))
    return dest, sha


SOURCE_ARCHIVE = "source.tar"
TRUSTED_ARCHIVE = "trusted.tar"


def pack_tree(root: str, archive: str, commit) -> None:
    """`root` as an uncompressed tar with one top-level folder named for the commit, written
    atomically (a reader never sees half an archive)."""
    top = "source" + (_commit_suffix(commit) or "")
    temporary = archive + ".tmp"
    with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(root, arcname=top, recursive=True)
    os.replace(temporary, archive)


def prune_children(parent: str, keep: str, older_than: float) -> None:
    """Remove the folders in `parent` not modified for `older_than` seconds (the runs long
    finished; a reader of one of them is long gone), except the one that holds `keep`."""
    cutoff = time.time() - older_than
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        path = os.path.join(parent, name)
        try:
            if not _inside(keep, path) and os.path.isdir(path) and os.stat(path).st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def fetch_only(args, token, scratch: str) -> int:
    """--fetch-only DIR: leave the repository tree as DIR/source.tar (replacing it) and, with
    --score-cmd, the trusted tree (--eval-repo at --eval-commit) as DIR/trusted.tar; no result."""
    dest = os.path.abspath(args.fetch_only)
    root, commit = fetch_repository(args, token, scratch)
    os.makedirs(dest, exist_ok=True)
    pack_tree(root, os.path.join(dest, SOURCE_ARCHIVE), commit or args.commit)
    if args.score_cmd:
        trusted_root, trusted_commit = fetch_repository(args, token, scratch, trusted=True)
        pack_tree(trusted_root, os.path.join(dest, TRUSTED_ARCHIVE), trusted_commit or args.eval_commit)
    if args.prune_after:
        prune_children(os.path.abspath(args.prune_root) if args.prune_root else os.path.dirname(dest), dest,
                       args.prune_after)
    log("fetch: %s ready in %s" % (args.commit or "repository", os.path.join(dest, SOURCE_ARCHIVE)))
    return EXIT_OK


# --------------------------------------------------------------------------- data preparation


def prepare_key(workdir: str, patterns, prepare_cmd: str, environ, heldout: bool = False) -> str:
    """sha256 over the prepare files (paths and contents), the prepare command
    and the AUTORESEARCH_DATA_* variables other than AUTORESEARCH_DATA_DIR,
    plus AUTORESEARCH_CORPUS; and whether the held-out data go to a folder of their own
    (outside evaluation), since that changes what the data folder holds."""
    digest = hashlib.sha256(b"autoresearch-bot prepare key v1\0")
    if heldout:
        digest.update(b"heldout\0")
    files = set()
    for pattern in patterns:
        for match in glob.glob(os.path.join(glob.escape(workdir), pattern), recursive=True):
            if os.path.isfile(match):
                files.add(os.path.relpath(match, workdir).replace(os.sep, "/"))
    for relative in sorted(files):
        digest.update(b"file\0" + relative.encode("utf-8", "surrogateescape") + b"\0")
        with open(os.path.join(workdir, relative), "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    digest.update(b"command\0" + (prepare_cmd or "").encode("utf-8", "surrogateescape") + b"\0")
    for name in sorted(environ):
        # The corpus a prepare step reads is a data setting too: another corpus, another cache.
        if (name.startswith("AUTORESEARCH_DATA_") and name != "AUTORESEARCH_DATA_DIR") or name == "AUTORESEARCH_CORPUS":
            digest.update(("env\0%s=%s\0" % (name, environ[name])).encode("utf-8", "surrogateescape"))
    if not files:
        log("prepare: no file matches %s" % ", ".join(patterns))
    return digest.hexdigest()


MARKER = ".prepared"


def hash_tree(folder: str):
    """(sha256, files, bytes) of a folder's content: every path, file and link target, in order,
    the marker aside. Whatever writes to prepared data after it was prepared changes it."""
    digest = hashlib.sha256(b"autoresearch-bot data v1\0")
    files = 0
    size = 0
    for current, dirs, names in os.walk(folder):
        dirs.sort()
        relative = os.path.relpath(current, folder).replace(os.sep, "/")
        digest.update(b"dir\0" + relative.encode("utf-8", "surrogateescape") + b"\0")
        for name in sorted(names):
            if current == folder and name in (MARKER, MARKER + ".tmp"):
                continue
            path = os.path.join(current, name)
            entry = (relative + "/" + name).encode("utf-8", "surrogateescape")
            if os.path.islink(path):
                digest.update(b"link\0" + entry + b"\0" + os.readlink(path).encode("utf-8", "surrogateescape") + b"\0")
                continue
            digest.update(b"file\0" + entry + b"\0")
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
                    size += len(chunk)
            digest.update(b"\0")
            files += 1
        for name in dirs:
            if os.path.islink(os.path.join(current, name)):
                entry = (relative + "/" + name).encode("utf-8", "surrogateescape")
                digest.update(b"link\0" + entry + b"\0" + os.readlink(os.path.join(current, name)).encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest(), files, size


def _read_marker(data_dir: str):
    try:
        with open(os.path.join(data_dir, MARKER)) as handle:
            marker = json.load(handle)
        return marker if isinstance(marker, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def hash_data(data_dir: str, heldout_dir=None):
    """hash_tree of the prepared data, the held-out data (outside evaluation) included."""
    digest, files, size = hash_tree(data_dir)
    if heldout_dir is None:
        return digest, files, size
    held, held_files, held_size = hash_tree(heldout_dir)
    combined = hashlib.sha256(("autoresearch-bot data+heldout v1\0%s\0%s" % (digest, held)).encode()).hexdigest()
    return combined, files + held_files, size + held_size


def check_prepared(data_dir: str, heldout_dir=None):
    """None when `data_dir` (and `heldout_dir`) hold data whose content is what was recorded when
    it was prepared; otherwise why not ("not prepared", or what changed)."""
    marker = _read_marker(data_dir)
    if marker is None:
        return "not prepared"
    recorded = marker.get("sha256")
    if heldout_dir is None and isinstance(marker.get("data_sha256"), str):
        # A step that never sees the held-out data (a Kubernetes trainer) checks the rest.
        recorded = marker["data_sha256"]
    if not isinstance(recorded, str):
        return "prepared without a content hash (an older harness)"
    started = time.monotonic()
    actual, files, size = hash_data(data_dir, heldout_dir)
    log("prepare: verified %d files (%s) in %.1f s" % (files, _fmt_bytes(size), time.monotonic() - started))
    if actual != recorded:
        return "its content changed since it was prepared (sha256 %s then, %s now)" % (recorded[:12], actual[:12])
    return None


def prepare_data(args, workdir: str, env: dict, log_file, data_dir: str, sandbox, heldout_dir=None):
    """Make `data_dir` (and `heldout_dir`, the data only the scorer sees) hold verified prepared
    data: run the prepare command unless it is prepared already and its content hash still
    matches. Returns a note for the result when the data had to be prepared again, else None."""
    if args.prepared_only:
        # Read-only data (a Kubernetes trainer): verify, never write.
        problem = check_prepared(data_dir, heldout_dir)
        if problem:
            raise StageError("prepare", _shorten("the prepared data in %s cannot be used: %s; the fetch step prepares it "
                                                 "again on the next attempt" % (data_dir, problem)))
        return None
    lock_path = data_dir + ".lock"
    note = None
    with open(lock_path, "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("prepare: another run holds %s; waiting" % lock_path)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        problem = check_prepared(data_dir, heldout_dir) if os.path.isdir(data_dir) else "not prepared"
        if problem is None:
            log("prepare: cached in %s" % data_dir)
            return None
        if problem != "not prepared":
            note = _shorten("the prepared data in %s was prepared again: %s" % (data_dir, problem))
            log("prepare: " + note)
            stale = "%s.stale-%d-%d" % (data_dir, os.getpid(), int(time.time()))
            os.rename(data_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        elif os.path.isdir(data_dir):
            # A preparation that died half way: start from nothing.
            shutil.rmtree(data_dir, ignore_errors=True)
        if heldout_dir is not None:
            shutil.rmtree(heldout_dir, ignore_errors=True)
            os.makedirs(heldout_dir)
        os.makedirs(data_dir, exist_ok=True)
        log("prepare: running %r (timeout %s s) into %s" % (args.prepare_cmd, _fmt_seconds(args.prepare_timeout), data_dir))
        log_file.write(("==> [harness] prepare: %s\n" % args.prepare_cmd).encode("utf-8", "replace"))
        monitor = OutputMonitor()
        if sandbox:
            binds = [(heldout_dir, SANDBOX_EVAL, True)] if heldout_dir is not None else []
            argv = sandbox.argv(args.prepare_cmd, workdir, data_dir, env, network=args.prepare_network == "on",
                                data_writable=True, tree_writable=False, binds=binds)
            cwd = os.path.dirname(data_dir)
        else:
            argv, cwd = ["/bin/sh", "-c", args.prepare_cmd], workdir
        outcome = run_command(argv, cwd, env, args.prepare_timeout, log_file, monitor, "prepare", args.heartbeat)
        if outcome.timed_out:
            raise StageError(
                "prepare", "prepare timed out after %s s" % _fmt_seconds(args.prepare_timeout),
                outcome.exit_code, monitor.tail(),
            )
        if outcome.exit_code != 0:
            detail = monitor.exception_line or (monitor.lines[-1] if monitor.lines else "")
            reason = "prepare failed: exit %s" % outcome.exit_code
            if detail:
                reason += ": " + detail
            raise StageError("prepare", _shorten(reason), outcome.exit_code, monitor.tail())
        digest, files, size = hash_data(data_dir, heldout_dir)
        data_digest = hash_tree(data_dir)[0] if heldout_dir is not None else digest
        marker = os.path.join(data_dir, MARKER)
        with open(marker + ".tmp", "w") as handle:
            json.dump(
                {"command": args.prepare_cmd, "seconds": round(outcome.duration, 1), "harness_version": HARNESS_VERSION,
                 "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "sha256": digest, "data_sha256": data_digest, "files": files, "bytes": size},
                handle,
            )
        os.replace(marker + ".tmp", marker)
        log("prepare: done in %.1f s (%d files, %s)" % (outcome.duration, files, _fmt_bytes(size)))
    return note


# --------------------------------------------------------------------------- outside evaluation
#
# With --score-cmd the run's val_bpb is not what train.py says about itself. After training:
#
# 1. The model process (--serve-cmd, in the experiment's tree, sandboxed: no network, the tree
#    and the weights it saved read-only, no held-out data) reads request frames on stdin and
#    answers each with the logits of every position.
# 2. The scorer (--score-cmd, in the trusted tree: the default branch's code, sandboxed
#    separately, with the held-out data read-only) sends the inputs of the validation windows
#    and computes val_bpb from the logits and the targets, which only it holds. It talks to the
#    model through the harness (fds named in AUTORESEARCH_MODEL_FDS), one batch at a time: a
#    batch is answered before the next is sent, so no answer can depend on a later window.
# 3. The causality probe: a second, fresh model process gets, for every scored window, a copy
#    whose bytes after a random position were replaced (or an exact copy). Its logits before
#    that position must match what the first process answered for the scored window. The
#    scored process cannot tell which windows are checked or where (it only ever sees scored
#    windows), and the two processes share nothing they could use to agree.
#
# Frames (little-endian): a request is b"ARQ1", uint32 B, uint32 T, then B*T int32 token ids;
# an answer is b"ARS1", uint32 B, uint32 T, uint32 V, then B*T*V float32 logits.

REQUEST_MAGIC = b"ARQ1"
RESPONSE_MAGIC = b"ARS1"
MAX_REQUEST_TOKENS = 1 << 22
MAX_RESPONSE_BYTES = 1 << 30
MAX_VOCAB = 1 << 20
MODEL_FDS_ENV = "AUTORESEARCH_MODEL_FDS"
SANDBOX_EVAL = "/eval"  # held-out data: written by prepare, read only by the scorer
SANDBOX_OUTPUT = "/output"  # what the training saved: writable while training, read-only after
PROBE_TOLERANCE = 0.1  # total variation distance between two answers for the same context
PROBE_POSITIONS = 4  # positions compared per probed window
PROBE_DUPLICATE_SHARE = 0.25  # probes that are exact copies (a model that keeps state drifts)
MODEL_LOG_MAX_BYTES = 8 << 20


class EvaluationFailed(Exception):
    """The evaluation could not produce a trustworthy val_bpb; the experiment is to blame."""

    def __init__(self, status: str, reason: str, log_tail: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.log_tail = log_tail


class _Process:
    """A sandboxed evaluation process in its own session, killed with its group at the end."""

    def __init__(self, argv, cwd: str, env: dict, stdin, stdout, stderr, pass_fds=()) -> None:
        self.proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                                     start_new_session=True, close_fds=True, pass_fds=tuple(pass_fds),
                                     preexec_fn=_make_death_signal_setup())
        self.monitor = OutputMonitor()  # its stderr, when a drain follows it
        self.drain = None

    def request_fd(self) -> int:
        return self.proc.stdin.fileno()

    def answer_fd(self) -> int:
        return self.proc.stdout.fileno()

    def end_requests(self) -> None:
        self.proc.stdin.close()

    def follow(self, log_file, label: str) -> None:
        """Copy its stderr into the log (bounded) and remember its last exception."""
        self.drain = _copy_bounded_stream(self.proc.stderr, log_file, MODEL_LOG_MAX_BYTES, label, self.monitor)

    def why_gone(self) -> str:
        """How it ended, for a reason line: its exit code and its last exception or line."""
        try:
            code = self.proc.wait(timeout=DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        if self.drain is not None:
            self.drain.join(timeout=DRAIN_SECONDS)
            self.monitor.close()
        detail = self.monitor.exception_line or (self.monitor.lines[-1] if self.monitor.lines else "")
        return "%s%s" % (" with code %s" % code if code is not None else "", (": " + detail) if detail else "")

    def finish(self, grace: float) -> int:
        """Wait up to `grace` seconds for a voluntary exit, then kill the group."""
        try:
            code = self.proc.wait(timeout=max(grace, 0.0))
        except subprocess.TimeoutExpired:
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=KILL_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _killpg(self.proc.pid, signal.SIGKILL)
                code = self.proc.wait()
        _killpg(self.proc.pid, signal.SIGKILL)
        return code


def _copy_bounded_stream(source, log_file, limit: int, label: str, monitor: OutputMonitor) -> threading.Thread:
    """Drain a process's stderr into the log, at most `limit` bytes (the rest is read and dropped,
    so the process never blocks on a full pipe), and into `monitor` (its last exception)."""
    def run() -> None:
        written = 0
        try:
            for chunk in iter(lambda: source.read1(READ_CHUNK_BYTES), b""):
                monitor.feed(chunk)
                if written < limit:
                    piece = chunk[:limit - written]
                    log_file.write(piece)
                    written += len(piece)
                    if written >= limit:
                        log_file.write(("\n==> [harness] %s: output cut at %s\n" % (label, _fmt_bytes(limit))).encode())
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _read_exact(fd: int, size: int, deadline: float, what: str) -> bytes:
    """`size` bytes from `fd`, or b"" at a clean end of stream before the first byte."""
    parts = []
    got = 0
    while got < size:
        if _Signals.received is not None:
            raise HarnessInterrupted(_Signals.received)
        left = deadline - time.monotonic()
        if left <= 0:
            raise EvaluationFailed("timeout", "the evaluation timed out waiting for %s" % what)
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        try:
            chunk = os.read(fd, min(size - got, 1 << 20))
        except BlockingIOError:
            continue  # a FIFO opened non-blocking: nothing after all
        if not chunk:
            if got == 0:
                return b""
            raise EvaluationFailed("crash", "%s ended in the middle of a frame (%d of %d bytes)" % (what, got, size))
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data, deadline: float, what: str) -> None:
    view = memoryview(data)
    while len(view):
        if _Signals.received is not None:
            raise HarnessInterrupted(_Signals.received)
        left = deadline - time.monotonic()
        if left <= 0:
            raise EvaluationFailed("timeout", "the evaluation timed out writing to %s" % what)
        _, ready, _ = select.select([], [fd], [], min(left, 0.5))
        if not ready:
            continue
        try:
            written = os.write(fd, view[:1 << 20])
        except BrokenPipeError:
            raise EvaluationFailed("crash", "%s stopped reading" % what)
        except BlockingIOError:
            continue  # a FIFO opened non-blocking: full after all
        view = view[written:]


def read_request(fd: int, deadline: float):
    """(B, T, payload) of the scorer's next request, or None when it is done."""
    header = _read_exact(fd, 12, deadline, "the scorer")
    if not header:
        return None
    magic, batch, length = header[:4], *struct.unpack("<II", header[4:])
    if magic != REQUEST_MAGIC or batch < 1 or length < 1 or batch * length > MAX_REQUEST_TOKENS:
        raise StageError("eval", "the scorer sent a malformed request (magic %r, %d x %d)" % (magic, batch, length))
    payload = _read_exact(fd, batch * length * 4, deadline, "the scorer")
    if len(payload) != batch * length * 4:
        raise StageError("eval", "the scorer's request ended early")
    return batch, length, payload


def exchange(model, batch: int, length: int, tokens: bytes, deadline: float, vocab):
    """Send one request to a model (a _Process, or a _FifoModel in another container) and return
    (V, logits bytes), checked against the request."""
    def gone() -> EvaluationFailed:
        head, _, detail = model.why_gone().partition(": ")
        return EvaluationFailed("crash", _shorten("the model process exited%s without answering%s" % (
            head, (": " + detail) if detail else "")), model.monitor.tail())

    try:
        _write_all(model.request_fd(), REQUEST_MAGIC + struct.pack("<II", batch, length) + tokens, deadline,
                   "the model process")
    except EvaluationFailed as failed:
        if failed.status != "crash":  # a model that stopped reading before its first answer: why?
            raise
        raise gone()
    stdout = model.answer_fd()
    header = _read_exact(stdout, 16, deadline, "the model's answer")
    if not header:
        raise gone()
    magic = header[:4]
    got_batch, got_length, got_vocab = struct.unpack("<III", header[4:])
    if magic != RESPONSE_MAGIC:
        raise EvaluationFailed("crash", "the model process answered something other than logits (it must not print "
                                        "to stdout while serving)")
    if (got_batch, got_length) != (batch, length) or not 1 <= got_vocab <= MAX_VOCAB or (vocab and got_vocab != vocab):
        raise EvaluationFailed("crash", "the model answered logits of shape (%d, %d, %d) for inputs of shape (%d, %d)%s" % (
            got_batch, got_length, got_vocab, batch, length, "" if not vocab else " (vocabulary %d before)" % vocab))
    size = batch * length * got_vocab * 4
    if size > MAX_RESPONSE_BYTES:
        raise EvaluationFailed("crash", "the model's answer would be %s, more than %s: evaluate in smaller batches" % (
            _fmt_bytes(size), _fmt_bytes(MAX_RESPONSE_BYTES)))
    logits = _read_exact(stdout, size, deadline, "the model's answer")
    if len(logits) != size:
        raise EvaluationFailed("crash", "the model process exited in the middle of its answer")
    return got_vocab, logits


def _distribution(logits: bytes, row: int, position: int, length: int, vocab: int):
    offset = ((row * length) + position) * vocab * 4
    values = struct.unpack_from("<%df" % vocab, logits, offset)
    if not all(math.isfinite(v) for v in values):
        return None
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _total_variation(p, q) -> float:
    if p is None or q is None:
        return 1.0
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q))


class ProbePlan:
    """For every scored window: a probe window and the positions where the two answers must agree."""

    def __init__(self, rng) -> None:
        self.rng = rng
        self.batches = []  # [(batch, length, tokens bytes, [(positions, expected distributions)])]
        self.kinds = {"spliced": 0, "copy": 0}

    def add(self, batch: int, length: int, tokens: bytes, logits: bytes, vocab: int) -> None:
        rows = array.array("i")
        rows.frombytes(tokens)
        if sys.byteorder != "little":
            rows.byteswap()
        probe = array.array("i")
        checks = []
        order = list(range(batch))
        for row in range(batch):
            original = rows[row * length:(row + 1) * length]
            donors = [other for other in order if other != row]
            cut = None
            if length >= 2 and donors and self.rng.random() >= PROBE_DUPLICATE_SHARE:
                for _ in range(8):
                    donor = self.rng.choice(donors)
                    k = self.rng.randrange(1, length)
                    if rows[donor * length + k] != original[k]:
                        cut = (donor, k)
                        break
            if cut is None:
                window = original
                positions = sorted(set([length - 1] + [self.rng.randrange(length) for _ in range(PROBE_POSITIONS - 1)]))
                self.kinds["copy"] += 1
            else:
                donor, k = cut
                window = original[:k] + rows[donor * length + k:(donor + 1) * length]
                # k - 1 is where reading ahead shows: the next byte differs there.
                positions = sorted(set([k - 1] + [self.rng.randrange(k) for _ in range(PROBE_POSITIONS - 1)]))
                self.kinds["spliced"] += 1
            probe.extend(window)
            checks.append([(p, _distribution(logits, row, p, length, vocab)) for p in positions])
        if sys.byteorder != "little":
            probe.byteswap()
        self.batches.append((batch, length, probe.tobytes(), checks))

    @property
    def windows(self) -> int:
        return sum(batch for batch, _, _, _ in self.batches)

    def save(self, path: str, vocab: int) -> None:
        """Write the plan for a probe in another pod (--probe-only): the probe windows and the
        answers they must agree with, as float32. Only the evaluation's trusted containers see it."""
        def pack(dist):
            return None if dist is None else base64.b64encode(struct.pack("<%df" % vocab, *dist)).decode("ascii")
        doc = {
            "version": 1,
            "vocab": vocab,
            "kinds": self.kinds,
            "batches": [
                {"batch": batch, "length": length, "tokens": base64.b64encode(tokens).decode("ascii"),
                 "checks": [[[position, pack(dist)] for position, dist in row] for row in checks]}
                for batch, length, tokens, checks in self.batches
            ],
        }
        write_atomically(path, json.dumps(doc, separators=(",", ":")))

    @classmethod
    def load(cls, path: str, rng):
        """(plan, vocab) from save(). Raises StageError when the file is missing or malformed."""
        try:
            with open(path) as handle:
                doc = json.load(handle)
            vocab = int(doc["vocab"])
            plan = cls(rng)
            plan.kinds = {k: int(v) for k, v in doc["kinds"].items()}
            for entry in doc["batches"]:
                batch, length = int(entry["batch"]), int(entry["length"])
                tokens = base64.b64decode(entry["tokens"])
                if len(tokens) != batch * length * 4 or len(entry["checks"]) != batch:
                    raise ValueError("a batch of the wrong size")
                checks = [[(int(position), None if packed is None else
                            list(struct.unpack("<%df" % vocab, base64.b64decode(packed))))
                           for position, packed in row] for row in entry["checks"]]
                plan.batches.append((batch, length, tokens, checks))
        except FileNotFoundError:
            raise StageError("eval", "the probe plan %s is missing: the scoring step did not finish" % path)
        except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
            raise StageError("eval", "the probe plan %s cannot be read: %s" % (path, error))
        return plan, vocab


def run_probe(plan: ProbePlan, model: "_Process", deadline: float, vocab: int) -> float:
    """Ask a fresh model process about the probe windows; the largest disagreement found.

    The windows go in a new random order and grouping: an answer that depends on when, or next
    to what, a window is asked (state kept across requests) shows up as a disagreement too."""
    rows = {}  # length -> [(window tokens, checks)]
    widest = {}
    for batch, length, tokens, checks in plan.batches:
        size = length * 4
        for row in range(batch):
            rows.setdefault(length, []).append((tokens[row * size:(row + 1) * size], checks[row]))
        widest[length] = max(widest.get(length, 0), batch)
    requests = []
    for length, entries in rows.items():
        plan.rng.shuffle(entries)
        step = widest[length]
        requests += [(length, entries[i:i + step]) for i in range(0, len(entries), step)]
    plan.rng.shuffle(requests)
    worst = 0.0
    for length, entries in requests:
        _, logits = exchange(model, len(entries), length, b"".join(t for t, _ in entries), deadline, vocab)
        for row, (_, expected) in enumerate(entries):
            for position, wanted in expected:
                distance = _total_variation(wanted, _distribution(logits, row, position, length, vocab))
                if distance > worst:
                    worst = distance
                if distance > PROBE_TOLERANCE:
                    raise EvaluationFailed(
                        "crash",
                        "the causality probe failed: the model's prediction at position %d of a window changed "
                        "(total variation %.3f > %.2f) when it was shown the same window with later bytes "
                        "changed, or shown it again in another batch; a model may only use the bytes before "
                        "each position, and must answer the same input the same way" % (position, distance, PROBE_TOLERANCE))
    return worst


class _FifoModel:
    """A model process in another container of the pod (Kubernetes: --score-only, --probe-only),
    reached through two FIFOs in a folder both containers mount: `request` (harness -> model) and
    `answer` (model -> harness). The other side is `--serve-only`."""

    def __init__(self, folder: str, deadline: float) -> None:
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self.monitor = OutputMonitor()  # the model's output stays in its own container's log
        self.drain = None
        self.request = self.answer = None
        request, answer = (os.path.join(folder, name) for name in FIFO_NAMES)
        for path in (request, answer):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            os.mkfifo(path, 0o660)
        # Answers first: the model side opens `answer` for writing only once a reader is there.
        self.answer = _open_fifo(answer, os.O_RDONLY)

        def wait() -> None:  # the model container is starting
            if _Signals.received is not None:
                raise HarnessInterrupted(_Signals.received)
            failed = _read_small(os.path.join(folder, FIFO_FAILED))
            if failed is not None:
                # The model side could not get ready (its commit, its data): not the model's answer.
                raise StageError("fetch", _shorten("the model container failed before serving: %s" % (
                    failed.strip() or "no reason")))
            if time.monotonic() > deadline:
                raise EvaluationFailed("timeout", "the model container never opened %s (it did not start, or "
                                                  "its --serve-only step failed)" % request)
            time.sleep(0.1)

        self.request = _open_fifo_writer(request, wait)

    def request_fd(self) -> int:
        return self.request

    def answer_fd(self) -> int:
        return self.answer

    def end_requests(self) -> None:
        if self.request is not None:
            os.close(self.request)
            self.request = None

    def why_gone(self) -> str:
        return " (see the model container's log)"

    def finish(self, grace: float) -> int:
        self.end_requests()
        if self.answer is not None:
            os.close(self.answer)
            self.answer = None
        try:
            # The model's side stops its model after a grace period, so the pod ends (and frees the GPU)
            # even when the model ignores the end of its requests.
            with open(os.path.join(self.folder, FIFO_DONE), "w"):
                pass
        except OSError:
            pass
        return 0


FIFO_NAMES = ("request", "answer")
FIFO_DONE = "done"  # written by the trusted side: the model may stop
FIFO_FAILED = "failed"  # written by the model side when it cannot serve at all (one line: why)


def _read_small(path: str, limit: int = REASON_MAX_CHARS):
    """The first `limit` characters of a small file, or None when it is not there."""
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def run_scorer(args, score_argv, score_cwd: str, score_env: dict, model, plan: "ProbePlan", log_file, scratch: str,
               deadline: float, request_fds):
    """The scorer asks, the model answers, through the harness, one batch at a time; every batch
    is added to the probe plan. Returns (val_bpb, vocab, batches). Raises EvaluationFailed or
    StageError. `request_fds` are the harness's ends of the scorer's pipes (closed here)."""
    request_read, answer_write, answer_read, request_write = request_fds
    score_log = open(os.path.join(scratch, "score.log"), "w+b")
    scorer = None
    vocab = 0
    requests = 0
    try:
        scorer = _Process(score_argv, score_cwd, score_env, subprocess.DEVNULL, score_log, subprocess.STDOUT,
                          pass_fds=(answer_read, request_write))
        os.close(answer_read)
        os.close(request_write)
        answer_read = request_write = None  # the scorer's ends: only the scorer holds them now
        while True:
            request = read_request(request_read, deadline)
            if request is None:
                break
            batch, length, tokens = request
            vocab, logits = exchange(model, batch, length, tokens, deadline, vocab)
            _write_all(answer_write, RESPONSE_MAGIC + struct.pack("<III", batch, length, vocab) + logits,
                       deadline, "the scorer")
            plan.add(batch, length, tokens, logits, vocab)
            requests += 1
        os.close(answer_write)
        answer_write = None
        model.end_requests()
        score_code = scorer.finish(max(0.0, deadline - time.monotonic()))
        score_log.seek(0)
        monitor = OutputMonitor()
        monitor.feed(score_log.read(MODEL_LOG_MAX_BYTES))
        monitor.close()
        score_log.seek(0)
        log_file.write(b"==> [harness] scorer output:\n" + score_log.read(MODEL_LOG_MAX_BYTES))
        if score_code != 0:
            detail = monitor.exception_line or (monitor.lines[-1] if monitor.lines else "exit %s" % score_code)
            raise EvaluationFailed("crash", _shorten("the scorer failed: %s" % detail), monitor.tail())
        val_bpb = monitor.summary.get("val_bpb")
        if not _is_number(val_bpb):
            raise StageError("eval", "the scorer printed no val_bpb summary", score_code, monitor.tail())
        if not math.isfinite(val_bpb):
            raise EvaluationFailed("nan", "val_bpb is %s: the model's logits are not finite" % _json_value(val_bpb),
                                   monitor.tail())
        if requests == 0:
            raise StageError("eval", "the scorer never asked the model anything", score_code, monitor.tail())
        return val_bpb, vocab, requests
    finally:
        for fd in (request_read, answer_write, answer_read, request_write):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if scorer is not None:
            scorer.finish(0)
        score_log.close()
        log_file.flush()


def scorer_command(args, trusted_sandbox, trusted_workdir: str, data_dir: str, heldout_dir: str, shim_dir,
                   scratch: str):
    """(argv, cwd, env, pipe fds) of the scorer: the trusted tree, the held-out data read-only, no
    network, and the fds of its two pipes to the harness in AUTORESEARCH_MODEL_FDS."""
    env = stage_environment(args, trusted_sandbox, data_dir, shim_dir, heldout=heldout_dir)
    request_read, request_write = os.pipe()
    answer_read, answer_write = os.pipe()
    env[MODEL_FDS_ENV] = "%d,%d" % (answer_read, request_write)
    if trusted_sandbox:
        argv = trusted_sandbox.argv(args.score_cmd, trusted_workdir, data_dir, env, network=False,
                                    data_writable=False, tree_writable=False,
                                    binds=[(heldout_dir, SANDBOX_EVAL, False)])
        cwd = scratch
    else:
        argv, cwd = ["/bin/sh", "-c", args.score_cmd], trusted_workdir
    log("eval: scoring with %r in the trusted tree, the model served by %r" % (args.score_cmd, args.serve_cmd))
    return argv, cwd, env, (request_read, answer_write, answer_read, request_write)


def evaluate_outside(args, sandbox, trusted_sandbox, workdir: str, trusted_workdir: str, data_dir: str,
                     heldout_dir: str, output_dir: str, shim_dir, log_file, scratch: str) -> dict:
    """Run the scorer against the model process and the probe; the summary fields to report
    (val_bpb and how it was checked). Raises EvaluationFailed or StageError."""
    started = time.monotonic()
    deadline = started + args.score_timeout
    rng = random.Random(int.from_bytes(os.urandom(16), "big"))
    model_env = stage_environment(args, sandbox, data_dir, shim_dir, output=output_dir)

    def model_process() -> _Process:
        if sandbox:
            argv = sandbox.argv(args.serve_cmd, workdir, data_dir, model_env, network=False, data_writable=False,
                                tree_writable=False, binds=[(output_dir, SANDBOX_OUTPUT, False)])
            cwd = scratch
        else:
            argv, cwd = ["/bin/sh", "-c", args.serve_cmd], workdir
        return _Process(argv, cwd, model_env, subprocess.PIPE, subprocess.PIPE, subprocess.PIPE)

    score_argv, score_cwd, score_env, fds = scorer_command(args, trusted_sandbox, trusted_workdir, data_dir,
                                                           heldout_dir, shim_dir, scratch)
    log_file.write(("==> [harness] eval: %s (scorer) <-> %s (model)\n" % (args.score_cmd, args.serve_cmd)).encode("utf-8", "replace"))
    log_file.flush()
    model = prober = None
    plan = ProbePlan(rng)
    try:
        model = model_process()
        model.follow(log_file, "model")
        val_bpb, vocab, requests = run_scorer(args, score_argv, score_cwd, score_env, model, plan, log_file, scratch,
                                              deadline, fds)
        model_code = model.finish(KILL_GRACE_SECONDS)
        model.drain.join(timeout=DRAIN_SECONDS)
        if model_code not in (0, None) and model_code != -signal.SIGTERM:
            log("eval: the model process exited with %s after answering" % model_code)

        log("eval: val_bpb %.6f from %d batches; probing causality with a fresh model process" % (val_bpb, requests))
        prober = model_process()
        prober.follow(log_file, "probe")
        worst = run_probe(plan, prober, deadline, vocab)
        prober.end_requests()
        prober.finish(KILL_GRACE_SECONDS)
        prober.drain.join(timeout=DRAIN_SECONDS)
        seconds = time.monotonic() - started
        log("eval: probe passed on %d windows (%d spliced, %d copies; largest difference %.2g) in %.1f s total" % (
            plan.windows, plan.kinds["spliced"], plan.kinds["copy"], worst, seconds))
        return {
            "val_bpb": val_bpb,
            "eval_seconds": round(seconds, 1),
            "probe_windows": plan.windows,
            "probe_max_difference": round(worst, 6),
        }
    finally:
        for process in (model, prober):
            if process is not None:
                process.finish(0)
        log_file.flush()


# --------------------------------------------------------------------------- result output


def build_result(base: dict, status: str, reason: str, stage: str, exit_code, log_tail: str,
                 summary=None, duration=None) -> dict:
    summary = summary or {}
    val_bpb = summary.get("val_bpb")
    result = {
        "status": status,
        "val_bpb": val_bpb if _is_number(val_bpb) and math.isfinite(val_bpb) else None,
    }
    for key, value in summary.items():
        if key == "val_bpb":
            continue
        name = "summary_" + key if key in RESERVED_KEYS else key
        result[name] = _json_value(value)
    result.update(
        {
            "exit_code": exit_code,
            "reason": reason,
            "stage": stage,
            "run_id": base.get("run_id"),
            "commit": base.get("commit"),
            "duration_seconds": None if duration is None else round(duration, 3),
            "harness_version": HARNESS_VERSION,
            "log_tail": log_tail,
        }
    )
    return result


def to_json(result: dict) -> str:
    return json.dumps(result, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def fit_json(result: dict, limit: int) -> str:
    """The result as JSON of at most `limit` bytes: log_tail is cut first."""
    text = to_json(result)
    if len(text) <= limit:
        return text
    trimmed = dict(result)
    tail = trimmed.get("log_tail") or ""
    low, high = 0, len(tail)
    while low < high:
        middle = (low + high + 1) // 2
        trimmed["log_tail"] = tail[len(tail) - middle:]
        if len(to_json(trimmed)) <= limit:
            low = middle
        else:
            high = middle - 1
    trimmed["log_tail"] = tail[len(tail) - low:]
    text = to_json(trimmed)
    if len(text) <= limit:
        return text
    minimal = {key: trimmed.get(key) for key in CORE_KEYS}
    minimal["log_tail"] = ""
    minimal["reason"] = _shorten(str(minimal.get("reason") or ""), 200)
    minimal["harness_version"] = HARNESS_VERSION
    for key in ("run_id", "commit"):
        if len(to_json(minimal)) > limit and isinstance(minimal.get(key), str):
            minimal[key] = minimal[key][:64]
    return to_json(minimal)


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".result-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def emit(result: dict, args) -> bool:
    """Write the result everywhere it is wanted; False if a file failed."""
    text = to_json(result)
    written = True
    if args.result:
        try:
            write_atomically(args.result, text)
        except OSError as error:
            log("cannot write the result to %s: %s" % (args.result, error))
            written = False
    if args.termination_log:
        try:
            with open(args.termination_log, "w") as out:
                out.write(fit_json(result, TERMINATION_LOG_MAX_BYTES))
        except OSError as error:
            log("cannot write the termination log %s: %s" % (args.termination_log, error))
            written = False
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as error:
        # stdout is a file on the same full disk (the local runner's harness.log): the exit
        # code is all that is left to say it.
        log("cannot write the result to stdout: %s" % error)
        written = False
        try:  # what is left in stdout's buffer is dropped, not retried (and failed) at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
    return written


# --------------------------------------------------------------------------- the run


def python_shim_dir(args, scratch: str):
    """With --python, the folder of this run's python3/python shims (made here); else None."""
    if not args.python:
        return None
    folder = os.path.join(scratch, "bin")
    _python_shims(args.python, folder)
    return folder


def _python_shims(interpreter: str, folder: str) -> None:
    """`python3` and `python` in `folder` run `interpreter`.

    Small exec scripts rather than symlinks: a virtual environment's python
    reached through a symlink outside the environment loses its packages."""
    os.makedirs(folder, exist_ok=True)
    script = "#!/bin/sh\nexec %s \"$@\"\n" % shlex.quote(interpreter)
    for name in ("python3", "python"):
        path = os.path.join(folder, name)
        with open(path, "w") as out:
            out.write(script)
        os.chmod(path, 0o755)


def child_environment(args, data_dir: str, shim_dir) -> dict:
    """The environment of an unsandboxed command: the harness's, less what is private to the run."""
    env = {name: value for name, value in os.environ.items() if name not in PRIVATE_ENV}
    env["AUTORESEARCH_TIME_BUDGET"] = _fmt_seconds(args.budget)
    env["AUTORESEARCH_DATA_DIR"] = data_dir
    if args.seed is not None:
        env["AUTORESEARCH_SEED"] = str(args.seed)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not any(env.get(name) for name in ("LOGNAME", "USER", "LNAME", "USERNAME")) and not _uid_has_name():
        env["USER"] = env["LOGNAME"] = SANDBOX_USER  # as in the sandbox: getpass.getuser() must answer
    if shim_dir:
        env["PATH"] = shim_dir + os.pathsep + env.get("PATH", os.defpath)
    return env


def _uid_has_name() -> bool:
    """Whether this uid has an entry in the user database (a pod under an arbitrary uid has none)."""
    try:
        pwd.getpwuid(os.getuid())
        return True
    except KeyError:
        return False


TOKEN_MAX_BYTES = 8192


def read_token(args):
    """The download token: from standard input (--token-stdin, the local runner's pipe: it is
    never on disk) or a file (--token-file, a Kubernetes Secret mounted into the fetch step
    only). Held in memory for the fetch and dropped after it."""
    if args.token_stdin:
        try:
            data = sys.stdin.buffer.read(TOKEN_MAX_BYTES)
        except (OSError, ValueError) as error:
            raise StageError("fetch", "cannot read the token from standard input: %s" % error)
        finally:
            try:
                sys.stdin.close()
            except (OSError, ValueError):
                pass
        token = data.decode("utf-8", "replace").strip()
        return token or None
    if not args.token_file:
        return None
    try:
        with open(args.token_file) as handle:
            token = handle.read(TOKEN_MAX_BYTES).strip()
    except OSError as error:
        raise StageError("fetch", "cannot read the token file %s: %s" % (args.token_file, error.strerror or error))
    return token or None


def _resolve_workdir(root: str, workdir: str) -> str:
    real_root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(real_root, workdir))
    if not _inside(path, real_root):
        raise StageError("fetch", "workdir %r is outside the repository" % workdir)
    if not os.path.isdir(path):
        raise StageError("fetch", "workdir %r does not exist in the repository" % workdir)
    return path


def data_folders(args, trusted_workdir: str, scratch: str):
    """(data folder, held-out folder or None) of this run: <cache>/data-<key16> keyed by the
    trusted tree's prepare files, or an empty folder of the run's own when nothing is prepared
    (a shared one would let one experiment leave files for the next). With outside evaluation
    the held-out data go beside the data (<data>.eval), or under --heldout-root, and are never
    shown to the training or the model."""
    outside = bool(args.score_cmd)
    if args.prepare_cmd:
        cache_dir = os.path.abspath(os.path.expanduser(args.cache_dir))
        if not args.prepared_only:
            os.makedirs(cache_dir, exist_ok=True)
        key = prepare_key(trusted_workdir, args.prepare_files, args.prepare_cmd, os.environ, outside)
        data_dir = os.path.join(cache_dir, "data-" + key[:16])
    else:
        data_dir = os.path.join(scratch, "data")
        os.makedirs(data_dir, exist_ok=True)
    if not outside:
        return data_dir, None
    if args.heldout_root:
        heldout_dir = os.path.join(os.path.abspath(args.heldout_root), os.path.basename(data_dir) + ".eval")
    else:
        heldout_dir = data_dir + ".eval"
    if not args.prepare_cmd:
        os.makedirs(heldout_dir, exist_ok=True)
    return data_dir, heldout_dir


def _open_fifo_writer(path: str, wait) -> int:
    """The write end of a FIFO once its reader is there; `wait()` runs between tries and raises
    to give up (a deadline, a signal, the other side's failure)."""
    while True:
        try:
            return _open_fifo(path, os.O_WRONLY)
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        wait()


def _open_fifo(path: str, flags: int) -> int:
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise StageError("eval", "%s is not a FIFO" % path)
    return fd


def serve_only(args, scratch: str) -> int:
    """--serve-only DIR: the model container of a Kubernetes evaluation pod. Unpacks the
    experiment's tree and runs --serve-cmd with its stdin and stdout on the FIFOs that the
    evaluation's trusted container (--score-only or --probe-only) makes in DIR, with the
    training's output (--output-dir, mounted read-only) and the prepared data; no held-out data.
    Its exit code is the model's; the trusted container writes the result."""
    deadline = time.monotonic() + args.score_timeout
    try:
        root, _ = fetch_repository(args, None, scratch)
        trusted_root = fetch_repository(args, None, scratch, trusted=True)[0] if args.eval_repo else root
        workdir = _resolve_workdir(root, args.workdir)
        data_dir, _ = data_folders(args, _resolve_workdir(trusted_root, args.workdir), scratch)
    except StageError as error:
        # Say so to the trusted side at once, rather than let it wait for a model until its timeout.
        log("serve: %s" % error.reason)
        try:
            os.makedirs(args.serve_only, exist_ok=True)
            with open(os.path.join(args.serve_only, FIFO_FAILED), "w") as out:
                out.write(error.reason[:REASON_MAX_CHARS])
        except OSError:
            pass
        return EXIT_INFRASTRUCTURE
    shim_dir = python_shim_dir(args, scratch)
    env = stage_environment(args, None, data_dir, shim_dir, output=os.path.abspath(args.output_dir or
                                                                                     os.path.join(scratch, "output")))
    return _serve_on_fifos(args, env, workdir, deadline)


def _serve_on_fifos(args, env: dict, workdir: str, deadline: float) -> int:
    """Connect to the trusted side's FIFOs, then run the model on them until it exits, the trusted
    side says it is done (plus a grace period), or the deadline."""
    request_path, answer_path = (os.path.join(args.serve_only, name) for name in FIFO_NAMES)
    request = answer = None

    def wait(what: str) -> None:
        if _Signals.received is not None:
            raise HarnessInterrupted(_Signals.received)
        if time.monotonic() > deadline:
            raise StageError("eval", "the evaluation's trusted container never %s" % what)
        time.sleep(0.1)

    try:
        while not (os.path.exists(request_path) and os.path.exists(answer_path)):
            wait("made its FIFOs in %s" % args.serve_only)
        request = _open_fifo(request_path, os.O_RDONLY)
        answer = _open_fifo_writer(answer_path, lambda: wait("opened %s" % answer_path))
        # A FIFO whose writer has not come yet reads as empty: the model starts with the first request.
        while not select.select([request], [], [], 0.5)[0]:
            wait("sent a request")
        os.set_blocking(request, True)
        os.set_blocking(answer, True)
        log("serve: %r in %s, answering on %s" % (args.serve_cmd, workdir, args.serve_only))
        proc = subprocess.Popen(["/bin/sh", "-c", args.serve_cmd], cwd=workdir, env=env, stdin=request, stdout=answer,
                                start_new_session=True, close_fds=True, preexec_fn=_make_death_signal_setup())
        os.close(request)
        os.close(answer)
        request = answer = None
        done = os.path.join(args.serve_only, FIFO_DONE)
        stopped = None  # when the trusted side said it is done
        code = None
        while code is None:
            try:
                code = proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if stopped is None and os.path.exists(done):
                    stopped = now
                if now > deadline or (stopped is not None and now - stopped > KILL_GRACE_SECONDS):
                    log("serve: stopping the model process (%s)" % ("the evaluation is done" if stopped else "timeout"))
                    _killpg(proc.pid, signal.SIGKILL)
                    code = proc.wait()
        _killpg(proc.pid, signal.SIGKILL)
        log("serve: the model process exited with %s" % code)
        return EXIT_OK if code == 0 or stopped is not None else EXIT_EXPERIMENT_FAILED
    finally:
        for fd in (request, answer):
            if fd is not None:
                os.close(fd)


def evaluation_step(args, scratch: str) -> int:
    """--score-only DIR or --probe-only DIR: the trusted container of a Kubernetes evaluation pod.
    Scoring runs the trusted tree's scorer (the held-out data read-only) against the model that
    --serve-only serves through the FIFOs in DIR, and saves the probe plan (--probe-plan); the
    probe, in a later pod with a fresh model, checks the model's answers against that plan. One
    result either way (stage eval), with val_bpb or the probe's figures."""
    base = {"run_id": args.run_id, "commit": args.commit}
    started = time.monotonic()
    deadline = started + args.score_timeout
    rng = random.Random(int.from_bytes(os.urandom(16), "big"))
    tail = ""
    stage = "eval"
    log_file = open(os.path.join(scratch, "eval.log"), "w+b")
    model = None
    try:
        if args.probe_only:
            plan, vocab = ProbePlan.load(args.probe_plan, rng)
            model = _FifoModel(args.probe_only, deadline)
            log("probe: %d windows against a fresh model process" % plan.windows)
            worst = run_probe(plan, model, deadline, vocab)
            summary = {"probe_windows": plan.windows, "probe_max_difference": round(worst, 6)}
            reason = "the causality probe passed on %d windows (largest difference %.2g)" % (plan.windows, worst)
        else:
            trusted_root, _ = fetch_repository(args, None, scratch, trusted=True)
            trusted_workdir = _resolve_workdir(trusted_root, args.workdir)
            data_dir, heldout_dir = data_folders(args, trusted_workdir, scratch)
            if args.prepare_cmd:
                problem = check_prepared(data_dir, heldout_dir)
                if problem:
                    raise StageError("prepare", _shorten("the prepared data in %s cannot be used: %s; the fetch step "
                                                         "prepares it again on the next attempt" % (data_dir, problem)))
            shim_dir = python_shim_dir(args, scratch)
            argv, cwd, env, fds = scorer_command(args, None, trusted_workdir, data_dir, heldout_dir, shim_dir, scratch)
            try:
                model = _FifoModel(args.score_only, deadline)
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            plan = ProbePlan(rng)
            val_bpb, vocab, requests = run_scorer(args, argv, cwd, env, model, plan, log_file, scratch, deadline, fds)
            plan.save(args.probe_plan, vocab)
            summary = {"val_bpb": val_bpb}
            reason = "val_bpb %.6f scored from %d batches; the causality probe follows" % (val_bpb, requests)
        summary["eval_seconds"] = round(time.monotonic() - started, 1)
        status, exit_code = "ok", EXIT_OK
    except EvaluationFailed as failed:
        status, reason, tail, summary, exit_code = failed.status, failed.reason, failed.log_tail, {}, EXIT_EXPERIMENT_FAILED
    except StageError as error:
        status, reason, tail, summary, exit_code = "crash", error.reason, error.log_tail, {}, EXIT_INFRASTRUCTURE
        stage = error.stage
    finally:
        if model is not None:
            model.finish(0)
        log_file.close()
    result = build_result(base, status, reason, stage, None, tail, summary)
    result["evaluation"] = "probe" if args.probe_only and status == "ok" else "outside"
    result["sandbox"] = args.sandbox
    log("result: %s (%s)" % (status, reason))
    if not emit(result, args):
        return EXIT_INFRASTRUCTURE
    return exit_code


def execute(args) -> int:
    base = {"run_id": args.run_id, "commit": args.commit}
    stage = "fetch"
    outside = bool(args.score_cmd)
    safe_commit = re.sub(r"[^A-Za-z0-9._-]", "", args.commit or "")[:12]
    scratch = tempfile.mkdtemp(prefix="autoresearch-run-%s" % (safe_commit + "-" if safe_commit else ""))
    log_file = None
    monitor = None
    started = None
    notes = []
    exit_code = EXIT_INFRASTRUCTURE
    try:
        try:
            token = read_token(args)
            if args.fetch_only:
                return fetch_only(args, token, scratch)
            if args.serve_only:
                return serve_only(args, scratch)
            if args.score_only or args.probe_only:
                return evaluation_step(args, scratch)
            root, base["commit"] = fetch_repository(args, token, scratch)
            trusted_root = None
            if outside:
                # The evaluation code, and the data preparation, come from the trusted tree (the
                # default branch): an experiment's edits to them are never what measures it.
                trusted_root, _ = fetch_repository(args, token, scratch, trusted=True)
            token = None  # only the fetch needed it
            workdir = _resolve_workdir(root, args.workdir)
            trusted_workdir = _resolve_workdir(trusted_root, args.workdir) if outside else workdir

            stage = "prepare"
            shim_dir = python_shim_dir(args, scratch)
            sandbox = make_sandbox(args, root, shim_dir)
            trusted_sandbox = sandbox.for_tree(trusted_root) if sandbox and outside else sandbox
            if args.sandbox == "none":
                notes.append("not sandboxed: the commands ran with the harness's own view of the machine")
            data_dir, heldout_dir = data_folders(args, trusted_workdir, scratch)
            if args.score_later:
                heldout_dir = None  # scored by a later step: this one never sees the held-out data
            log_path = args.log or os.path.join(scratch, "train.log")
            if args.log:
                os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            log_file = open(log_path, "wb")
            if args.prepare_cmd:
                env = stage_environment(args, trusted_sandbox, data_dir, shim_dir, heldout=heldout_dir,
                                        network=args.prepare_network == "on")
                note = prepare_data(args, trusted_workdir, env, log_file, data_dir, trusted_sandbox, heldout_dir)
                if note:
                    notes.append(note)
            if args.prepare_only:
                log("prepare: data ready in %s" % data_dir)
                return EXIT_OK

            stage = "train"
            log("train: running %r in %s (budget %s s, timeout %s s, %s)" % (
                args.train_cmd, workdir, _fmt_seconds(args.budget), _fmt_seconds(args.timeout),
                "sandboxed" if sandbox else "sandbox %s" % args.sandbox))
            log_file.write(("==> [harness] train: %s\n" % args.train_cmd).encode("utf-8", "replace"))
            output_dir = None
            if outside:
                output_dir = os.path.abspath(args.output_dir) if args.output_dir else os.path.join(scratch, "output")
                os.makedirs(output_dir, exist_ok=True)
            env = stage_environment(args, sandbox, data_dir, shim_dir, output=output_dir)
            if sandbox:
                binds = [(output_dir, SANDBOX_OUTPUT, True)] if output_dir else []
                argv = sandbox.argv(args.train_cmd, workdir, data_dir, env, network=False, data_writable=False,
                                    binds=binds)
                cwd = scratch
            else:
                argv, cwd = ["/bin/sh", "-c", args.train_cmd], workdir
            monitor = OutputMonitor()
            started = time.monotonic()
            outcome = run_command(argv, cwd, env, args.timeout, log_file, monitor, "train", args.heartbeat)
            reported = monitor.summary.pop("val_bpb", None) if outside else None
            status, reason = classify(outcome.exit_code, outcome.timed_out, args.timeout, monitor,
                                      outcome.duration, args.budget, args.eval_allowance, outside,
                                      offline=args.sandbox != "none")
            summary = dict(monitor.summary)
            stage = "train"
            tail = monitor.tail()
            if outside and status == "ok" and args.score_later:
                reason = "trained%s; val_bpb is measured outside the experiment by the evaluation step" % (
                    (" for %s s" % _fmt_seconds(summary["training_seconds"]))
                    if _is_number(summary.get("training_seconds")) else "")
            elif outside and status == "ok":
                stage = "eval"
                try:
                    measured = evaluate_outside(args, sandbox, trusted_sandbox, workdir, trusted_workdir, data_dir,
                                                heldout_dir, output_dir, shim_dir, log_file, scratch)
                    summary.update(measured)
                    stage = "train"
                    reason = "val_bpb %.6f measured outside the experiment%s" % (
                        measured["val_bpb"], (" after %s s of training" % _fmt_seconds(summary["training_seconds"]))
                        if _is_number(summary.get("training_seconds")) else "")
                except EvaluationFailed as failed:
                    status, reason = failed.status, failed.reason
                    tail = failed.log_tail or tail
            if _is_number(reported):
                summary["reported_val_bpb"] = reported
            result = build_result(base, status, reason, stage, outcome.exit_code, tail, summary, outcome.duration)
            result["evaluation"] = ("pending" if args.score_later and status == "ok" else "outside") if outside \
                else "self_reported"
            exit_code = EXIT_OK if status == "ok" else EXIT_EXPERIMENT_FAILED
        except StageError as error:
            result = build_result(base, "crash", error.reason, error.stage, error.exit_code, error.log_tail)
        except HarnessInterrupted as interrupted:
            _Signals.raise_in_handler = False
            tail = monitor.tail() if monitor is not None else ""
            duration = time.monotonic() - started if started is not None else None
            result = build_result(base, "crash", "harness interrupted by %s" % _signal_name(interrupted.signum),
                                  stage, None, tail, monitor.summary if monitor else None, duration)
        except Exception as error:  # a bug or an unexpected environment: still report
            _Signals.raise_in_handler = False
            tail = monitor.tail() if monitor is not None else ""
            if no_space(error):
                # Not the experiment's failure: the machine's. Measured again once there is room.
                result = build_result(base, "crash", disk_full_reason(error, args.log or args.result or scratch),
                                      stage, None, tail)
                result["infrastructure"] = True
            else:
                traceback.print_exc(file=sys.stderr)
                result = build_result(base, "crash", _shorten("harness error: %s: %s" % (type(error).__name__, error)),
                                      stage, None, tail)
    finally:
        _Signals.raise_in_handler = False
        if log_file is not None:
            try:
                log_file.close()
            except OSError as error:  # what was left in its buffer did not fit on the disk
                log("cannot write the log %s: %s" % (log_file.name, error))
        shutil.rmtree(scratch, ignore_errors=True)
    result["sandbox"] = args.sandbox
    result["notes"] = notes
    if result.get("stage") in ("train", "eval"):
        result["hardware"] = describe_hardware()
    log("result: %s (%s)" % (result["status"], result["reason"]))
    if not emit(result, args):
        return EXIT_INFRASTRUCTURE
    return exit_code


def describe_hardware() -> str:
    """What the run trained on, as the harness sees it from outside the experiment: the GPUs'
    names (nvidia-smi), else the CPU model and how many CPUs the run may use. Noise is only
    comparable between runs on the same hardware."""
    nvidia = shutil.which("nvidia-smi")
    if nvidia:
        try:
            proc = subprocess.run([nvidia, "--query-gpu=name", "--format=csv,noheader"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20, universal_newlines=True)
            names = [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if names and visible is not None and visible.strip() != "":
                wanted = [int(i) for i in visible.split(",") if i.strip().isdigit()]
                if wanted:
                    names = [names[i] for i in wanted if i < len(names)] or names
            if names:
                return ("%d x %s" % (len(names), names[0])) if len(set(names)) == 1 else ", ".join(names)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    model = " ".join(line.split(":", 1)[1].split())
                    break
    except OSError:
        model = platform.processor() or platform.machine() or model
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return "%s, %d CPUs" % (model, cpus)


# --------------------------------------------------------------------------- command line


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "autoresearch-bot")


EPILOG = """\
result (last line of stdout, and --result / --termination-log):
  one JSON object: status (ok|crash|oom|timeout|nan|over_budget), val_bpb (number|null),
  every other summary field (training_seconds, total_seconds, peak_vram_mb,
  mfu_percent, total_tokens_M, num_steps, num_params_M, depth, extra keys),
  exit_code, reason, stage (fetch|prepare|train|eval), run_id, commit,
  duration_seconds, harness_version, log_tail, sandbox (none|bwrap|container),
  notes (what the harness did that a reader should know, e.g. data prepared
  again because its content changed), evaluation (outside|self_reported),
  infrastructure (true when the disk filled up: not the experiment's failure).

environment of the commands:
  AUTORESEARCH_TIME_BUDGET  the --budget in seconds
  AUTORESEARCH_DATA_DIR     <cache-dir>/data-<key16>, prepared once per key and
                            verified by its content hash before each run
                            (/data in the bwrap sandbox; ~/.cache is the same folder)
  AUTORESEARCH_EVAL_DIR     with --score-cmd, prepare and the scorer only: the
                            held-out data (<data dir>.eval; /eval in the sandbox)
  AUTORESEARCH_OUTPUT_DIR   with --score-cmd, training (writable) and the model
                            process (read-only): where the weights go (/output)
  AUTORESEARCH_MODEL_FDS    the scorer only: "read,write" fds to the model

exit codes:
  0  result written, status ok
  1  result written, the experiment failed (crash, oom, timeout, nan or over_budget)
  2  usage error (no result)
  3  infrastructure failure (fetch or prepare failed, harness interrupted,
     disk full or harness error); result written with stage, or, when the
     result itself could not be written (a full disk), none; a retry may help
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness.py",
        description="Run one autoresearch experiment (fetch, prepare, train) and print one JSON result.",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add("--repo", metavar="PATH|URL",
        help="research repository: a local folder (used in place), a local git repository with --commit, "
             "or an http(s) URL of a .tar.gz (e.g. GitHub's /repos/OWNER/REPO/tarball/SHA) "
             "(required unless --parse-log)")
    add("--commit", metavar="SHA",
        help="commit to run: exported from a local git repository with git archive; informative for a "
             "tarball or a plain folder (default: none, the folder as it is)")
    add("--token-file", metavar="FILE",
        help="file holding a token sent as 'Authorization: Bearer' when downloading; never logged and "
             "never passed to the commands (default: none)")
    add("--token-stdin", action="store_true",
        help="read that token from standard input instead (a pipe: it is never written to disk)")
    add("--workdir", metavar="DIR", default=".",
        help="folder inside the repository where the commands run (default: .)")
    add("--train-cmd", metavar="CMD", default="python3 train.py",
        help="training command, run with /bin/sh -c (default: python3 train.py)")
    add("--prepare-cmd", metavar="CMD", default=None,
        help="data preparation command, run once per cache key (default: none)")
    add("--prepare-files", metavar="GLOB", action="append", default=None,
        help="files (relative to the workdir) whose contents key the prepared data; repeatable "
             "(default: prepare.py)")
    add("--prepare-timeout", metavar="SECONDS", type=float, default=3600.0,
        help="hard timeout of the prepare command (default: 3600)")
    add("--python", metavar="INTERP",
        help="interpreter that 'python3' and 'python' mean inside the commands (default: none, PATH as is)")
    add("--cache-dir", metavar="DIR", default=None,
        help="where prepared data are cached (default: $XDG_CACHE_HOME/autoresearch-bot or "
             "~/.cache/autoresearch-bot)")
    add("--budget", metavar="SECONDS", type=float, default=300.0,
        help="training time budget, given to the commands as AUTORESEARCH_TIME_BUDGET (default: 300)")
    add("--seed", metavar="N", type=int, default=None,
        help="given to the commands as AUTORESEARCH_SEED (repeated runs of one tree get different seeds; "
             "the template's train.py reads it) (default: none)")
    add("--eval-allowance", metavar="SECONDS", type=float, default=120.0,
        help="wall-clock time the training command may take beyond the budget (start-up, compilation, "
             "evaluation); a run past it, or one that reports more training than the budget (plus 2%% + 2 s "
             "for its last step) or than its wall time, is over_budget, not ok (default: 120)")
    add("--timeout", metavar="SECONDS", type=float, default=None,
        help="hard timeout of the training command; its whole process group is killed "
             "(default: 2 x budget + 120)")
    add("--result", metavar="FILE",
        help="also write the JSON result to FILE, atomically (default: none; stdout only)")
    add("--termination-log", metavar="FILE",
        help="also write the JSON result cut to 4096 bytes, e.g. /dev/termination-log (default: none)")
    add("--log", metavar="FILE",
        help="write the full output of the commands to FILE (default: a temporary file, removed)")
    add("--run-id", metavar="ID", help="run id echoed into the result (default: none)")
    add("--heartbeat", metavar="SECONDS", type=float, default=10.0,
        help="print a progress line to stderr this often; 0 turns it off (default: 10)")
    add("--sandbox", choices=("none", "bwrap", "container"), default="none",
        help="isolation of the prepare and train commands: bwrap (bubblewrap: no network while training, "
             "a read-only system, only the run's own tree writable, prepared data read-only, a PID "
             "namespace that dies with the run); container (the caller isolates, e.g. a Kubernetes "
             "pod); none (default: none)")
    add("--bwrap", metavar="PATH", default="bwrap", help="the bubblewrap executable (default: bwrap)")
    add("--sandbox-ro", metavar="PATH", action="append", default=None,
        help="a further folder the sandboxed commands may read (repeatable; the --python interpreter's "
             "prefixes, LD_LIBRARY_PATH's folders and a local AUTORESEARCH_CORPUS are added) (default: none)")
    add("--private", metavar="PATH", action="append", default=None,
        help="a folder of the runner's that no sandboxed command may see (its working folder with its "
             "configuration, its runs, the data of every repository): a --sandbox-ro or interpreter folder "
             "that holds it is not shown, and inside a system folder it is hidden under an empty one; the "
             "harness's working folder always counts (repeatable) (default: none)")
    add("--prepare-network", choices=("on", "off"), default="on",
        help="whether the sandboxed prepare command has network (training never has) (default: on)")
    add("--score-cmd", metavar="CMD", default=None,
        help="outside evaluation: the scorer, run in the trusted tree (--eval-repo at --eval-commit) after "
             "training, sandboxed with the held-out data (AUTORESEARCH_EVAL_DIR) read-only; it sends the "
             "validation inputs to the model on the fds in AUTORESEARCH_MODEL_FDS and prints val_bpb. "
             "The training's own val_bpb is then ignored (kept as reported_val_bpb) (default: none: val_bpb "
             "is what the training printed, self-reported)")
    add("--serve-cmd", metavar="CMD", default=None,
        help="with --score-cmd: the experiment's model process, run in the experiment's tree with the "
             "training's output (AUTORESEARCH_OUTPUT_DIR) read-only; it answers request frames on stdin "
             "with logits on stdout (required with --score-cmd)")
    add("--eval-repo", metavar="PATH|URL", default=None,
        help="with --score-cmd: where the trusted tree comes from, like --repo (default: --repo)")
    add("--eval-commit", metavar="SHA", default=None,
        help="with --score-cmd: the commit of the trusted tree, e.g. the experiment's base on the default "
             "branch; prepare and the scorer run there (default: none: the --eval-repo folder as it is)")
    add("--score-timeout", metavar="SECONDS", type=float, default=900.0,
        help="with --score-cmd: hard timeout of the evaluation (scoring and the causality probe) (default: 900)")
    add("--heldout-root", metavar="DIR", default=None,
        help="with --score-cmd: where the held-out data go (DIR/data-<key16>.eval), e.g. a volume only the "
             "preparation and the scorer mount (default: beside the prepared data)")
    add("--output-dir", metavar="DIR", default=None,
        help="with --score-cmd: the folder the training saves its weights in (AUTORESEARCH_OUTPUT_DIR), and the "
             "model process reads (default: a scratch folder of the run)")
    add("--score-later", action="store_true",
        help="with --score-cmd and --output-dir: train only; a run that trained within its budget reports status ok "
             "with evaluation 'pending' and val_bpb null, for --score-only and --probe-only to measure "
             "(a Kubernetes trainer) (default: off)")
    add("--score-only", metavar="DIR",
        help="evaluate only: run --score-cmd in the trusted tree against the model that --serve-only serves "
             "through the FIFOs this step makes in DIR (another container of the pod), and save the probe plan "
             "to --probe-plan; the result has val_bpb (default: none)")
    add("--probe-only", metavar="DIR",
        help="probe only: check a fresh model, served by --serve-only through FIFOs in DIR, against "
             "--probe-plan; the result has the probe's figures (default: none)")
    add("--serve-only", metavar="DIR",
        help="serve only: run --serve-cmd in the experiment's tree with its stdin and stdout on the FIFOs a "
             "--score-only or --probe-only step makes in DIR (default: none)")
    add("--probe-plan", metavar="FILE", default=None,
        help="with --score-only (written) or --probe-only (read): the probe windows and the answers they must "
             "agree with; keep it where the model cannot read it (default: none)")
    add("--prune-root", metavar="DIR", default=None,
        help="with --fetch-only and --prune-after: the folder whose old subfolders are removed "
             "(default: the parent of the --fetch-only DIR)")
    add("--prepare-only", action="store_true",
        help="fetch and prepare the data, then exit 0 without training (default: off)")
    add("--prepared-only", action="store_true",
        help="never run the prepare command: the data must be prepared already and unchanged "
             "(read-only data, e.g. a Kubernetes trainer); otherwise exit 3 at stage prepare (default: off)")
    add("--max-archive-bytes", metavar="BYTES", type=int, default=256 << 20,
        help="largest repository archive accepted, downloaded or local (default: 268435456)")
    add("--max-source-files", metavar="N", type=int, default=50000,
        help="most entries in the repository tree (default: 50000)")
    add("--max-source-bytes", metavar="BYTES", type=int, default=2 << 30,
        help="most bytes of file content in the repository tree (default: 2147483648)")
    add("--prune-after", metavar="SECONDS", type=float, default=0.0,
        help="with --fetch-only: remove folders beside DIR not modified for this long (default: 0, never)")
    add("--fetch-only", metavar="DIR",
        help="only fetch the repository at --commit and leave it as DIR/source.tar, then exit 0 (a "
             "Kubernetes init container that holds the read token while no other container holds one); "
             "a failure writes a fetch-stage result and exits 3 (default: none)")
    add("--parse-log", metavar="FILE",
        help="only parse the summary block of a log file ('-' for stdin), print it as JSON and exit "
             "(default: none)")
    add("--sandbox-probe", action="store_true",
        help="only run the --python interpreter where a training command runs (in the --sandbox, without "
             "network, on an empty tree) and print as JSON what it finds there of PyTorch and CUDA; exit 0 "
             "when the probe ran, 3 when the sandbox could not be made")
    add("--version", action="version", version="%(prog)s " + HARNESS_VERSION)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.parse_log or args.sandbox_probe:
        if args.python:
            found = shutil.which(args.python) if os.sep not in args.python else args.python
            if not found or not (os.path.isfile(found) and os.access(found, os.X_OK)):
                parser.error("--python %s is not an executable interpreter" % args.python)
            args.python = os.path.abspath(found)
        return args
    if not args.repo and not args.probe_only:
        parser.error("--repo is required")
    if not args.train_cmd.strip():
        parser.error("--train-cmd must not be empty")
    if args.prepare_cmd is not None and not args.prepare_cmd.strip():
        args.prepare_cmd = None
    if not (math.isfinite(args.eval_allowance) and args.eval_allowance >= 0):
        parser.error("--eval-allowance must be a number of seconds, 0 or more")
    for name in ("budget", "prepare_timeout", "timeout"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error("--%s must be a positive number of seconds" % name.replace("_", "-"))
    if args.heartbeat < 0:
        parser.error("--heartbeat must not be negative")
    if args.token_stdin and args.token_file:
        parser.error("--token-stdin and --token-file exclude each other")
    if args.score_cmd is not None and not args.score_cmd.strip():
        args.score_cmd = None
    if args.score_cmd and not (args.serve_cmd or "").strip():
        parser.error("--score-cmd needs --serve-cmd (the command that serves the trained model)")
    if not (math.isfinite(args.score_timeout) and args.score_timeout > 0):
        parser.error("--score-timeout must be a positive number of seconds")
    if args.prepare_only and args.prepared_only:
        parser.error("--prepare-only and --prepared-only exclude each other")
    steps = [name for name in ("fetch_only", "prepare_only", "score_later", "score_only", "probe_only", "serve_only")
             if getattr(args, name)]
    if len(steps) > 1:
        parser.error("--%s and --%s exclude each other" % tuple(n.replace("_", "-") for n in steps[:2]))
    if (args.score_later or args.score_only or args.serve_only) and not args.score_cmd:
        parser.error("--%s needs --score-cmd and --serve-cmd" % steps[0].replace("_", "-"))
    if args.score_later and not args.output_dir:
        parser.error("--score-later needs --output-dir (where the evaluation step finds the weights)")
    if args.score_later and args.prepare_cmd and not args.prepared_only:
        parser.error("--score-later needs --prepared-only (the data and the held-out data are prepared by another step)")
    if (args.score_only or args.probe_only) and not args.probe_plan:
        parser.error("--%s needs --probe-plan" % steps[0].replace("_", "-"))
    for name in ("max_archive_bytes", "max_source_files", "max_source_bytes"):
        if getattr(args, name) < 0:
            parser.error("--%s must not be negative" % name.replace("_", "-"))
    if args.timeout is None:
        args.timeout = 2 * args.budget + 120
    if os.path.isabs(args.workdir):
        parser.error("--workdir must be relative to the repository")
    if not args.prepare_files:
        args.prepare_files = ["prepare.py"]
    if args.cache_dir is None:
        args.cache_dir = default_cache_dir()
    if args.python:
        found = shutil.which(args.python) if os.sep not in args.python else args.python
        if not found or not (os.path.isfile(found) and os.access(found, os.X_OK)):
            parser.error("--python %s is not an executable interpreter" % args.python)
        args.python = os.path.abspath(found)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.parse_log:
        try:
            summary = _parse_summary_file(args.parse_log)
        except OSError as error:
            log("cannot read %s: %s" % (args.parse_log, error.strerror or error))
            return EXIT_USAGE
        sys.stdout.write(json.dumps({key: _json_value(value) for key, value in summary.items()}) + "\n")
        return EXIT_OK
    if args.sandbox_probe:
        return sandbox_probe(args)
    _install_signal_handlers()
    return execute(args)


if __name__ == "__main__":
    sys.exit(main())

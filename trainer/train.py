"""Train a small byte-level GPT for a fixed wall-clock budget and report val_bpb.

This is the file experiments change. Data, tokenization (bytes) and the evaluation are
fixed in prepare.py. The run trains for TIME_BUDGET seconds of training-loop wall clock
(env AUTORESEARCH_TIME_BUDGET, default 300), evaluates with prepare.evaluate_bpb and
prints the summary block the harness parses. Run by the bot (env AUTORESEARCH_OUTPUT_DIR set),
it saves its weights there instead of evaluating itself, and `python3 train.py serve` answers
the evaluation's requests for logits from outside (see README.md, "Outside evaluation").

Runs on CUDA with PyTorch 2.x (scaled_dot_product_attention, bf16 autocast, torch.compile)
and on the CPU with PyTorch 1.13 or later (manual attention and RMSNorm).

The defaults are sized for a small CPU: about 0.27M parameters, so that a 30 s run on 2
cores takes a few hundred steps and ends far below the unigram entropy of the data (~3.0
bits per byte against ~4.4). They run unchanged on a GPU (the same experiment means the
same thing everywhere), just far from saturating it. To use a GPU for real, scale up
together, for example DEPTH = 8, WIDTH = 512, HEADS = 8, BATCH_SIZE = 64 and
LEARNING_RATE = 3e-3 (about 25M parameters), and mind that the Brown corpus is only ~6 MB:
a large model sees it many times within a 300 s run, so raise WEIGHT_DECAY or DROPOUT, or
prepare a larger corpus.
"""

import time

T_START = time.time()  # total_seconds counts from here: torch import and setup included

# ----------------------------------------------------------------------------- hyperparameters
# Plain `NAME = number` lines: these are what experiments edit.

DEPTH = 2  # number of transformer blocks
WIDTH = 96  # model (residual stream) width
HEADS = 2  # attention heads; WIDTH must be divisible by HEADS
MLP_RATIO = 4  # MLP hidden width = MLP_RATIO * WIDTH
SEQ_LEN = 256  # training sequence length in bytes (at most prepare.MAX_SEQ_LEN)
BATCH_SIZE = 8  # sequences per optimizer step
LEARNING_RATE = 1e-2  # peak AdamW learning rate
EMBED_LR_MULT = 1.0  # learning-rate multiplier of the token embedding
WEIGHT_DECAY = 0.1  # AdamW weight decay of the weight matrices
ADAM_BETA1 = 0.9  # AdamW beta1
ADAM_BETA2 = 0.95  # AdamW beta2
GRAD_CLIP = 1.0  # gradient norm clip (0 disables)
WARMUP_FRAC = 0.03  # fraction of the time budget spent warming the LR up from 0
COOLDOWN_FRAC = 0.4  # fraction of the time budget at the end spent decaying the LR
FINAL_LR_FRAC = 0.0  # LR at the end of the cooldown, as a fraction of the peak
DROPOUT = 0.0  # dropout on attention and MLP outputs
ROPE_BASE = 10000  # rotary position embedding base
INIT_STD_MULT = 1.0  # weight init std = INIT_STD_MULT / sqrt(fan_in)
SEED = 1337  # seed of the initialization and of the data order
COMPILE = 1  # 1: torch.compile the model on CUDA with PyTorch 2.x; 0: run it eagerly

import contextlib
import math
import os
import resource
import sys


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


# CPU threads. Unless OMP_NUM_THREADS or MKL_NUM_THREADS is set (then PyTorch and BLAS
# follow it), the available CPUs go to one thread pool, never to two that run at once:
# - Where the BLAS keeps its own pool (OpenBLAS in Debian's PyTorch), that pool does the
#   matmuls, most of the work, on every available CPU. It is sized here, before torch loads it,
#   so a container's CPU quota is respected. PyTorch's own pool (elementwise ops, softmax, ...)
#   gets one thread.
# - Where the BLAS is MKL (PyTorch's x86 wheels), MKL runs inside PyTorch's OpenMP pool, so
#   that pool keeps PyTorch's default size, capped at the available CPUs.
# With both pools at 2 threads on a 2-vCPU VM, training ran 3x (PyTorch 1.13) to 15x
# (PyTorch 2.6, whose default that is there) slower: OpenMP's spin-waiting threads and
# OpenBLAS's fight for the same cores (trainer/README.md, "CPU threads").
_CPU_THREADS_FROM_ENV = bool(os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"))
if not _CPU_THREADS_FROM_ENV:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(available_cpus()))

import torch
import torch.nn as nn
import torch.nn.functional as F

import prepare
from prepare import MAX_SEQ_LEN, TIME_BUDGET, VOCAB_SIZE

BLAS_IN_TORCH_POOL = torch.backends.mkl.is_available()
if not _CPU_THREADS_FROM_ENV:
    torch.set_num_threads(min(torch.get_num_threads(), available_cpus()) if BLAS_IN_TORCH_POOL else 1)

# ----------------------------------------------------------------------------- device setup

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Set by the bot's harness: where the weights go for the outside evaluation (unset: evaluate here).
OUTPUT_DIR = os.environ.get("AUTORESEARCH_OUTPUT_DIR")
CHECKPOINT = "model.pt"
ON_CUDA = DEVICE.type == "cuda"
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
HAS_RMS_NORM = hasattr(F, "rms_norm")
USE_COMPILE = bool(COMPILE) and ON_CUDA and hasattr(torch, "compile")
AMP_DTYPE = torch.bfloat16 if ON_CUDA and torch.cuda.is_bf16_supported() else None
if ON_CUDA:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def autocast():
    """bf16 autocast on CUDA; a no-op context on the CPU (fp32)."""
    if AMP_DTYPE is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=AMP_DTYPE)


def sync():
    if ON_CUDA:
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- model


def rms_norm(x):
    if HAS_RMS_NORM:
        return F.rms_norm(x, (x.size(-1),))
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def rotary_tables(seq_len, head_dim, base):
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(seq_len).float(), inv_freq)  # (T, head_dim/2)
    return angles.cos()[None, None], angles.sin()[None, None]  # (1, 1, T, head_dim/2)


def apply_rotary(x, cos, sin):
    # rotate pairs (first half, second half) of each head's channels by position-dependent angles
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.proj = nn.Linear(WIDTH, WIDTH, bias=False)

    def forward(self, x, cos, sin, causal_bias):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        # QK-norm keeps attention logits tame at high learning rates; rotary encodes positions
        q = apply_rotary(rms_norm(q), cos, sin).to(v.dtype)
        k = apply_rotary(rms_norm(k), cos, sin).to(v.dtype)
        if HAS_SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=DROPOUT if self.training else 0.0)
        else:
            # scores + causal bias in one batched matmul (-inf above the diagonal), then softmax
            D = C // HEADS
            q, k, v = q.reshape(B * HEADS, T, D), k.reshape(B * HEADS, T, D), v.reshape(B * HEADS, T, D)
            att = torch.baddbmm(causal_bias[:T, :T], q, k.transpose(1, 2), alpha=1.0 / math.sqrt(D))
            att = F.dropout(att.softmax(dim=-1), DROPOUT, self.training)
            y = torch.bmm(att, v).view(B, HEADS, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.proj(y), DROPOUT, self.training)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(WIDTH, MLP_RATIO * WIDTH, bias=False)
        self.down = nn.Linear(MLP_RATIO * WIDTH, WIDTH, bias=False)

    def forward(self, x):
        return F.dropout(self.down(F.relu(self.up(x)).square()), DROPOUT, self.training)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = CausalSelfAttention()
        self.mlp = MLP()

    def forward(self, x, cos, sin, causal_bias):
        x = x + self.attn(rms_norm(x), cos, sin, causal_bias)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    """Byte-level GPT: model(idx) with idx (B, T) bytes returns logits (B, T, VOCAB_SIZE)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE, WIDTH)
        self.blocks = nn.ModuleList([Block() for _ in range(DEPTH)])
        self.head = nn.Linear(WIDTH, VOCAB_SIZE, bias=False)
        cos, sin = rotary_tables(MAX_SEQ_LEN, WIDTH // HEADS, ROPE_BASE)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        causal_bias = torch.full((MAX_SEQ_LEN, MAX_SEQ_LEN), float("-inf")).triu(1)
        self.register_buffer("causal_bias", causal_bias, persistent=False)
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "down.weight")) or name == "head.weight":
                nn.init.zeros_(p)  # residual branches and the head start at zero
            elif name == "embed.weight":
                nn.init.normal_(p, std=1.0)
            else:
                nn.init.normal_(p, std=INIT_STD_MULT / math.sqrt(p.size(1)))

    def forward(self, idx):
        T = idx.size(1)
        cos, sin = self.cos[:, :, :T], self.sin[:, :, :T]
        x = rms_norm(self.embed(idx))
        for block in self.blocks:
            x = block(x, cos, sin, self.causal_bias)
        return self.head(rms_norm(x))


# ----------------------------------------------------------------------------- helpers


def lr_multiplier(progress):
    """LR as a fraction of the peak, given the fraction of the time budget spent."""
    if progress < WARMUP_FRAC:
        return progress / WARMUP_FRAC
    if progress <= 1.0 - COOLDOWN_FRAC:
        return 1.0
    t = (1.0 - progress) / COOLDOWN_FRAC  # 1 at the start of the cooldown, 0 at the end
    return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * max(t, 0.0)


# Peak dense bf16 tensor FLOP/s (no sparsity), by GPU name, for the MFU estimate.
PEAK_BF16_FLOPS = {
    "H200": 989e12,  # also matches GH200
    "H100": 989e12,  # SXM; the PCIe card is ~756e12 (below)
    "B200": 2250e12,
    "A100": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def peak_flops():
    if not ON_CUDA:
        return 0.0
    name = torch.cuda.get_device_name()
    if "H100" in name and "PCIe" in name:
        return 756e12
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return 0.0


def cpu_blas_threads():
    """The BLAS's own pool, where it has one and its size is known: ' + BLAS 2'."""
    if BLAS_IN_TORCH_POOL or not os.environ.get("OPENBLAS_NUM_THREADS", "").isdigit():
        return ""
    return f" + BLAS {os.environ['OPENBLAS_NUM_THREADS']}"


def fail(message):
    print(f"\n{message}\nFAIL", flush=True)
    sys.exit(1)


# ----------------------------------------------------------------------------- main


def main():
    assert WIDTH % HEADS == 0 and (WIDTH // HEADS) % 2 == 0, "WIDTH / HEADS must be an even integer"
    assert SEQ_LEN <= MAX_SEQ_LEN, f"SEQ_LEN must be at most {MAX_SEQ_LEN}"
    # Repeated runs of the same code get different seeds from the bot (env AUTORESEARCH_SEED):
    # how far they spread is the noise a change must beat.
    seed = int(os.environ.get("AUTORESEARCH_SEED", SEED))
    torch.manual_seed(seed)
    try:
        loader = prepare.TrainLoader(BATCH_SIZE, SEQ_LEN, DEVICE, seed=seed)
    except FileNotFoundError as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(1)

    model = GPT().to(DEVICE)
    num_params = sum(p.numel() for p in model.parameters())
    matrices = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "embed.weight"]
    param_groups = [
        {"params": [model.embed.weight], "weight_decay": 0.0, "lr_mult": EMBED_LR_MULT},
        {"params": matrices, "weight_decay": WEIGHT_DECAY, "lr_mult": 1.0},
    ]
    extra = {"fused": True} if ON_CUDA else {}
    try:
        optimizer = torch.optim.AdamW(param_groups, lr=LEARNING_RATE, betas=(ADAM_BETA1, ADAM_BETA2), **extra)
    except (TypeError, RuntimeError):
        optimizer = torch.optim.AdamW(param_groups, lr=LEARNING_RATE, betas=(ADAM_BETA1, ADAM_BETA2))
    train_model = torch.compile(model) if USE_COMPILE else model

    print(
        f"device: {DEVICE}{' (' + torch.cuda.get_device_name() + ')' if ON_CUDA else ''}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}{cpu_blas_threads()}, "
        f"sdpa {HAS_SDPA}, compile {USE_COMPILE}, amp {AMP_DTYPE}"
    )
    print(f"params: {num_params / 1e6:.2f}M, budget: {TIME_BUDGET:.0f}s, batch: {BATCH_SIZE}x{SEQ_LEN} bytes", flush=True)

    tokens_per_step = BATCH_SIZE * SEQ_LEN
    # the first steps compile and warm up allocators: they train, but their time is not counted
    untimed_steps = 3 if USE_COMPILE else 1
    step = 0
    training_time = 0.0
    smooth_loss = None
    last_print = 0.0
    model.train()
    while True:
        progress = min(training_time / TIME_BUDGET, 1.0)
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATE * group["lr_mult"] * lr_multiplier(progress)
        sync()
        t0 = time.time()
        x, y = loader.next_batch()
        with autocast():
            logits = train_model(x)
        loss = F.cross_entropy(logits.float().view(-1, VOCAB_SIZE), y.reshape(-1))
        loss.backward()
        if GRAD_CLIP > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()  # synchronizes
        dt = time.time() - t0
        if step >= untimed_steps:
            training_time += dt
        step += 1

        if not math.isfinite(loss_value):
            fail(f"loss is {loss_value} at step {step}")
        if loss_value > 2 * math.log(VOCAB_SIZE):
            fail(f"loss exploded to {loss_value:.2f} at step {step}")
        smooth_loss = loss_value if smooth_loss is None else 0.95 * smooth_loss + 0.05 * loss_value
        now = time.time()
        done = training_time >= TIME_BUDGET
        if now - last_print >= 0.5 or done:
            last_print = now
            pct = 100.0 * min(training_time / TIME_BUDGET, 1.0)
            tok_s = tokens_per_step / dt if dt > 0 else 0.0
            remaining = max(TIME_BUDGET - training_time, 0.0)
            print(
                f"\rstep {step:05d} ({pct:5.1f}%) | loss {smooth_loss:.4f} | lr {lr_multiplier(progress):.2f} "
                f"| {tok_s:8.0f} tok/s | remaining {remaining:5.1f}s    ",
                end="",
                flush=True,
            )
        if done:
            break
    print()

    val_bpb = None
    if OUTPUT_DIR:
        # Run by the bot: the weights are scored from outside (`serve` below), by the default
        # branch's prepare.py, on validation data this process never sees.
        torch.save(model.state_dict(), os.path.join(OUTPUT_DIR, CHECKPOINT))
        print(f"saved the weights to {os.path.join(OUTPUT_DIR, CHECKPOINT)} for the evaluation", flush=True)
    else:
        t_eval = time.time()
        with autocast():
            val_bpb = prepare.evaluate_bpb(model)
        print(f"evaluated {prepare.EVAL_BYTES} val bytes in {time.time() - t_eval:.1f}s", flush=True)
        if not math.isfinite(val_bpb):
            fail(f"val_bpb is {val_bpb}")

    timed_steps = max(step - untimed_steps, 1)
    tokens_per_second = timed_steps * tokens_per_step / max(training_time, 1e-9)
    flops = peak_flops()
    mfu = 100.0 * 6 * num_params * tokens_per_second / flops if flops else 0.0
    peak_vram_mb = torch.cuda.max_memory_allocated() / 2**20 if ON_CUDA else 0.0
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print("---")
    if val_bpb is not None:
        print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_time:.1f}")
    print(f"total_seconds:    {time.time() - T_START:.1f}")
    print(f"peak_vram_mb:     {peak_vram_mb:.1f}")
    print(f"mfu_percent:      {mfu:.2f}")
    print(f"total_tokens_M:   {step * tokens_per_step / 1e6:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.1f}")
    print(f"depth:            {DEPTH}")
    print(f"tokens_per_sec:   {tokens_per_second:.0f}")
    print(f"peak_rss_mb:      {peak_rss_mb:.1f}")


def serve():
    """`python3 train.py serve`: the trained model answers the evaluation's requests for logits
    (see prepare.serve); the weights are the ones main() saved."""
    model = GPT().to(DEVICE)
    model.load_state_dict(torch.load(os.path.join(OUTPUT_DIR or ".", CHECKPOINT), map_location=DEVICE))
    prepare.serve(model, autocast)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        main()

#!/usr/bin/python3
"""PyTorch's side of the RNN benchmark: tokens/s of nn.RNN / nn.LSTM / nn.GRU on the CPU.

One configuration per run; prints ONE JSON line on stdout:

    /usr/bin/python3 examples/bench/torch_rnn.py --cell lstm --layers 2 --hidden 256 \
        --seq 64 --batch 32 --threads 2 [--iters 10] [--warmup 3] [--malloc keep]

    {"cell": "lstm", "layers": 2, "hidden": 256, "seq": 64, "batch": 32, "threads": 2,
     "fwd_tok_s": ..., "fwdbwd_tok_s": ..., "malloc": "default", "torch": "1.13.0a0"}

What is measured (float32, time-major T x B x H, input size = H, h0 = c0 = 0, seed 0):
  fwd      y = rnn(x) under torch.no_grad()
  fwdbwd   rnn.zero_grad(); y = rnn(x); (y * dy).sum().backward()
           x requires grad, so dx is computed too, as bptt's backward always does.
Each is run --warmup times untimed, then --iters (>= 10) times timed one by one;
tokens/s = T * B / median(time of one iteration).

Thread fairness. Debian's torch runs its GEMMs in the system OpenBLAS, whose thread pool
torch.set_num_threads does not control and which reads its environment once, when loaded.
So this script sets, for n = --threads,
    OMP_NUM_THREADS=n  OPENBLAS_NUM_THREADS=n  (and OMP_WAIT_POLICY=PASSIVE when n > 1)
and, if the environment it was started with differs, re-executes itself with that
environment before torch is imported. The caller need not (and cannot usefully) set these
variables; whatever they were is overridden. It then also calls torch.set_num_threads(n),
and warns on stderr if the loaded OpenBLAS reports another thread count.

Memory allocator. PyTorch's autograd allocates and frees its step buffers on every
iteration; with glibc's default malloc the large ones go back to the kernel and come back
as fresh page faults, which costs forward+backward about a third of its speed here and
makes it noisy (bptt reuses its caches instead). --malloc default (the default) measures
torch as shipped, with the glibc MALLOC_* variables removed from the environment;
--malloc keep sets MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ so freed memory stays
in the heap: the best torch gets without another allocator. The JSON says which was used.

Use /usr/bin/python3 (Debian's interpreter, which has torch), not a pyenv python3.
"""

import argparse
import json
import os
import sys

CELLS = ("tanh", "relu", "lstm", "gru")


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch RNN tokens/s (one configuration).")
    p.add_argument("--cell", choices=CELLS, default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256, help="H; the input size is H too")
    p.add_argument("--seq", type=int, default=64, help="T, steps")
    p.add_argument("--batch", type=int, default=32, help="B")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10, help="timed iterations (>= 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    p.add_argument("--malloc", choices=("default", "keep"), default="default",
                   help="glibc malloc as shipped, or tuned to keep freed memory (see top)")
    a = p.parse_args(argv)
    for name in ("layers", "hidden", "seq", "batch", "threads"):
        if getattr(a, name) < 1:
            p.error("--%s must be >= 1, got %d" % (name, getattr(a, name)))
    if a.iters < 10:
        p.error("--iters must be >= 10 (the median of at least 10 runs), got %d" % a.iters)
    if a.warmup < 0:
        p.error("--warmup must be >= 0, got %d" % a.warmup)
    return a


MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
               "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")


def wanted_env(threads, malloc):
    """Variable -> value, or None for 'must be unset'."""
    env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": "PASSIVE" if threads > 1 else None}
    env.update({k: None for k in MALLOC_VARS})
    if malloc == "keep":
        # A fixed mmap threshold at glibc's 64-bit maximum (32 MiB) plus a trim threshold
        # above any working set: freed autograd buffers stay in the heap for the next step.
        # Either one alone is worse than glibc's default (setting one turns off glibc's
        # adaptive mmap threshold).
        env["MALLOC_MMAP_THRESHOLD_"] = str(32 << 20)
        env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 30)
    return env


def ensure_env(threads, malloc):
    """Re-exec the running script (sys.argv[0]) once with the wanted environment, before torch
    is loaded; torch_charlm.py uses it too."""
    want = wanted_env(threads, malloc)
    cur = os.environ
    if all(cur.get(k) == v for k, v in want.items()):
        return
    if cur.get("BPTT_BENCH_REEXEC") == "1":  # should not happen; never loop
        sys.exit("%s: could not set the environment" % os.path.basename(sys.argv[0]))
    env = {k: v for k, v in cur.items() if k not in want}
    env.update({k: v for k, v in want.items() if v is not None})
    env["BPTT_BENCH_REEXEC"] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(sys.argv[0])] + sys.argv[1:], env)


def check_blas_threads(n):
    """Best effort (Linux): warn on stderr if the loaded OpenBLAS does not use n threads."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({l.split()[-1] for l in f if "libopenblas" in l})
        if libs:
            got = ctypes.CDLL(libs[0]).openblas_get_num_threads()
            if got != n:
                print("%s: warning: OpenBLAS uses %d threads, not %d" % (os.path.basename(sys.argv[0]), got, n),
                      file=sys.stderr)
    except (OSError, AttributeError):
        pass


def start_torch(threads, malloc, seed):
    """The environment for `threads` (ensure_env, re-executing if needed), then torch imported,
    set to `threads`, checked, seeded; returns the torch module. Every torch_*.py starts so."""
    ensure_env(threads, malloc)
    try:
        import torch  # only now: OpenBLAS and OpenMP read the environment when loaded
    except ImportError:
        sys.exit("%s: no torch in %s; run it with /usr/bin/python3"
                 % (os.path.basename(sys.argv[0]), sys.executable))
    torch.set_num_threads(threads)
    check_blas_threads(threads)
    torch.manual_seed(seed)
    return torch


def make_rnn(torch, cell, input_size, hidden, layers):
    """torch.nn.LSTM / GRU / RNN (tanh or relu), time-major; the other scripts use it too."""
    kw = dict(input_size=input_size, hidden_size=hidden, num_layers=layers, batch_first=False)
    if cell == "lstm":
        return torch.nn.LSTM(**kw)
    if cell == "gru":
        return torch.nn.GRU(**kw)
    return torch.nn.RNN(nonlinearity=cell, **kw)


def median(xs):
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def main():
    a = parse_args(sys.argv[1:])
    torch = start_torch(a.threads, a.malloc, 0)
    import time
    H, L, T, B = a.hidden, a.layers, a.seq, a.batch
    rnn = make_rnn(torch, a.cell, H, H, L)
    rnn = rnn.float()
    x = torch.randn(T, B, H, dtype=torch.float32, requires_grad=True)
    dy = torch.randn(T, B, H, dtype=torch.float32)

    def fwd():
        with torch.no_grad():
            rnn(x)

    def fwdbwd():
        rnn.zero_grad()
        x.grad = None
        y, _ = rnn(x)
        (y * dy).sum().backward()

    def rate(step):
        for _ in range(a.warmup):
            step()
        times = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return T * B / median(times)

    out = {
        "cell": a.cell, "layers": L, "hidden": H, "seq": T, "batch": B, "threads": a.threads,
        "fwd_tok_s": round(rate(fwd), 1),
        "fwdbwd_tok_s": round(rate(fwdbwd), 1),
        "malloc": a.malloc,
        "torch": torch.__version__,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

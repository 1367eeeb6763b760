#!/usr/bin/python3
"""PyTorch's side of the RNN benchmark: tokens/s of nn.RNN / nn.LSTM / nn.GRU on the CPU.

One configuration per run; prints ONE JSON line on stdout:

    /usr/bin/python3 examples/bench/torch_rnn.py --cell lstm --layers 2 --hidden 256 \
        --seq 64 --batch 32 --threads 2 [--iters 10] [--warmup 3] [--malloc tcmalloc]
        [--wait auto] [--blas-env clean] [--check FILE]

    {"cell": "lstm", "layers": 2, "hidden": 256, "seq": 64, "batch": 32, "threads": 2,
     "fwd_tok_s": ..., "fwdbwd_tok_s": ..., "malloc": "tcmalloc", "wait": "passive",
     "blas": "Cooperlake", "blas_env": "clean", "torch": "1.13.0a0"[, "check": ...]}

What is measured (float32, time-major T x B x H, input size = H, h0 = c0 = 0, seed 0):
  fwd      y = rnn(x) under torch.no_grad()
  fwdbwd   rnn.zero_grad(); y = rnn(x); (y * dy).sum().backward()
           x requires grad, so dx is computed too, as bptt's backward always does.
Each is run --warmup times untimed, then --iters (>= 10) times timed one by one;
tokens/s = T * B / median(time of one iteration).
--check FILE: rnn.lua's safetensors file (bptt.RNN's weights under PyTorch's names, x, and
bptt's output y): the layer starts from those weights and "check" is
max |y - bptt's| / max |bptt's| of the forward pass on that x.

The setting: the fastest honest one (README, "Figures"; step.lua --help).
Debian's torch runs its GEMMs in the system OpenBLAS, whose thread pool torch.set_num_threads
does not control and which reads its environment once, when loaded. So this script sets,
for n = --threads, before torch is imported:
    OMP_NUM_THREADS=n  OPENBLAS_NUM_THREADS=n
    OMP_WAIT_POLICY    --wait: auto (the default) is PASSIVE when n > 1 and unset for one
                       thread; or unset, passive, active.  Unset (GNU OpenMP's spin-then-
                       sleep) with 2 threads costs 10-25x on a loaded 2-core machine: the
                       OpenMP threads spin against OpenBLAS's own pool
    OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE  removed (--blas-env clean, the default): OpenBLAS
                       then picks its kernel for the CPU as it does on a user's machine
                       (Cooperlake on an AVX-512 EPYC) instead of the one a machine-wide
                       setting forces (these build machines set Haswell); --blas-env
                       inherit keeps them
    the allocator      --malloc (below)
and, if the environment it was started with differs, re-executes itself with that
environment. It then calls torch.set_num_threads(n), warns on stderr if the loaded OpenBLAS
reports another thread count, and reports the kernel OpenBLAS runs (openblas_get_corename
through ctypes on the library torch loaded) as blas=<core>.

Memory allocator. PyTorch's autograd allocates and frees its step buffers on every
iteration; with glibc's default malloc the large ones go back to the kernel and come back
as fresh page faults. --malloc:
  default   glibc malloc as shipped (the glibc MALLOC_* variables removed)
  keep      glibc with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set so that freed
            memory stays in the heap
  jemalloc  Debian's libjemalloc2 through LD_PRELOAD (apt-get install libjemalloc2)
  tcmalloc  Debian's libtcmalloc-minimal4 through LD_PRELOAD
When the library of jemalloc/tcmalloc is not installed, the script falls back to glibc as
shipped, says so on stderr, and reports malloc=default(no-jemalloc). The output says which
allocator ran.

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
    p.add_argument("--check", help="bptt's weights, x and y in this safetensors file")
    add_setting_args(p)
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
MALLOCS = ("default", "keep", "jemalloc", "tcmalloc")
# Debian 12's allocator libraries (x86_64, arm64 and others under their multiarch folders)
PRELOAD = {"jemalloc": ("libjemalloc.so.2", "libjemalloc2"),
           "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc-minimal4")}
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
WAITS = ("auto", "unset", "passive", "active")

# What start_torch ran with, for the scripts' output lines.
RUN = {"malloc": "default", "blas": "?", "wait": "auto", "blas_env": "clean"}


def find_lib(name):
    import glob
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/*-linux-gnu", "/usr/lib",
              "/usr/local/lib"):
        hits = sorted(glob.glob(os.path.join(d, name)))
        if hits:
            return hits[0]
    return None


def resolve_malloc(malloc):
    """(malloc actually used, LD_PRELOAD path or None); falls back to glibc when the library
    is not installed, saying so on stderr."""
    if malloc not in PRELOAD:
        return malloc, None
    lib, pkg = PRELOAD[malloc]
    path = find_lib(lib)
    if path is None:
        if os.environ.get("BPTT_BENCH_REEXEC") != "1":  # once, not again after the re-exec
                print("%s: %s not found (Debian: apt-get install %s); PyTorch runs with glibc malloc as shipped"
                  % (os.path.basename(sys.argv[0]), lib, pkg), file=sys.stderr)
        return "default(no-%s)" % malloc, None
    return malloc, path


def wait_policy(threads, wait):
    """OMP_WAIT_POLICY's value for --wait, or None for unset."""
    if wait == "auto":
        return "PASSIVE" if threads > 1 else None
    return None if wait == "unset" else wait.upper()


def wanted_env(threads, malloc, wait="auto", blas_env="clean"):
    """Variable -> value, or None for 'must be unset'."""
    env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": wait_policy(threads, wait)}
    env.update({k: None for k in MALLOC_VARS})
    if blas_env == "clean":
        env.update({k: None for k in BLAS_VARS})
    if malloc == "keep":
        # A fixed mmap threshold at glibc's 64-bit maximum (32 MiB) plus a trim threshold
        # above any working set: freed autograd buffers stay in the heap for the next step.
        # Either one alone is worse than glibc's default (setting one turns off glibc's
        # adaptive mmap threshold).
        env["MALLOC_MMAP_THRESHOLD_"] = str(32 << 20)
        env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 30)
    # LD_PRELOAD: the caller's, without another allocator, plus the one asked for
    pre = [x for x in os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
           if "jemalloc" not in x and "tcmalloc" not in x]
    _, path = resolve_malloc(malloc)
    if path:
        pre.insert(0, path)
    env["LD_PRELOAD"] = " ".join(pre) or None
    return env


def ensure_env(threads, malloc, wait="auto", blas_env="clean"):
    """Re-exec the running script (sys.argv[0]) once with the wanted environment, before torch
    is loaded; every torch_*.py uses it (through start_torch)."""
    want = wanted_env(threads, malloc, wait, blas_env)
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


def loaded_libs(part):
    with open("/proc/self/maps") as f:
        return sorted({l.split()[-1] for l in f if part in l.split()[-1]})


def blas_core():
    """The kernel the OpenBLAS that torch loaded runs (its corename), or '?'."""
    import ctypes
    try:
        libs = loaded_libs("libopenblas")
        if libs:
            lib = ctypes.CDLL(libs[0])
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        pass
    return "?"


def check_blas_threads(n):
    """Best effort (Linux): warn on stderr if the loaded OpenBLAS does not use n threads."""
    import ctypes
    try:
        libs = loaded_libs("libopenblas")
        if libs:
            got = ctypes.CDLL(libs[0]).openblas_get_num_threads()
            if got != n:
                print("%s: warning: OpenBLAS uses %d threads, not %d" % (os.path.basename(sys.argv[0]), got, n),
                      file=sys.stderr)
    except (OSError, AttributeError):
        pass


def start_torch(threads, malloc, seed, wait="auto", blas_env="clean"):
    """The environment for `threads` (ensure_env, re-executing if needed), then torch imported,
    set to `threads`, checked, seeded; returns the torch module and fills RUN (the allocator,
    kernel, wait policy and BLAS environment that ran). Every torch_*.py starts so."""
    ensure_env(threads, malloc, wait, blas_env)
    try:
        import torch  # only now: OpenBLAS and OpenMP read the environment when loaded
    except ImportError:
        sys.exit("%s: no torch in %s; run it with /usr/bin/python3"
                 % (os.path.basename(sys.argv[0]), sys.executable))
    torch.set_num_threads(threads)
    check_blas_threads(threads)
    torch.manual_seed(seed)
    used = malloc
    if malloc in PRELOAD:
        used = malloc if loaded_libs(PRELOAD[malloc][0].split(".so")[0]) else "default(no-%s)" % malloc
    RUN.update(malloc=used, blas=blas_core(), wait=(wait_policy(threads, wait) or "unset").lower(), blas_env=blas_env)
    return torch


def add_setting_args(p):
    """--malloc, --wait, --blas-env: the options every torch_*.py takes (see the top)."""
    p.add_argument("--malloc", choices=MALLOCS, default="default",
                   help="allocator: glibc as shipped, glibc keeping freed memory, jemalloc or tcmalloc (LD_PRELOAD)")
    p.add_argument("--wait", choices=WAITS, default="auto",
                   help="OMP_WAIT_POLICY (auto: PASSIVE with more than one thread, else unset)")
    p.add_argument("--blas-env", choices=("clean", "inherit"), default="clean",
                   help="clean: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed; inherit: kept")


def setting_kv():
    """The setting that ran, as key=value pairs."""
    return "malloc=%s wait=%s blas=%s blas_env=%s" % (RUN["malloc"], RUN["wait"], RUN["blas"], RUN["blas_env"])


def read_safetensors(torch, path):
    """name -> tensor of a safetensors file (F32, F64, I32), as bptt.save writes it (the check
    files of the benchmarks: bptt's initial weights and data, so both sides start equal)."""
    import json as _json
    import struct
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32}
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = _json.loads(blob[8:8 + n].decode("utf-8"))
    base, out = 8 + n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(blob[base + a:base + b]), dtype=dtypes[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


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
    torch = start_torch(a.threads, a.malloc, 0, a.wait, a.blas_env)
    import time
    H, L, T, B = a.hidden, a.layers, a.seq, a.batch
    rnn = make_rnn(torch, a.cell, H, H, L)
    rnn = rnn.float()
    x = torch.randn(T, B, H, dtype=torch.float32, requires_grad=True)
    check = None
    if a.check:
        st = read_safetensors(torch, a.check)
        with torch.no_grad():
            for name, t in rnn.named_parameters():
                t.copy_(st[name])
            want = st["y"]
            got = rnn(st["x"])[0]
            check = ((got - want).abs().max() / want.abs().max()).item()
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
        "malloc": RUN["malloc"], "wait": RUN["wait"], "blas": RUN["blas"], "blas_env": RUN["blas_env"],
        "torch": torch.__version__,
    }
    if check is not None:
        out["check"] = float("%.3g" % check)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

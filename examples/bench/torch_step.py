#!/usr/bin/python3
"""PyTorch's side of the char-LM training-step benchmark (examples/bench/step.lua).

One configuration per run; prints ONE line of key=value pairs on stdout:

    /usr/bin/python3 examples/bench/torch_step.py --cell lstm --hidden 256 --layers 2 \
        --batch 32 --seq 64 --threads 2 [--iters 10] [--warmup 3] [--malloc tcmalloc]
        [--wait default] [--blas-env clean] [--check FILE]

    tok_s=... step_s=... peak_kb=... threads=2 malloc=tcmalloc wait=passive blas=Cooperlake
    blas_env=clean torch=1.13.0a0 [loss1=... lossN=...]

The step, float32, time-major, the same model as bptt.LanguageModel:
    opt.zero_grad(); out, state = rnn(emb(x), state); logits = dec(out)
    loss = cross_entropy(logits, y); loss.backward(); clip_grad_norm_(params, 5)
    opt.step()                                                       (Adam, lr 2e-3)
    state = state.detach()
The state carries over from one step to the next, detached (char-rnn's streams), as
bptt.LanguageModel's does (carry_state); the first step starts from zeros.
Embedding 65 -> 64, vocabulary 65; x and y are fixed random ids.  --warmup steps untimed,
then --iters (>= 10) timed one by one; tok_s = T * B / median(step time).  peak_kb is
the process's VmHWM after the timed steps.

--check FILE: a safetensors file that step.lua's bptt worker wrote (bptt's initial weights
under PyTorch's state_dict names, and its x and y, 1-based ids): the model starts from
those, trains on that batch, and the line adds loss1 (the loss of the first step) and lossN
(of the last), for step.lua to compare with bptt's (same weights, same data, same steps).

Threads, the allocator, OMP_WAIT_POLICY and the OpenBLAS environment: as torch_rnn.py (its
start_torch sets them before torch is imported, re-executing this script when needed).
Use /usr/bin/python3, Debian's interpreter with torch.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_rnn import add_setting_args, make_rnn, median, read_safetensors, setting_kv, start_torch  # noqa: E402

V, E = 65, 64


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch char-LM training step tokens/s (one configuration).")
    p.add_argument("--cell", choices=("tanh", "relu", "lstm", "gru"), default="lstm")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--check", help="start from bptt's weights and batch in this safetensors file")
    add_setting_args(p)
    a = p.parse_args(argv)
    for name in ("hidden", "layers", "batch", "seq", "threads"):
        if getattr(a, name) < 1:
            p.error("--%s must be >= 1" % name)
    if a.iters < 10:
        p.error("--iters must be >= 10 (the median of at least 10 steps)")
    return a


def peak_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    a = parse_args(sys.argv[1:])
    torch = start_torch(a.threads, a.malloc, 0, a.wait, a.blas_env)
    import time
    H, L, B, T = a.hidden, a.layers, a.batch, a.seq
    rnn = make_rnn(torch, a.cell, E, H, L)
    emb, dec = torch.nn.Embedding(V, E), torch.nn.Linear(H, V)
    params = list(emb.parameters()) + list(rnn.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    x = torch.randint(0, V, (T, B))
    y = torch.randint(0, V, (T, B))
    if a.check:
        st = read_safetensors(torch, a.check)
        with torch.no_grad():
            for prefix, m in (("embed.", emb), ("rnn.", rnn), ("decoder.", dec)):
                for name, t in m.named_parameters():
                    t.copy_(st[prefix + name])
        x, y = st["x"].long() - 1, st["y"].long() - 1  # bptt's ids are 1-based

    state = [None]

    def step():
        opt.zero_grad()
        out, st = rnn(emb(x), state[0])
        state[0] = tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach()
        loss = torch.nn.functional.cross_entropy(dec(out).view(T * B, V), y.view(T * B))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss

    losses = [step().item() for _ in range(a.warmup)]
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        losses.append(loss)  # .item() after the clock: no sync inside the timing
    sec = median(times)
    check = " loss1=%.9g lossN=%.9g" % (float(losses[0]), float(losses[-1])) if a.check else ""
    print("tok_s=%.1f step_s=%.6f peak_kb=%d threads=%d %s torch=%s%s"
          % (T * B / sec, sec, peak_kb(), a.threads, setting_kv(), torch.__version__, check))


if __name__ == "__main__":
    main()

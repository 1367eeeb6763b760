#!/usr/bin/python3
"""PyTorch's side of the sampling benchmark (examples/bench/sample.lua).

One configuration per run; prints ONE line on stdout:

    /usr/bin/python3 examples/bench/torch_sample.py --cell lstm --hidden 512 --layers 2 --threads 1

    tok_s=... threads=1 malloc=... wait=... blas=<OpenBLAS kernel> blas_env=clean torch=1.13.0a0
    [check=...]

The loop char-rnn's sample.lua runs, in PyTorch, under torch.no_grad(), batch 1: the prime
through Embedding(65 -> 64) -> RNN -> Linear(H -> 65) at once, then per token softmax of
the last logits, torch.multinomial, and the token fed back with the carried state.
--warmup untimed runs, then --iters timed; tok_s = tokens / median run time.
Threads, allocator, OMP_WAIT_POLICY, the OpenBLAS environment: as torch_rnn.py (set before
torch is imported). --check FILE: sample.lua's safetensors file (bptt's weights under
PyTorch's names, the prime as 1-based ids, bptt's logits after the prime): the model starts
from those weights and check= is max |logits - bptt's| / max |bptt's| after the prime.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_rnn import add_setting_args, make_rnn, median, read_safetensors, setting_kv, start_torch  # noqa: E402

V, E = 65, 64


def main():
    p = argparse.ArgumentParser(description="PyTorch sampling tokens/s at batch 1 (one configuration).")
    p.add_argument("--cell", choices=("tanh", "relu", "lstm", "gru"), default="lstm")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--prime", type=int, default=50)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--check", help="bptt's weights, prime and logits in this safetensors file")
    add_setting_args(p)
    a = p.parse_args()
    for name in ("hidden", "layers", "threads", "prime", "tokens", "iters"):
        if getattr(a, name) < 1:
            p.error("--%s must be >= 1" % name)
    torch = start_torch(a.threads, a.malloc, 0, a.wait, a.blas_env)
    import time
    rnn = make_rnn(torch, a.cell, E, a.hidden, a.layers)
    emb, dec = torch.nn.Embedding(V, E), torch.nn.Linear(a.hidden, V)
    for m in (emb, rnn, dec):
        m.eval()
    prime = torch.randint(0, V, (a.prime, 1))
    check = ""
    if a.check:
        st = read_safetensors(torch, a.check)
        with torch.no_grad():
            for prefix, m in (("embed.", emb), ("rnn.", rnn), ("decoder.", dec)):
                for name, t in m.named_parameters():
                    t.copy_(st[prefix + name])
            prime = st["prime"].long() - 1  # bptt's ids are 1-based
            want = st["logits"]
            got = dec(rnn(emb(prime))[0][-1, 0])
            check = " check=%.3g" % ((got - want).abs().max() / want.abs().max()).item()

    def run():
        with torch.no_grad():
            out, state = rnn(emb(prime))
            logits = dec(out[-1])
            for _ in range(a.tokens):
                idx = torch.multinomial(torch.softmax(logits, -1), 1)
                out, state = rnn(emb(idx.view(1, 1)), state)
                logits = dec(out[-1])

    for _ in range(a.warmup):
        run()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print("tok_s=%.1f threads=%d %s torch=%s%s"
          % (a.tokens / median(times), a.threads, setting_kv(), torch.__version__, check))


if __name__ == "__main__":
    main()

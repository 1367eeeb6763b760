#!/usr/bin/python3
"""PyTorch's side of the sampling benchmark (examples/bench/sample.lua).

One configuration per run; prints ONE line on stdout:

    /usr/bin/python3 examples/bench/torch_sample.py --cell lstm --hidden 512 --layers 2 --threads 1

    tok_s=... threads=1 torch=1.13.0a0

The loop char-rnn's sample.lua runs, in PyTorch, under torch.no_grad(), batch 1: the prime
through Embedding(65 -> 64) -> RNN -> Linear(H -> 65) at once, then per token softmax of
the last logits, torch.multinomial, and the token fed back with the carried state.
--warmup untimed runs, then --iters timed; tok_s = tokens / median run time.
Threads as torch_rnn.py (environment set before torch is imported).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_rnn import make_rnn, median, start_torch  # noqa: E402

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
    p.add_argument("--malloc", choices=("default", "keep"), default="default")
    a = p.parse_args()
    for name in ("hidden", "layers", "threads", "prime", "tokens", "iters"):
        if getattr(a, name) < 1:
            p.error("--%s must be >= 1" % name)
    torch = start_torch(a.threads, a.malloc, 0)
    import time
    rnn = make_rnn(torch, a.cell, E, a.hidden, a.layers)
    emb, dec = torch.nn.Embedding(V, E), torch.nn.Linear(a.hidden, V)
    for m in (emb, rnn, dec):
        m.eval()
    prime = torch.randint(0, V, (a.prime, 1))

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
    print("tok_s=%.1f threads=%d torch=%s" % (a.tokens / median(times), a.threads, torch.__version__))


if __name__ == "__main__":
    main()

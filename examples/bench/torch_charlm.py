#!/usr/bin/python3
"""PyTorch's side of the char-LM convergence benchmark (examples/bench/charlm.lua).

Trains the model of bptt.LanguageModel with the training loop of bptt.Trainer, in PyTorch,
on the same data laid out the same way, and prints ONE JSON line on stdout:

    /usr/bin/python3 examples/bench/torch_charlm.py --data ../shared/data/tinyshakespeare.txt \
        --hidden 256 --layers 2 --batch 32 --seq 64 --lr 2e-3 --clip 5 \
        --max-iters 2000 --eval-every 500 --threads 2 --seed 1 [--malloc keep]

    {"val_loss": ..., "train_loss_last": ..., "seconds": ..., "train_seconds": ...,
     "tok_s": ..., "iters": ..., "torch": "1.13.0a0", "val_curve": [[500, ...], ...], ...}

Progress (one line per evaluation) goes to stderr.

The run, step by step as bptt does it (lua/bptt/data.lua, LanguageModel.lua, Trainer.lua):
  data     the file read as UTF-8 code points (strict, no newline translation, a BOM is a
           symbol); the vocabulary is the symbols sorted by code point; train = the first
           round(0.9 N) tokens, val = the rest (data.split's rounding: floor(N * 0.9 + 0.5)).
  batches  char-rnn's: with N tokens, K = floor((N - 1) / (B T)) batches per epoch; B
           contiguous stripes of S = K T tokens; batch k (0-based here) is, time-major,
           x[t][b] = tokens[b S + k T + t], y[t][b] = tokens[b S + k T + t + 1].
  model    Embedding(V, E) -> LSTM(E, H, layers) -> Linear(H, V), E = min(H, 64), float32,
           PyTorch's default inits (which are bptt's: N(0, 1) for the embedding,
           uniform(+-1/sqrt(fan_in)) for the rest); no dropout.
  step     hidden state carried from batch to batch (detached: truncated BPTT), zeroed at
           the first batch of every epoch; cross-entropy averaged over the T B positions;
           clip_grad_norm_(clip) (none when --clip 0); Adam(lr), PyTorch's other defaults.
  eval     at every --eval-every iterations and at the last: the mean over ALL validation
           batches of each batch's mean cross-entropy, from a zero state carried across
           the validation batches, in eval mode under no_grad.
  times    seconds = the whole loop, evaluations included; train_seconds = the training
           steps only; tok_s = iters B T / train_seconds. train_loss_last = the mean
           training loss over the iterations since the previous evaluation.

Threads, the allocator (--malloc), OMP_WAIT_POLICY (--wait) and the OpenBLAS environment
(--blas-env: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed by default): as in torch_rnn.py,
whose start_torch this script uses (set before torch is imported, re-executing the script).
Read the notes at its top.

Use /usr/bin/python3 (Debian's interpreter, which has torch), not a pyenv python3.
"""

import argparse
import json
import math
import os
import sys

from torch_rnn import RUN, add_setting_args, start_torch  # same directory; it imports no torch at load time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "data",
                                             "tinyshakespeare.txt"))
VAL_FRAC = 0.1


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch char-LM training run (bptt's convergence "
                                            "benchmark).")
    p.add_argument("--data", default=DEFAULT_DATA, help="UTF-8 text (default: %(default)s)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32, help="B, parallel streams")
    p.add_argument("--seq", type=int, default=64, help="T, steps per batch")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0, help="max global gradient norm (0: none)")
    p.add_argument("--max-iters", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    add_setting_args(p)
    a = p.parse_args(argv)
    for name in ("hidden", "layers", "batch", "seq", "max_iters", "eval_every", "threads"):
        if getattr(a, name) < 1:
            p.error("--%s must be >= 1, got %d" % (name.replace("_", "-"), getattr(a, name)))
    if not a.lr > 0:
        p.error("--lr must be > 0, got %g" % a.lr)
    if not a.clip >= 0:
        p.error("--clip must be >= 0, got %g" % a.clip)
    return a


def load_tokens(path):
    """(ids as an int64 numpy array, V): code points -> 0-based ids in code-point order."""
    import numpy as np
    # newline="": no \r\n translation; strict UTF-8 as bptt.data.text (invalid = "error")
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if not text:
        sys.exit("torch_charlm.py: %s is empty" % path)
    cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    symbols, ids = np.unique(cps, return_inverse=True)  # symbols sorted by code point
    return ids.astype(np.int64), len(symbols)


def split(n, frac):
    """data.split(tokens, {frac, 1 - frac}): the first part ends at round(n * frac)."""
    return min(n, max(0, int(math.floor(n * frac + 0.5))))


class Batches:
    """char-rnn's batches of lua/bptt/data.lua (not shuffled)."""

    def __init__(self, tokens, B, T, what):
        n = tokens.numel()
        K = (n - 1) // (B * T) if n > 0 else 0
        if K < 1:
            sys.exit("torch_charlm.py: the %s part has %d tokens, too few for one batch of %d x %d"
                     % (what, n, B, T))
        S = K * T
        self.K, self.T = K, T
        self.x = tokens[:B * S].view(B, S)        # stripe b = row b
        self.y = tokens[1:B * S + 1].view(B, S)

    def batch(self, k):
        """Batch k (0-based): x, y as T x B."""
        a, b = k * self.T, (k + 1) * self.T
        return self.x[:, a:b].t(), self.y[:, a:b].t()


def main():
    a = parse_args(sys.argv[1:])
    if not os.path.isfile(a.data):
        sys.exit("torch_charlm.py: no file %s" % a.data)
    torch = start_torch(a.threads, a.malloc, a.seed, a.wait, a.blas_env)
    import time
    import torch.nn.functional as F

    ids, V = load_tokens(a.data)
    tokens = torch.from_numpy(ids)
    n = tokens.numel()
    cut = split(n, 1 - VAL_FRAC)
    B, T, H, L = a.batch, a.seq, a.hidden, a.layers
    E = min(H, 64)  # bptt.LanguageModel's default embedding size
    train = Batches(tokens[:cut], B, T, "training")
    val = Batches(tokens[cut:], B, T, "validation")

    class CharLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, H, num_layers=L, batch_first=False)
            self.decoder = torch.nn.Linear(H, V)

        def forward(self, x, state):
            y, state = self.rnn(self.embed(x), state)
            return self.decoder(y), state

    model = CharLM().float()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)

    def loss_of(logits, y):
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))

    def evaluate():
        model.eval()
        state, total = None, 0.0
        with torch.no_grad():
            for k in range(val.K):
                x, y = val.batch(k)
                logits, state = model(x, state)
                total += loss_of(logits, y).item()
        model.train()
        return total / val.K

    print("torch_charlm.py: torch %s, %d symbols, vocabulary %d, %d parameters; %d training "
          "batches of %d x %d per epoch, %d validation batches"
          % (torch.__version__, n, V, params, train.K, T, B, val.K), file=sys.stderr)

    model.train()
    state, k = None, 0
    window, window_n = 0.0, 0
    val_curve, train_curve = [], []
    eval_seconds = 0.0
    t_start = time.perf_counter()
    for it in range(1, a.max_iters + 1):
        if k == train.K:
            k = 0
        if k == 0:
            state = None  # a new epoch: the streams restart from a zero state
        x, y = train.batch(k)
        k += 1
        opt.zero_grad()
        logits, state = model(x, state)
        loss = loss_of(logits, y)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        state = tuple(s.detach() for s in state)  # truncated BPTT
        lv = loss.item()
        if not math.isfinite(lv):
            sys.exit("torch_charlm.py: iteration %d: loss %s" % (it, lv))
        window += lv
        window_n += 1
        if it % a.eval_every == 0 or it == a.max_iters:
            t0 = time.perf_counter()
            vl = evaluate()
            t1 = time.perf_counter()
            eval_seconds += t1 - t0
            train_curve.append([it, window / window_n])
            val_curve.append([it, vl])
            train_s = t1 - t_start - eval_seconds
            print("torch iter %d: train loss %.4f, val loss %.4f, %.0f tok/s, %.1f s"
                  % (it, window / window_n, vl, it * B * T / train_s, t1 - t_start), file=sys.stderr)
            window, window_n = 0.0, 0
    seconds = time.perf_counter() - t_start
    train_seconds = seconds - eval_seconds

    out = {
        "val_loss": val_curve[-1][1],
        "train_loss_last": train_curve[-1][1],
        "seconds": round(seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "tok_s": round(a.max_iters * B * T / train_seconds, 1),
        "iters": a.max_iters,
        "torch": torch.__version__,
        "val_curve": val_curve,
        "train_curve": train_curve,
        "vocab": V, "tokens": n, "train_batches": train.K, "val_batches": val.K,
        "params": params, "embed": E, "threads": a.threads, "malloc": RUN["malloc"],
        "wait": RUN["wait"], "blas": RUN["blas"], "blas_env": RUN["blas_env"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

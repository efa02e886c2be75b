"""A real model: a tiny randomly initialised transformers GPT-2 (vocab 32000), one training step.

The model is built from ``GPT2Config`` (no download): 2 layers, 2 heads,
n_embd 64, vocab 32000, no dropout; a batch of 8 x 128 tokens, so the loss
sees 1024 x 32000 logits (float32); the LM head's three GEMMs are the rest of
the step's bulk.  One step = forward
with ``labels`` (transformers' ``ForCausalLMLoss`` calls
``F.cross_entropy``), ``backward``, SGD update.  Four runs from the same
initial weights, stepped round-robin in one process (so that load on a
shared machine hits them alike), same thread count for everything:

* eager, and eager inside ``fastlog.torch.patched()``;
* ``torch.compile(fullgraph=True)`` (Inductor), and the same under
  ``patched()`` (fastlog's operators in the compiled graph).

Prints each run's losses (patched and unpatched must agree to float
tolerance) and the median step time after warm-up (compile time excluded).

    python benchmarks/bench_torch_gpt2.py [--steps 12] [--threads 1] [--batch 8] [--seq 128]
"""
import argparse
import os
import statistics
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--embd", type=int, default=64)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    import transformers

    import fastlog
    import fastlog.torch as FL
    torch.set_num_threads(args.threads)
    fastlog.set_num_threads(args.threads)

    def model():
        # no dropout: the four runs draw no random numbers, so their losses can be compared
        cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=args.embd, vocab_size=32000,
                                      n_positions=max(args.seq, 64), attn_implementation="eager",
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                      bos_token_id=0, eos_token_id=0)
        torch.manual_seed(0)
        m = transformers.GPT2LMHeadModel(cfg)
        m.loss_type = "ForCausalLM"   # (unset, transformers logs a warning: a graph break)
        return m

    ids = torch.randint(0, 32000, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    runs = {}
    for name, compiled, patched in (("eager", False, False), ("eager + patch", False, True),
                                    ("compiled", True, False), ("compiled + patch", True, True)):
        m = model()
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        fwd = (torch.compile(lambda i, m=m: m(input_ids=i, labels=i).loss, fullgraph=True) if compiled
               else (lambda i, m=m: m(input_ids=i, labels=i).loss))
        runs[name] = dict(fwd=fwd, opt=opt, patched=patched, losses=[], times=[], first=None)

    def step(r):
        t0 = time.perf_counter()
        ctx = FL.patched() if r["patched"] else _null()
        with ctx:
            loss = r["fwd"](ids)
            r["opt"].zero_grad(set_to_none=True)
            loss.backward()
        r["opt"].step()
        dt = time.perf_counter() - t0
        r["losses"].append(float(loss.detach()))
        return dt

    for name, r in runs.items():      # compile and warm up, one run at a time
        t0 = time.perf_counter()
        step(r)
        r["first"] = time.perf_counter() - t0
        for _ in range(args.warmup - 1):
            step(r)
    load0 = os.getloadavg()
    for _ in range(args.steps):
        for r in runs.values():
            r["times"].append(step(r))
    load1 = os.getloadavg()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, fastlog "
          f"{fastlog.__version__}; GPT-2 2 layers, n_embd {args.embd}, vocab 32000, batch "
          f"{args.batch} x {args.seq} tokens, float32, {args.threads} thread(s)")
    print(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} (start of timing) -> "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (end), {os.cpu_count()} CPUs")
    print(f"\n{'run':18s} {'first step s':>12s} {'median ms':>10s} {'min ms':>8s}  losses (first, last)")
    for name, r in runs.items():
        t = r["times"]
        print(f"{name:18s} {r['first']:12.1f} {statistics.median(t) * 1e3:10.1f} {min(t) * 1e3:8.1f}  "
              f"{r['losses'][0]:.6f} {r['losses'][-1]:.6f}")
    for a, b in (("eager", "eager + patch"), ("compiled", "compiled + patch")):
        la, lb = np.array(runs[a]["losses"]), np.array(runs[b]["losses"])
        sp = statistics.median(x / y for x, y in zip(runs[a]["times"], runs[b]["times"]))
        print(f"{b:18s}: step {sp:.2f}x faster than {a} (median over rounds); losses max |diff| "
              f"{np.abs(la - lb).max():.2e} (rel {np.abs(la - lb).max() / np.abs(la).max():.1e})")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()

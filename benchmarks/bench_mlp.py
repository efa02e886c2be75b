"""The 784-128-64-10 MLP: one SGD training step and inference, fastlog vs PyTorch eager vs NumPy.

Train step = forward + mean cross-entropy + backward + SGD update, float32, on
batches of 64, 256, 1024 and 4096 rows; inference = class predictions for
10,000 rows.  Threads are pinned alike for every library: threadpoolctl
(every BLAS, OpenMP pool), torch.set_num_threads and fastlog.set_num_threads.

"GEMMs only" is fastlog.core.mlp_gemms_only: the same seven GEMM calls of a
fastlog training step (three for inference) on the same buffers, nothing
else -- the floor the fused step can reach.  The ratio step / GEMMs-only
measures everything fastlog adds around BLAS.

    python -m pytest benchmarks/bench_mlp.py                       # pytest-benchmark
    python benchmarks/bench_mlp.py [--threads 1,2] [--batches 64,256,1024,4096] [--rounds 7]
    python benchmarks/bench_mlp.py --threads 1 --clock cpu     # CPU time: for a busy machine

The script prints, for each thread count and batch, the best (minimum) over
interleaved rounds of each library's mean time per call, and the ratios.
"""
import argparse
import time

import numpy as np
import pytest

import fastlog
from fastlog.bench.timing import pinned_threads as pinned
from fastlog.nn import MLP, mlp_gemms_only

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SIZES = (784, 128, 64, 10)
BATCHES = (64, 256, 1024, 4096)
THREADS = (1, 2)
N_INFER = 10_000
LR = 0.01


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], n)


# ------------------------------------------------------------ the contenders --
class Fastlog:
    def __init__(self, batch):
        self.model = MLP(SIZES, seed=0)

    def step(self, x, y):
        return self.model.train_step(x, y, LR)

    def gemms(self, x, y):
        mlp_gemms_only(self.model, x, True, LR)

    def predict(self, x):
        return self.model.predict(x)

    def predict_gemms(self, x):
        mlp_gemms_only(self.model, x, False)


class Torch:
    def __init__(self, batch):
        self.net = MLP(SIZES, seed=0).to_torch()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR)
        self.F = torch.nn.functional

    def step(self, x, y):
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.net(xt), yt)
        loss.backward()
        self.opt.step()
        return loss.item()

    def predict(self, x):
        with torch.no_grad():
            return self.net(torch.from_numpy(x)).argmax(1).numpy()


class Numpy:
    """Plain NumPy backprop, written the obvious way."""

    def __init__(self, batch):
        m = MLP(SIZES, seed=0)
        self.W = [w.copy() for w in m.weights]
        self.b = [b.copy() for b in m.biases]

    def step(self, x, y):
        W, b = self.W, self.b
        h1 = np.maximum(x @ W[0].T + b[0], 0)
        h2 = np.maximum(h1 @ W[1].T + b[1], 0)
        z = h2 @ W[2].T + b[2]
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        n = len(y)
        loss = np.mean(np.log(s[:, 0]) - z[np.arange(n), y])
        g3 = e / s
        g3[np.arange(n), y] -= 1
        g3 /= n
        g2 = (g3 @ W[2]) * (h2 > 0)
        g1 = (g2 @ W[1]) * (h1 > 0)
        for Wl, bl, g, a in ((W[2], b[2], g3, h2), (W[1], b[1], g2, h1), (W[0], b[0], g1, x)):
            Wl -= LR * (g.T @ a)
            bl -= LR * g.sum(axis=0)
        return loss

    def predict(self, x):
        W, b = self.W, self.b
        h1 = np.maximum(x @ W[0].T + b[0], 0)
        h2 = np.maximum(h1 @ W[1].T + b[1], 0)
        return np.argmax(h2 @ W[2].T + b[2], axis=1)


LIBS = {"fastlog": Fastlog, "torch": Torch, "numpy": Numpy}
if torch is None:  # pragma: no cover
    del LIBS["torch"]


# ------------------------------------------------------------ pytest-benchmark --
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("lib", list(LIBS) + ["fastlog-gemms-only"])
def test_train_step(benchmark, lib, batch, threads):
    benchmark.group = f"mlp train step, batch {batch}, {threads} thread(s)"
    x, y = data(batch)
    with pinned(threads):
        if lib == "fastlog-gemms-only":
            impl = Fastlog(batch)
            fn = impl.gemms
        else:
            impl = LIBS[lib](batch)
            fn = impl.step
            loss = fn(x, y)
            assert np.isfinite(loss)
        benchmark(fn, x, y)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("lib", list(LIBS) + ["fastlog-gemms-only"])
def test_inference(benchmark, lib, threads):
    benchmark.group = f"mlp predict {N_INFER} rows, {threads} thread(s)"
    x, _ = data(N_INFER, seed=1)
    with pinned(threads):
        if lib == "fastlog-gemms-only":
            fn = Fastlog(N_INFER).predict_gemms
        else:
            impl = LIBS[lib](N_INFER)
            fn = impl.predict
            if lib != "fastlog":
                np.testing.assert_array_equal(fn(x), Fastlog(N_INFER).predict(x))
        benchmark(fn, x)


# ------------------------------------------------------------------- script --
CLOCK = time.perf_counter


def _time(fn, args, reps):
    t0 = CLOCK()
    for _ in range(reps):
        fn(*args)
    return (CLOCK() - t0) / reps


def _measure(entries, args, rounds, target_s=0.05, pause=0.0):
    """entries: name -> fn.  Interleaved rounds; best (min) mean time per call, in ms.

    pause: seconds to sleep before each library's turn.  With several threads,
    an OpenBLAS pool keeps its threads spinning for a while after a call (and
    OpenMP pools briefly too); on a 2-core machine a spinning pool of one
    library steals a core from the next one, so give them time to go idle.
    """
    reps = {}
    for name, fn in entries.items():
        fn(*args)
        t = _time(fn, args, 1)
        reps[name] = max(1, int(target_s / max(t, 1e-7)))
    best = {name: float("inf") for name in entries}
    for _ in range(rounds):
        for name, fn in entries.items():
            if pause:
                time.sleep(pause)
                fn(*args)
            best[name] = min(best[name], _time(fn, args, reps[name]))
    return {k: 1e3 * v for k, v in best.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description="fastlog MLP benchmark (float32)")
    p.add_argument("--threads", default=",".join(map(str, THREADS)))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-inference", action="store_true")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: perf_counter; cpu: the calling thread's CPU time (time.thread_time), "
                        "less disturbed by other processes, meaningful with 1 thread only")
    a = p.parse_args(argv)
    global CLOCK
    CLOCK = time.perf_counter if a.clock == "wall" else time.thread_time
    if a.clock == "cpu" and a.threads != "1":
        p.error("--clock cpu measures the calling thread only: use it with --threads 1")
    threads = [int(t) for t in a.threads.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    fastlog.show_config()
    print(f"torch {torch.__version__ if torch is not None else '(not installed)'}, numpy {np.__version__}; "
          f"best of {a.rounds} interleaved rounds, ms per call ({a.clock} clock)")
    print()
    print("train step (forward + cross-entropy + backward + SGD), float32")
    hdr = (f"{'thr':>3} {'batch':>6} {'fastlog':>9} {'GEMMs':>9} {'step/GEMMs':>10} "
           f"{'torch':>9} {'vs torch':>8} {'numpy':>9} {'vs numpy':>8}")
    print(hdr)
    for nt in threads:
        for b in batches:
            x, y = data(b)
            with pinned(nt):
                fl = Fastlog(b)
                entries = {"fastlog": fl.step, "gemms": fl.gemms, "numpy": Numpy(b).step}
                if torch is not None:
                    entries["torch"] = Torch(b).step
                r = _measure(entries, (x, y), a.rounds, pause=0.3 if nt > 1 else 0.0)
            tt = r.get("torch", float("nan"))
            print(f"{nt:>3} {b:>6} {r['fastlog']:>9.3f} {r['gemms']:>9.3f} {r['fastlog'] / r['gemms']:>10.3f} "
                  f"{tt:>9.3f} {tt / r['fastlog']:>7.2f}x {r['numpy']:>9.3f} {r['numpy'] / r['fastlog']:>7.2f}x",
                  flush=True)
    if a.no_inference:
        return 0
    print()
    print(f"inference (predicted classes of {N_INFER} rows), float32")
    print(f"{'thr':>3} {'fastlog':>9} {'GEMMs':>9} {'pred/GEMMs':>10} {'torch':>9} {'vs torch':>8} "
          f"{'numpy':>9} {'vs numpy':>8}")
    x, _ = data(N_INFER, seed=1)
    for nt in threads:
        with pinned(nt):
            fl = Fastlog(N_INFER)
            entries = {"fastlog": fl.predict, "gemms": fl.predict_gemms, "numpy": Numpy(N_INFER).predict}
            if torch is not None:
                entries["torch"] = Torch(N_INFER).predict
            r = _measure(entries, (x,), a.rounds, target_s=0.1, pause=0.3 if nt > 1 else 0.0)
        tt = r.get("torch", float("nan"))
        print(f"{nt:>3} {r['fastlog']:>9.3f} {r['gemms']:>9.3f} {r['fastlog'] / r['gemms']:>10.3f} "
              f"{tt:>9.3f} {tt / r['fastlog']:>7.2f}x {r['numpy']:>9.3f} {r['numpy'] / r['fastlog']:>7.2f}x",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

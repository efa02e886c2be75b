"""The same MLP in PyTorch, with fastlog's fused cross-entropy as the loss (``fastlog.torch``).

``fastlog.torch.cross_entropy`` is a drop-in for ``torch.nn.functional.cross_entropy``:
same arguments, values and gradients, computed in one fused pass.  The trained
network is handed to fastlog (``MLP.from_state_dict``) and saved as JSON.

    python examples/mlp_torch.py [--epochs 10] [--out DIR]

Needs PyTorch (``pip install torch==2.13.0``).  FASTLOG_EXAMPLES_FAST=1 runs one epoch on 1,000 digits.
"""
import argparse
import os
import sys

import numpy as np

from fastlog.data import mnist_train_test
from fastlog.nn import MLP

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=1 if FAST else 10)
    p.add_argument("--out", default=".", help="directory for relu_model_torch.json")
    args = p.parse_args()
    try:
        import torch
        import fastlog.torch as FL
    except ImportError:
        sys.exit(f"{os.path.basename(__file__)}: error: this example needs PyTorch: pip install torch==2.13.0")

    torch.manual_seed(0)
    Xtr, Xte, ytr, yte = (torch.from_numpy(a) for a in mnist_train_test())
    if FAST:   # the test suite: 1,000 training digits, one thread
        Xtr, ytr = Xtr[:1000], ytr[:1000]
        torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(1, args.epochs + 1):
        total = 0.0
        for idx in torch.randperm(len(ytr), generator=gen).split(64):
            opt.zero_grad()
            loss = FL.cross_entropy(net(Xtr[idx]), ytr[idx])    # instead of F.cross_entropy
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        with torch.no_grad():
            acc = (net(Xte).argmax(1) == yte).double().mean().item()
        print(f"epoch {epoch}/{args.epochs}: training loss {total / len(ytr):.4f}, held-out accuracy {acc:.3f}")

    with torch.no_grad():   # the same values as PyTorch's own loss
        logits = net(Xte)
        ours, theirs = FL.cross_entropy(logits, yte).item(), torch.nn.functional.cross_entropy(logits, yte).item()
    print(f"held-out loss: fastlog.torch {ours:.6f}, torch.nn.functional {theirs:.6f}")

    model = MLP.from_state_dict(net.state_dict())            # the same network in fastlog
    agree = np.mean(model.predict(Xte.numpy()) == logits.argmax(1).numpy())
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "relu_model_torch.json")
    model.save(path)
    print(f"fastlog.nn.MLP with the trained weights predicts the same class on {100 * agree:.1f}% of the digits; "
          f"saved {path}")


if __name__ == "__main__":
    main()

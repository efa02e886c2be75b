"""Train the 784-128-64-10 ReLU MLP on real handwritten digits with fastlog's NumPy API.

Then save it in the JSON format (keys param_0 ... param_5) and classify the
held-out digits again with a few lines of plain NumPy that know nothing
about fastlog, as another program reading the file would.

    python examples/mlp_numpy.py [--epochs 10] [--out DIR]

(FASTLOG_EXAMPLES_FAST=1 runs one epoch: what the test suite does.)
"""
import argparse
import json
import os

import numpy as np

from fastlog.data import mnist_train_test
from fastlog.nn import MLP

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"


def numpy_predict(params, x):
    """The consumer of the JSON file: no fastlog, only NumPy (x: a flattened 28x28 image in [0, 1])."""
    z1 = params["param_0"] @ x + params["param_1"]
    a1 = np.maximum(0, z1)
    z2 = params["param_2"] @ a1 + params["param_3"]
    a2 = np.maximum(0, z2)
    z3 = params["param_4"] @ a2 + params["param_5"]
    return int(np.argmax(z3))          # argmax of softmax(z3) = argmax of z3


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=1 if FAST else 10)
    p.add_argument("--out", default=".", help="directory for relu_model_final.json")
    args = p.parse_args()

    Xtr, Xte, ytr, yte = mnist_train_test()          # 4,000 training and 1,000 held-out digits
    model = MLP((784, 128, 64, 10), seed=0)

    # One step by hand: forward, fused cross-entropy + gradient, backward and SGD update in one call.
    loss = model.train_step(Xtr[:64], ytr[:64], lr=0.05, momentum=0.9)
    print(f"first mini-batch: loss {loss:.3f} (log 10 = {np.log(10):.3f} for a guess)")

    # The rest with fit: shuffled mini-batches, validation after every epoch.
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=64, lr=0.05, momentum=0.9,
              validation_data=(Xte, yte), progress="plain")
    loss, acc = model.evaluate(Xte, yte)
    print(f"held-out digits: accuracy {acc:.3f}, loss {loss:.3f}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "relu_model_final.json")
    model.save(path)
    with open(path) as f:
        params = {k: np.array(v) for k, v in json.load(f).items()}
    plain = np.array([numpy_predict(params, x.astype(np.float64)) for x in Xte])
    agree = np.mean(plain == model.predict(Xte))
    print(f"saved {path} ({os.path.getsize(path) / 1e6:.1f} MB); plain NumPy on the file agrees with "
          f"model.predict on {100 * agree:.1f}% of the held-out digits, accuracy {np.mean(plain == yte):.3f}")


if __name__ == "__main__":
    main()

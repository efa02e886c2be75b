"""
The same MLP in PyTorch, with fastlog's cross-entropy
=====================================================

:func:`fastlog.torch.cross_entropy` is a drop-in for
``torch.nn.functional.cross_entropy``: same arguments, values and gradients,
computed in one fused pass that keeps no log-probabilities for backward.  Only
the loss line changes; the model, the optimizer and autograd are PyTorch's.
Afterwards the trained network is handed to fastlog
(:meth:`fastlog.MLP.from_state_dict`) and saved as JSON.

Needs PyTorch (``pip install torch==2.13.0``, the CPU wheel).
"""
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch

import fastlog.torch as FL
from fastlog.data import mnist_train_test
from fastlog.nn import MLP

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"   # the test suite: one epoch on 1,000 digits
EPOCHS = 1 if FAST else 8

# Batches of 64 digits are too small to split over threads: one thread is faster, and on a
# busy machine PyTorch's spinning OpenMP threads would slow every step down many times.
torch.set_num_threads(1)
torch.manual_seed(0)
Xtr, Xte, ytr, yte = (torch.from_numpy(a) for a in mnist_train_test())
if FAST:
    Xtr, ytr = Xtr[:1000], ytr[:1000]
net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                          torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

# %%
# The training loop: one changed line
# -----------------------------------

gen = torch.Generator().manual_seed(0)
curve = []
for epoch in range(1, EPOCHS + 1):
    total = 0.0
    for idx in torch.randperm(len(ytr), generator=gen).split(64):
        opt.zero_grad()
        loss = FL.cross_entropy(net(Xtr[idx]), ytr[idx])    # instead of F.cross_entropy
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    with torch.no_grad():
        acc = (net(Xte).argmax(1) == yte).double().mean().item()
    curve.append((total / len(ytr), acc))
    print(f"epoch {epoch}/{EPOCHS}: training loss {total / len(ytr):.4f}, held-out accuracy {acc:.3f}")

with torch.no_grad():   # the same values as PyTorch's own loss
    logits = net(Xte)
    ours, theirs = FL.cross_entropy(logits, yte).item(), torch.nn.functional.cross_entropy(logits, yte).item()
print(f"held-out loss: fastlog.torch {ours:.6f}, torch.nn.functional {theirs:.6f}")

# %%
# The gradients are PyTorch's
# ---------------------------
# One backward pass through each loss on the same batch gives the same weight
# gradients up to float32 rounding.

grads = []
for loss_fn in (FL.cross_entropy, torch.nn.functional.cross_entropy):
    net.zero_grad()
    loss_fn(net(Xtr[:256]), ytr[:256]).backward()
    grads.append([p.grad.clone() for p in net.parameters()])
diff = max((a - b).abs().max().item() for a, b in zip(*grads))
print(f"largest difference between the weight gradients: {diff:.1e}")

# %%
# Into fastlog
# ------------

model = MLP.from_state_dict(net.state_dict())             # the same network in fastlog
agree = np.mean(model.predict(Xte.numpy()) == logits.argmax(1).numpy())
path = os.path.join(os.environ.get("FASTLOG_EXAMPLES_OUT") or tempfile.mkdtemp(), "relu_model_torch.json")
model.save(path)
print(f"fastlog.nn.MLP with the trained weights predicts the same class on {100 * agree:.1f}% of the digits; "
      f"saved {os.path.basename(path)}")

fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
ax.plot(range(1, EPOCHS + 1), [c[0] for c in curve], "o-", label="training loss")
ax2 = ax.twinx()
ax2.plot(range(1, EPOCHS + 1), [100 * c[1] for c in curve], "s-", color="C1", label="held-out accuracy (%)")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (fastlog.torch.cross_entropy)")
ax2.set_ylabel("held-out accuracy (%)")
fig.legend(loc="center right", fontsize=8, bbox_to_anchor=(0.85, 0.5))
ax.set_title("torch.nn.Sequential trained with fastlog's loss", fontsize=10)
plt.show()

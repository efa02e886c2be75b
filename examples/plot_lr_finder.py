"""
The learning-rate finder and its suggestion
===========================================

:func:`fastlog.lr_find` runs the learning-rate range test (Leslie Smith's, as in
fastai): one mini-batch per rate, the rate growing exponentially from 1e-6 to 10,
the loss smoothed by an exponential moving average, the sweep stopped when the
loss diverges.  The model's weights and momentum are put back exactly afterwards.

The suggestion is **3/4 of the rate where the smoothed loss falls fastest**,
searched only up to the lowest smoothed loss.  The rule and the measurements it
rests on are in :mod:`fastlog.nn.lr_find`: on 100 seeds not used to choose it,
three epochs at the suggestion reached 90% held-out accuracy on 98, where fastai's
"steep" point (searched over the whole sweep, diverging tail included) did on 86.
"""
import matplotlib.pyplot as plt
import numpy as np

import fastlog
from fastlog.data import mnist_train_test
from fastlog.nn import MLP

Xtr, Xte, ytr, yte = mnist_train_test()
model = MLP((784, 128, 64, 10), seed=0)
res = fastlog.lr_find(model, Xtr, ytr, seed=0)
print(res)

# %%
# The curve
# ---------
# Grey: the loss of each mini-batch before its step.  Blue: the smoothed loss.
# The dashed line is the steepest descent before the minimum, the red point the
# suggestion.  Past the minimum the loss rises and the sweep stops when it
# exceeds 4 times its lowest value.

slope = np.gradient(res.losses, np.log(res.lrs))
fig, (ax, ax_s) = plt.subplots(2, 1, figsize=(8, 6.2), sharex=True, layout="constrained",
                               gridspec_kw={"height_ratios": [3, 1.4]})
ax.plot(res.lrs, res.raw_losses, color="0.75", lw=0.8, label="mini-batch loss")
ax.plot(res.lrs, res.losses, color="C0", lw=2, label="smoothed loss")
ax.axvline(res.steepest, color="0.3", ls="--", lw=1, label=f"steepest descent: lr = {res.steepest:.3g}")
ax.plot([res.suggestion], [res.suggestion_loss], "o", color="C3", ms=9,
        label=f"suggestion (3/4 of it): lr = {res.suggestion:.3g}")
best = int(np.argmin(res.losses))
ax.plot([res.lrs[best]], [res.losses[best]], "v", color="k", ms=7, label=f"lowest smoothed loss: lr = {res.lrs[best]:.3g}")
ax.set_xscale("log")
top = float(res.losses[: len(res.losses) // 10].max())
ax.set_ylim(min(res.raw_losses.min(), res.losses.min()) - 0.1, top + 0.8)
ax.set_ylabel("training loss")
ax.set_title(f"learning-rate finder: {len(res.lrs)} mini-batches of 64, stopped {res.stopped!r}", fontsize=10)
ax.legend(fontsize=8, loc="upper left")
ax.grid(alpha=0.3)
ax_s.plot(res.lrs, slope, color="C0")
ax_s.axvline(res.steepest, color="0.3", ls="--", lw=1)
ax_s.axhline(0, color="0.5", lw=0.6)
ax_s.set_ylim(max(slope.min() * 1.3, -3), 1)
ax_s.set_xlabel("learning rate (log scale)")
ax_s.set_ylabel("d loss / d log lr")
ax_s.grid(alpha=0.3)

# %%
# Three epochs at the suggestion
# ------------------------------
# The test suite checks that this reaches 90% held-out accuracy for each of the
# seeds 0 to 5 (``tests/test_workflow_train.py``).

model.fit(Xtr, ytr, epochs=3, lr=res.suggestion, progress=False, seed=0)
loss, acc = model.evaluate(Xte, yte)
print(f"3 epochs at lr {res.suggestion:.3g}: held-out accuracy {acc:.3f}, loss {loss:.3f}")
plt.show()

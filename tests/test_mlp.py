"""fastlog.nn.MLP against PyTorch (autograd, torch.optim.SGD) and a float64 NumPy reference."""
import io
import re

import numpy as np
import pytest

import fastlog
import fastlog.nn as fnn
from fastlog._dispatch import core
from fastlog.nn import MLP, LogisticRegression

torch = pytest.importorskip("torch")
F = torch.nn.functional

ARCHS = [(784, 128, 64, 10), (5, 7, 3), (6, 4), (10, 8, 9, 7, 4)]


def _batch(sizes, n, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


def _torch_sequential(model):
    net = model.to_torch()
    for (k, v), p in zip(model.state_dict().items(), net.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), v)
    return net


def _np_logits(model, x):
    a = x.astype(np.float64)
    for l, (w, b) in enumerate(zip(model.weights, model.biases)):
        a = a @ w.astype(np.float64).T + b
        if l < model.n_layers - 1:
            a = np.maximum(a, 0)
    return a


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# ---------------------------------------------------------------- gradients --
@pytest.mark.parametrize("sizes", ARCHS)
@pytest.mark.parametrize("n", [1, 37])
def test_gradients_match_torch_autograd_float64(sizes, n):
    model = MLP(sizes, dtype=np.float64, seed=3)
    x, y = _batch(sizes, n, seed=n)
    net = _torch_sequential(model)
    xt = torch.from_numpy(x)
    lt = F.cross_entropy(net(xt), torch.from_numpy(y))
    lt.backward()
    w_before = [p.copy() for p in model.parameters()]
    loss, grads = model.loss_and_grad(x, y)
    assert abs(loss - lt.item()) <= 1e-12 * abs(lt.item())
    assert len(grads) == len(list(net.parameters()))
    for g, p in zip(grads, net.parameters()):
        assert g.shape == tuple(p.shape) and g.dtype == np.float64
        assert _rel_err(g, p.grad.numpy()) < 1e-10
    for a, b in zip(model.parameters(), w_before):  # loss_and_grad changes nothing
        np.testing.assert_array_equal(a, b)


def test_gradients_match_torch_float32():
    model = MLP(dtype=np.float32, seed=0)
    x, y = _batch(model.sizes, 64, np.float32)
    net = _torch_sequential(model)
    F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    loss, grads = model.loss_and_grad(x, y)
    for g, p in zip(grads, net.parameters()):
        assert g.dtype == np.float32
        assert _rel_err(g, p.grad.numpy()) < 1e-4


def test_loss_matches_numpy_reference():
    model = MLP((20, 16, 5), dtype=np.float64, seed=1)
    x, y = _batch(model.sizes, 50, seed=2)
    z = _np_logits(model, x)
    zmax = z.max(1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(1)) + zmax[:, 0]
    ref = np.mean(lse - z[np.arange(50), y])
    loss, _ = model.loss_and_grad(x, y)
    assert abs(loss - ref) <= 1e-12 * ref


# --------------------------------------------------------------- SGD steps --
@pytest.mark.parametrize("opts", [
    dict(),
    dict(weight_decay=1e-2),
    dict(momentum=0.9),
    dict(momentum=0.9, weight_decay=5e-3),
    dict(momentum=0.5, dampening=0.3, weight_decay=1e-3),
])
@pytest.mark.parametrize("sizes", [(784, 128, 64, 10), (6, 5, 3)])
def test_train_steps_match_torch_sgd(opts, sizes):
    model = MLP(sizes, dtype=np.float64, seed=5)
    net = _torch_sequential(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.2, **opts)
    for step in range(4):
        x, y = _batch(sizes, 16 + 3 * step, seed=10 + step)
        opt.zero_grad()
        lt = F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
        lt.backward()
        opt.step()
        loss = model.train_step(x, y, 0.2, **opts)
        assert abs(loss - lt.item()) <= 1e-10 * abs(lt.item())
        for p, q in zip(model.parameters(), net.parameters()):
            assert _rel_err(p, q.detach().numpy()) < 1e-10, step


def test_one_step_float32_close_to_torch():
    model = MLP(seed=2)
    net = _torch_sequential(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    x, y = _batch(model.sizes, 64, np.float32, seed=3)
    opt.zero_grad()
    F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    opt.step()
    model.train_step(x, y, 0.05, momentum=0.9, weight_decay=1e-4)
    for p, q in zip(model.parameters(), net.parameters()):
        np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_reset_optimizer_restarts_momentum_like_a_new_torch_sgd():
    model = MLP((6, 5, 3), dtype=np.float64, seed=1)
    x, y = _batch(model.sizes, 8, seed=1)
    model.train_step(x, y, 0.1, momentum=0.9)
    model.reset_optimizer()
    net = _torch_sequential(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for s in range(2):
        opt.zero_grad()
        F.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
        model.train_step(x, y, 0.1, momentum=0.9)
    for p, q in zip(model.parameters(), net.parameters()):
        assert _rel_err(p, q.detach().numpy()) < 1e-12


def test_bigger_batch_after_smaller_one():
    model = MLP((12, 8, 4), dtype=np.float64, seed=0)
    ref = MLP((12, 8, 4), dtype=np.float64, seed=0)
    for n in (3, 50, 7, 200):
        x, y = _batch(model.sizes, n, seed=n)
        l1, g1 = model.loss_and_grad(x, y)
        l2, g2 = MLP.from_state_dict(model.state_dict()).loss_and_grad(x, y)
        assert l1 == l2
        for a, b in zip(g1, g2):
            np.testing.assert_array_equal(a, b)
        model.train_step(x, y, 0.1)
        ref.train_step(x, y, 0.1)
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(a, b)


def test_thread_count_does_not_change_results():
    res = []
    for nt in (1, 2):
        with fastlog.num_threads(nt):
            model = MLP(seed=4)
            for s, n in enumerate((1024, 2048, 700)):   # blocked GEMMs, transposed weight gradient
                x, y = _batch(model.sizes, n, np.float32, seed=s)
                model.train_step(x, y, 0.05, momentum=0.9)
            res.append([p.copy() for p in model.parameters()] + [model.predict_proba(x)])
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- inference --
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_matches_numpy(dtype, monkeypatch):
    monkeypatch.setattr(fnn.mlp, "INFER_BLOCK", 64)   # several blocks plus a remainder
    model = MLP((30, 20, 10, 6), dtype=dtype, seed=7)
    model.biases[0][:] = 0.1
    x, _ = _batch(model.sizes, 200, dtype, seed=8)
    z = _np_logits(model, x)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    logits = model.forward(x)
    assert logits.dtype == dtype and logits.shape == (200, 6)
    np.testing.assert_allclose(logits, z, **tol)
    zs = z - z.max(1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(1, keepdims=True))
    np.testing.assert_allclose(model.predict_log_proba(x), logp, **tol)
    np.testing.assert_allclose(model.predict_proba(x), np.exp(logp), **tol)
    pred = model.predict(x)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, np.argmax(logits, 1))
    with torch.no_grad():
        np.testing.assert_allclose(model.to_torch()(torch.from_numpy(x)).numpy(), logits, **tol)


def test_evaluate_matches_reference():
    model = MLP((15, 9, 4), dtype=np.float64, seed=2)
    x, y = _batch(model.sizes, 77, seed=3)
    z = _np_logits(model, x)
    zs = z - z.max(1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(1, keepdims=True))
    loss, acc = model.evaluate(x, y)
    assert abs(loss - (-logp[np.arange(77), y].mean())) < 1e-12
    assert acc == np.mean(np.argmax(z, 1) == y)


def test_gemms_only_leaves_model_unchanged():
    model = MLP(seed=0)
    x, y = _batch(model.sizes, 64, np.float32)
    before = [p.copy() for p in model.parameters()]
    core.mlp_gemms_only(model.workspace(64), x, True, 0.01)
    core.mlp_gemms_only(model.workspace(64, train=False), x, False)
    for a, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- init & state --
def test_initialisation_is_seeded_he_and_xavier():
    a, b, c = MLP(seed=1), MLP(seed=1), MLP(seed=2)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a.weights[0], c.weights[0])
    big = MLP((4000, 3000, 2000), dtype=np.float64, seed=0)
    assert abs(big.weights[0].std() / np.sqrt(2 / 4000) - 1) < 0.01   # He on the ReLU layer
    assert abs(big.weights[1].std() / np.sqrt(2 / 5000) - 1) < 0.01   # Xavier on the output layer
    assert not big.biases[0].any()
    x = MLP((4000, 3000, 2000), dtype=np.float64, seed=0, init="xavier")
    assert abs(x.weights[0].std() / np.sqrt(2 / 7000) - 1) < 0.01


def test_state_dict_round_trip_with_torch():
    net = torch.nn.Sequential(torch.nn.Linear(12, 9), torch.nn.ReLU(), torch.nn.Linear(9, 7), torch.nn.ReLU(),
                              torch.nn.Linear(7, 3)).double()
    model = MLP.from_state_dict(net.state_dict())
    assert model.sizes == (12, 9, 7, 3) and model.dtype == np.float64
    x, _ = _batch(model.sizes, 20, seed=1)
    with torch.no_grad():
        np.testing.assert_allclose(model.forward(x), net(torch.from_numpy(x)).numpy(), rtol=1e-12)
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    net2 = torch.nn.Sequential(torch.nn.Linear(12, 9), torch.nn.ReLU(), torch.nn.Linear(9, 7), torch.nn.ReLU(),
                               torch.nn.Linear(7, 3)).double()
    net2.load_state_dict(model.state_dict(tensors=True))
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    sd["0.weight"][:] = 0   # a copy: the model is unaffected
    assert model.weights[0].any()


def test_state_dict_errors():
    model = MLP((4, 3, 2))
    sd = model.state_dict()
    with pytest.raises(KeyError):
        MLP.from_state_dict({"0.weight": sd["0.weight"]})
    with pytest.raises(KeyError):
        MLP.from_state_dict({**sd, "1.weight": sd["0.weight"]})
    bad = dict(sd)
    bad["2.weight"] = np.zeros((2, 5))
    with pytest.raises(ValueError, match="inputs"):
        MLP.from_state_dict(bad)
    with pytest.raises(ValueError, match="shapes"):
        model.load_state_dict(bad)


def test_save_load_round_trip(tmp_path):
    model = MLP((9, 6, 4), dtype=np.float64, seed=3)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:   # plain arrays only
        assert set(f.files) >= {"0.weight", "0.bias", "2.weight", "2.bias", "__sizes__"}
    back = MLP.load(path)
    assert back.sizes == model.sizes and back.dtype == model.dtype
    for p, q in zip(model.parameters(), back.parameters()):
        np.testing.assert_array_equal(p, q)
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    np.testing.assert_array_equal(MLP.load(buf).weights[1], model.weights[1])
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastlog MLP"):
        MLP.load(tmp_path / "other.npz")


# -------------------------------------------------------------- bad input --
def test_bad_input_raises_and_changes_nothing():
    model = MLP((6, 5, 3), dtype=np.float64, seed=0)
    x, y = _batch(model.sizes, 10, seed=0)
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="features"):
        model.train_step(x[:, :5], y, 0.1)
    with pytest.raises(ValueError, match="features"):
        model.predict(np.ones((2, 7)))
    bad_y = y.copy()
    bad_y[4] = 3
    with pytest.raises(IndexError, match=r"y\[4\] = 3"):
        model.train_step(x, bad_y, 0.1, momentum=0.9)
    bad_y[4] = -1
    with pytest.raises(IndexError, match="out of range"):
        model.loss_and_grad(x, bad_y)
    xn = x.copy()
    xn[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.train_step(xn, y, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(xn)
    with pytest.raises(ValueError, match="NaN"):
        model.forward(xn)
    with pytest.raises(ValueError, match="NaN"):
        model.fit(xn, y, epochs=1, progress=False)
    with pytest.raises(ValueError, match="9 labels"):
        model.train_step(x, y[:9], 0.1)
    with pytest.raises(TypeError, match="integer"):
        model.train_step(x, y.astype(float), 0.1)
    with pytest.raises(ValueError, match="2-D"):
        model.train_step(x[0], y[:1], 0.1)
    with pytest.raises(ValueError, match="no rows"):
        model.train_step(x[:0], y[:0], 0.1)
    with pytest.raises(ValueError, match="lr"):
        model.train_step(x, y, -1.0)
    with pytest.raises(IndexError):
        model.fit(x, bad_y, epochs=1, progress=False)
    for p, q in zip(model.parameters(), before):
        np.testing.assert_array_equal(p, q)
    assert not model._momentum_started


def test_divergence_is_reported():
    model = MLP((6, 5, 3), dtype=np.float64, seed=0)
    model.weights[0][0, 0] = np.inf
    x, y = _batch(model.sizes, 4, seed=0)
    with pytest.raises(FloatingPointError, match="not finite"):
        model.train_step(x, y, 0.1)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        MLP((784,))
    with pytest.raises(ValueError):
        MLP((784, 0, 10))
    with pytest.raises(TypeError):
        MLP((784, 10), dtype=np.float16)
    with pytest.raises(ValueError):
        MLP((784, 10), init="uniform")


# --------------------------------------------------------- training on MNIST --
@pytest.fixture(scope="module")
def digits():
    from fastlog.data import mnist_train_test
    return mnist_train_test()


def test_fit_learns_real_digits(digits):
    Xtr, Xte, ytr, yte = digits
    model = MLP(seed=0)
    out = io.StringIO()
    hist = model.fit(Xtr, ytr, epochs=3, batch_size=64, lr=0.05, momentum=0.9, validation_data=(Xte, yte),
                     progress=False, file=out)
    assert out.getvalue() == ""
    assert set(hist) == {"loss", "accuracy", "time", "val_loss", "val_accuracy"}
    assert len(hist["loss"]) == 3 and hist["loss"][2] < hist["loss"][0]
    loss, acc = model.evaluate(Xte, yte)
    assert acc == hist["val_accuracy"][-1]
    assert acc >= 0.88
    # same seed, same result
    again = MLP(seed=0)
    again.fit(Xtr, ytr, epochs=3, batch_size=64, lr=0.05, momentum=0.9, progress=False)
    np.testing.assert_array_equal(again.weights[0], model.weights[0])


def test_fit_plain_progress_without_tqdm(digits, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)   # import fails -> plain lines
    Xtr, _, ytr, _ = digits
    out = io.StringIO()
    MLP(seed=0).fit(Xtr[:500], ytr[:500], epochs=2, batch_size=100, progress=True, file=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2") and "loss" in lines[1] and "acc" in lines[1]


def test_fit_running_accuracy_is_the_batches_accuracy(digits):
    Xtr, _, ytr, _ = digits
    model = MLP(seed=1)
    X, y = Xtr[:256], ytr[:256]
    hist = model.fit(X, y, epochs=1, batch_size=256, lr=0.0, momentum=0.0, shuffle=False, progress=False)
    assert hist["accuracy"][0] == np.mean(model.predict(X) == y)
    assert abs(hist["loss"][0] - model.evaluate(X, y)[0]) < 1e-5


def test_logistic_regression_3_vs_7(digits):
    Xtr, Xte, ytr, yte = digits
    tr, te = np.isin(ytr, (3, 7)), np.isin(yte, (3, 7))
    model = LogisticRegression(784, seed=0)
    model.fit(Xtr[tr], (ytr[tr] == 7).astype(int), epochs=5, lr=0.1, progress=False)
    loss, acc = model.evaluate(Xte[te], (yte[te] == 7).astype(int))
    assert acc >= 0.95


def test_logistic_regression_gradients_match_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 8))
    y = rng.integers(0, 2, 30)
    model = LogisticRegression(8, dtype=np.float64, seed=1)
    model.bias[:] = 0.3
    lin = torch.nn.Linear(8, 1).double()
    lin.load_state_dict({"weight": torch.from_numpy(model.weight.copy()), "bias": torch.from_numpy(model.bias.copy())})
    lt = F.binary_cross_entropy_with_logits(lin(torch.from_numpy(x))[:, 0], torch.from_numpy(y.astype(float)))
    lt.backward()
    loss, gw, gb = model.loss_and_grad(x, y)
    assert abs(loss - lt.item()) < 1e-12
    np.testing.assert_allclose(gw, lin.weight.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(gb, lin.bias.grad.numpy(), rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="0 and 1"):
        model.loss_and_grad(x, y + 1)


# --------------------------------------------------------------- the command --
def test_train_command(capsys):
    from fastlog.train import main
    assert main(["--epochs", "3", "--no-progress", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    acc = float(re.search(r"test accuracy: ([0-9.]+)", text).group(1))
    assert acc >= 0.88
    assert "time per epoch" in text and "epoch 3/3" in text


def test_train_command_logreg(capsys):
    from fastlog.train import main
    assert main(["--logreg", "--epochs", "3", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "3 (0) vs 7 (1)" in text
    assert float(re.search(r"test accuracy: ([0-9.]+)", text).group(1)) >= 0.95


def test_internal_workspace_refuses_what_does_not_fit():
    model = MLP((6, 5, 3), dtype=np.float64, seed=0)
    ws = model.workspace(8)
    x, y = _batch(model.sizes, 9)
    with pytest.raises(ValueError):
        ws.step(x, y, 1, 0.1)                     # more rows than the buffers hold
    with pytest.raises(ValueError):
        ws.step(x[:8].astype(np.float32), y[:8], 1, 0.1)
    with pytest.raises(ValueError):
        core.mlp_gemms_only(ws, x)
    st, loss, hits = ws.step(x[:8], y[:8], 0)
    assert st == -1 and abs(loss - model.loss_and_grad(x[:8], y[:8])[0]) < 1e-12


# ------------------------------------------------------------ thread safety --
def test_inference_from_many_threads_matches_single_threaded():
    """One model, 6 Python threads calling predict_proba / predict / forward at once
    (a shared inference workspace gave wrong probabilities in 199 of 200 calls).

    Within rounding, not bit for bit: SciPy's OpenBLAS 0.3.30 does not apply
    openblas_set_num_threads made from a non-main thread to that thread's calls (measured),
    so a GEMM called from another Python thread may run on OpenBLAS's own threads and
    round differently in the last bit (README, "Thread safety")."""
    import threading
    model = MLP((784, 128, 64, 10), seed=0)
    batches = [_batch(model.sizes, n, np.float32, seed=s)[0] for s, n in enumerate((1, 7, 64, 300, 33, 129))]
    want = [(model.predict_proba(x), model.predict(x), model.forward(x)) for x in batches]
    errors, start = [], threading.Barrier(6)

    def worker(t):
        start.wait()
        for r in range(25):
            i = (t + r) % len(batches)
            p, c, z = model.predict_proba(batches[i]), model.predict(batches[i]), model.forward(batches[i])
            if not (np.allclose(p, want[i][0], rtol=1e-5, atol=1e-7)
                    and np.allclose(z, want[i][2], rtol=1e-5, atol=1e-6)
                    and np.array_equal(c, np.argmax(z, axis=1))):
                errors.append((t, r, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    assert errors == []


def test_training_one_model_from_two_threads_raises():
    import threading
    model = MLP((20, 16, 4), seed=0)
    x, y = _batch(model.sizes, 64, np.float32)
    inside, release, seen = threading.Event(), threading.Event(), []

    def slow_progress():   # a file object that blocks inside fit's progress output
        class F:
            def write(self, s):
                inside.set()
                release.wait(10)

            def flush(self):
                pass
        return F()

    t = threading.Thread(target=lambda: model.fit(x, y, epochs=1, progress="plain", file=slow_progress()))
    t.start()
    assert inside.wait(10)
    for call in (lambda: model.train_step(x, y, 0.1), lambda: model.loss_and_grad(x, y),
                 lambda: model.fit(x, y, epochs=1, progress=False)):
        with pytest.raises(RuntimeError, match="another"):
            call()
        seen.append(1)
    np.testing.assert_array_equal(model.predict(x), model.predict(x))   # inference still works meanwhile
    release.set()
    t.join(10)
    assert len(seen) == 3
    model.train_step(x, y, 0.1)   # the lock is released afterwards


def test_deepcopy_and_pickle_give_an_independent_model():
    import copy
    import pickle
    model = MLP((6, 5, 3), seed=1)
    x, y = _batch(model.sizes, 10, np.float32)
    model.train_step(x, y, 0.1, momentum=0.9)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        for p, q in zip(model.parameters(), other.parameters()):
            np.testing.assert_array_equal(p, q)
        a, b = copy.deepcopy(model), other   # the same next step (momentum buffers copied too)
        a.train_step(x, y, 0.1, momentum=0.9)
        b.train_step(x, y, 0.1, momentum=0.9)
        np.testing.assert_array_equal(a.weights[0], b.weights[0])
        assert not np.array_equal(b.weights[0], model.weights[0])

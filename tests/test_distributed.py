"""fastlog.torch.distributed against single-process PyTorch, on real gloo process groups.

Each world size (1, 2, 4) starts its processes once (subprocesses running this
file with ``--worker``, gloo over 127.0.0.1 on a free port) and runs every case
inside the group; each rank writes what it measured (errors against
``torch.nn.functional`` on the gathered tensors, exceptions raised) to a JSON
file, and the tests here assert on it.  Every launch is bounded by a timeout
and its processes are always killed and joined.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

HERE = os.path.abspath(__file__)
TIMEOUT_S = 240
WIDTHS = {1: [11], 2: [4, 9], 4: [5, 6, 0, 2]}   # uneven (and one empty) shards
TOL = {"float32": (1e-6, 1e-6), "float64": (1e-12, 1e-12)}   # (loss rtol, grad atol)
BF16_ULP = 2.0 ** -7   # one bfloat16 ulp, relative to the value (at most)


# ============================================================== worker side ==
def _cases_ce():
    for dtype in ("float32", "float64"):
        for weighted in (False, True):
            for ign in ("none", "default", "inrange"):
                for red in ("mean", "sum", "none"):
                    for eps in (0.0, 0.1):
                        yield dict(dtype=dtype, weighted=weighted, ign=ign, red=red, eps=eps)
    # bfloat16 logits (computed in float32, rounded once): a subset of the combinations.
    for weighted in (False, True):
        for ign in ("default", "inrange"):
            for red in ("mean", "none"):
                for eps in (0.0, 0.1):
                    yield dict(dtype="bfloat16", weighted=weighted, ign=ign, red=red, eps=eps)


def _cases_lce():
    for dtype in ("float32", "float64"):
        for weighted in (False, True):
            for red in ("mean", "sum", "none"):
                for eps in (0.0, 0.2):
                    for bias in (False, True):
                        yield dict(dtype=dtype, weighted=weighted, red=red, eps=eps, bias=bias,
                                   ign="default")
    # bfloat16 input and weight (float32 GEMMs and kernel on float32 copies, rounded once).
    for weighted in (False, True):
        for red in ("mean", "none"):
            yield dict(dtype="bfloat16", weighted=weighted, red=red, eps=0.1, bias=True, ign="default")


def _data(case, V, N, seed, H=None):
    """The same full tensors on every rank (seeded)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, case["dtype"])
    x = (torch.randn(N, V, generator=g, dtype=torch.float64) * 3).to(dt)
    t = torch.randint(0, V, (N,), generator=g)
    ign = {"none": -100, "default": -100, "inrange": 3}[case["ign"]]
    if case["ign"] != "none":
        t[::4] = ign
    w = (torch.rand(V, generator=g, dtype=torch.float64) + 0.25).to(dt) if case["weighted"] else None
    X = Wl = b = None
    if H is not None:
        X = torch.randn(N, H, generator=g, dtype=torch.float64).to(dt)
        Wl = (torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5).to(dt)
        b = torch.randn(V, generator=g, dtype=torch.float64).to(dt) if case.get("bias") else None
    go = torch.rand(N, generator=g, dtype=torch.float64).to(dt) + 0.5
    return x, t, w, ign, X, Wl, b, go


def _rel(a, b):
    a, b = a.double(), b.double()
    d = (a - b).abs()
    return float((d / b.abs().clamp_min(1e-300)).max()) if d.numel() else 0.0


def _absd(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _within_ulp(a, ref):
    """Every element of a (bfloat16) within one bfloat16 ulp of the float64 reference."""
    a, ref = a.double(), ref.double()
    return bool(((a - ref).abs() <= BF16_ULP * ref.abs()).all())


def _check_loss(loss, ref, dtype):
    if dtype == "bfloat16":
        return _within_ulp(loss, ref)
    # Loss: relative; reduction='none' also has zeros at ignored rows (equal exactly).
    rtol, atol = TOL[dtype]
    ok = torch.allclose(loss.double(), ref.double(), rtol=rtol, atol=0.0 if loss.dim() == 0 else atol,
                        equal_nan=True)
    return ok


def _worker(rank, world, port, out_path):
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    import fastlog
    from fastlog.torch.distributed import (vocab_parallel_cross_entropy,
                                           vocab_parallel_linear_cross_entropy)

    fastlog.set_num_threads(1)
    torch.set_num_threads(1)
    from datetime import timedelta
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    widths = WIDTHS[world]
    V = sum(widths)
    lo = sum(widths[:rank])
    hi = lo + widths[rank]
    N = 13
    results = []

    def record(name, ok, detail=""):
        results.append(dict(name=name, ok=bool(ok), detail=str(detail)))

    # ---- vocab_parallel_cross_entropy: every parameter combination ----------
    for i, case in enumerate(_cases_ce()):
        name = "ce:" + ",".join(f"{k}={v}" for k, v in case.items())
        try:
            x, t, w, ign, _, _, _, go = _data(case, V, N, 100 + i)
            # Oracle: torch in float64 on the same (float32-rounded) values.  torch's own
            # float32 result is itself up to ~1e-6 off it in the sum-reduced cases here.
            ref_x = x.double().clone().requires_grad_(True)
            ref = F.cross_entropy(ref_x, t, weight=None if w is None else w.double(), ignore_index=ign, reduction=case["red"],
                                  label_smoothing=case["eps"])
            (ref * 2.5 if case["red"] != "none" else ref * go).sum().backward()
            shard = x[:, lo:hi].clone().requires_grad_(True)
            before, t_before = shard.detach().clone(), t.clone()
            loss = vocab_parallel_cross_entropy(shard, t, weight=w, ignore_index=ign,
                                                reduction=case["red"], label_smoothing=case["eps"])
            (loss * 2.5 if case["red"] != "none" else loss * go).sum().backward()
            gerr = _absd(shard.grad, ref_x.grad[:, lo:hi])
            gok = (_within_ulp(shard.grad, ref_x.grad[:, lo:hi]) and shard.grad.dtype == x.dtype
                   if case["dtype"] == "bfloat16" else gerr <= TOL[case["dtype"]][1])
            ok = (_check_loss(loss.detach(), ref.detach(), case["dtype"]) and gok
                  and loss.dtype == x.dtype and loss.shape == ref.shape
                  and torch.equal(shard.detach(), before) and torch.equal(t, t_before))
            if case["weighted"]:        # the loss-only path agrees too (half the cases: time)
                with torch.no_grad():
                    l2 = vocab_parallel_cross_entropy(shard, t, weight=w, ignore_index=ign,
                                                      reduction=case["red"], label_smoothing=case["eps"])
                ok = ok and _check_loss(l2, ref.detach(), case["dtype"]) and not l2.requires_grad
            record(name, ok, f"loss {loss.detach().double().sum().item()!r} vs "
                             f"{ref.detach().double().sum().item()!r}, grad err {gerr:.3g}")
        except Exception as e:  # noqa: BLE001 - reported to the test
            record(name, False, repr(e))

    # ---- vocab_parallel_linear_cross_entropy ------------------------------
    H = 6
    for i, case in enumerate(_cases_lce()):
        name = "lce:" + ",".join(f"{k}={v}" for k, v in case.items())
        try:
            _, t, w, ign, X, Wl, b, go = _data(case, V, N, 500 + i, H=H)
            rX, rW = X.double().clone().requires_grad_(True), Wl.double().clone().requires_grad_(True)
            rb = None if b is None else b.double().clone().requires_grad_(True)
            ref = F.linear_cross_entropy(rX, rW, t, linear_bias=rb, weight=None if w is None else w.double(),
                                         reduction=case["red"],
                                         ignore_index=ign, label_smoothing=case["eps"])
            (ref * 1.5 if case["red"] != "none" else ref * go).sum().backward()
            sX = X.clone().requires_grad_(True)
            sW = Wl[lo:hi].clone().requires_grad_(True)
            sb = None if b is None else b[lo:hi].clone().requires_grad_(True)
            kept = [a.detach().clone() for a in (sX, sW, t)]
            loss = vocab_parallel_linear_cross_entropy(sX, sW, t, bias_shard=sb, weight=w,
                                                       ignore_index=ign, reduction=case["red"],
                                                       label_smoothing=case["eps"], chunk_size=7)
            (loss * 1.5 if case["red"] != "none" else loss * go).sum().backward()
            # grad_weight / grad_bias are sums over the N rows: the absolute tolerance is
            # scaled by the size of the reference gradient where it exceeds 1 (float32
            # cannot resolve 1e-6 at 10).
            tol = TOL.get(case["dtype"], (None, None))[1]
            pairs = [(sX.grad, rX.grad), (sW.grad, rW.grad[lo:hi])]
            if b is not None:
                pairs.append((sb.grad, rb.grad[lo:hi]))
            errs = [_absd(a, r) / max(1.0, float(r.abs().max()) if r.numel() else 1.0) for a, r in pairs]
            if case["dtype"] == "bfloat16":
                # one bf16 ulp of each element, plus float32's rounding of the row sums (gW, gb)
                gok = all(a.dtype == X.dtype and (r.numel() == 0 or bool(((a.double() - r).abs()
                          <= BF16_ULP * r.abs() + 1e-5 * r.abs().max()).all())) for a, r in pairs)
            else:
                gok = max(errs) <= tol
            ok_dtype = loss.dtype == X.dtype
            ok = (ok_dtype and _check_loss(loss.detach(), ref.detach(), case["dtype"]) and gok
                  and all(torch.equal(a.detach(), k) for a, k in zip((sX, sW, t), kept)))
            record(name, ok, f"loss {loss.detach().double().sum().item()!r} vs "
                             f"{ref.detach().double().sum().item()!r}, grad errs {errs}")
        except Exception as e:  # noqa: BLE001
            record(name, False, repr(e))

    # ---- bad input: the same kind of error on every rank, no hang ----------
    case = dict(dtype="float32", weighted=False, ign="default")
    x, t, w, ign, _, _, _, _ = _data(case, V, N, 7)
    shard = x[:, lo:hi].clone().requires_grad_(True)

    def expect(name, exc, fn):
        before, tb = shard.detach().clone(), t.clone()
        try:
            fn()
        except exc as e:
            unchanged = torch.equal(shard.detach(), before) and torch.equal(t, tb)
            record(name, unchanged, repr(e))
            return
        except Exception as e:  # noqa: BLE001
            record(name, False, f"wrong exception {e!r}")
            return
        record(name, False, "no exception")

    expect("err:vocab_size", ValueError,
           lambda: vocab_parallel_cross_entropy(shard, t, vocab_size=V + 1))
    bad_t = t.clone()
    bad_t[1] = V
    expect("err:target_too_big", IndexError, lambda: vocab_parallel_cross_entropy(shard, bad_t))
    neg_t = t.clone()
    neg_t[2] = -5
    expect("err:target_negative", IndexError, lambda: vocab_parallel_cross_entropy(shard, neg_t))
    expect("err:weight_length", ValueError,
           lambda: vocab_parallel_cross_entropy(shard, t, weight=torch.ones(V + 2)))
    last = world - 1
    # Only the last rank passes bad arguments: everyone raises.
    expect("err:local_type_on_one_rank", TypeError,
           lambda: vocab_parallel_cross_entropy(shard, t.double() if rank == last else t))
    if world > 1:
        expect("err:mismatched_N", ValueError,
               lambda: vocab_parallel_cross_entropy(shard[:-1] if rank == last else shard,
                                                    t[:-1] if rank == last else t))
        t_other = t.clone()
        t_other[0] = (int(t[0]) + 1) % V if int(t[0]) >= 0 else 0
        expect("err:targets_differ", ValueError,
               lambda: vocab_parallel_cross_entropy(shard, t_other if rank == last else t))
        expect("err:reduction_differs", ValueError,
               lambda: vocab_parallel_cross_entropy(shard, t, reduction="sum" if rank == last else "mean"))
        expect("err:lce_features_differ", ValueError,
               lambda: vocab_parallel_linear_cross_entropy(
                   torch.randn(N, 3 if rank == last else 4), torch.randn(widths[rank], 3 if rank == last else 4),
                   t))
    # Masked vocabulary: row 0 is -inf on all of rank 0's shard (and beyond), row 1 partly.
    for dtype in ("float32", "float64"):
        case = dict(dtype=dtype, weighted=True, ign="default")
        x, t, w, ign, _, _, _, _ = _data(case, V, N, 77)
        x[0, :V - 1] = -float("inf")
        x[1, 1:4] = -float("inf")
        t[0], t[1] = V - 1, 0
        try:
            ref_x = x.double().clone().requires_grad_(True)
            ref = F.cross_entropy(ref_x, t, weight=w.double(), ignore_index=ign, reduction="sum")
            ref.backward()
            shard = x[:, lo:hi].clone().requires_grad_(True)
            loss = vocab_parallel_cross_entropy(shard, t, weight=w, ignore_index=ign, reduction="sum")
            loss.backward()
            gerr = _absd(shard.grad, ref_x.grad[:, lo:hi])
            record(f"ce:masked_{dtype}", _check_loss(loss.detach(), ref.detach(), dtype)
                   and gerr <= TOL[dtype][1], f"{loss.item()!r} vs {ref.item()!r}, grad err {gerr}")
        except Exception as e:  # noqa: BLE001
            record(f"ce:masked_{dtype}", False, repr(e))

    # group=: two independent subgroups of 2 ranks, each sharding its own vocabulary.
    if world == 4:
        subs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
        sub = subs[rank // 2]
        sw = WIDTHS[2]
        slo = sum(sw[:rank % 2])
        case = dict(dtype="float64", weighted=True, ign="default")
        xs, ts, ws, igns, _, _, _, _ = _data(case, sum(sw), N, 900 + rank // 2)
        try:
            ref_x = xs.clone().requires_grad_(True)
            ref = F.cross_entropy(ref_x, ts, weight=ws, ignore_index=igns, label_smoothing=0.05)
            ref.backward()
            part = xs[:, slo:slo + sw[rank % 2]].clone().requires_grad_(True)
            loss = vocab_parallel_cross_entropy(part, ts, sub, weight=ws, ignore_index=igns,
                                                label_smoothing=0.05)
            loss.backward()
            gerr = _absd(part.grad, ref_x.grad[:, slo:slo + sw[rank % 2]])
            record("subgroup", _check_loss(loss.detach(), ref.detach(), "float64") and gerr <= 1e-12,
                   f"{loss.item()!r} vs {ref.item()!r}, grad err {gerr}")
        except Exception as e:  # noqa: BLE001
            record("subgroup", False, repr(e))

    # The group is still usable after the errors.
    try:
        ref = F.cross_entropy(x, t)
        loss = vocab_parallel_cross_entropy(shard.detach(), t)
        record("after_errors_still_works", _check_loss(loss, ref, "float32"), f"{loss} vs {ref}")
    except Exception as e:  # noqa: BLE001
        record("after_errors_still_works", False, repr(e))

    dist.barrier()
    dist.destroy_process_group()
    with open(out_path, "w") as f:
        json.dump(results, f)


# ================================================================ test side ==
def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(world, tmp_path):
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTLOG_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               GLOO_SOCKET_IFNAME="lo")
    outs = [str(tmp_path / f"rank{r}.json") for r in range(world)]
    procs = [subprocess.Popen([sys.executable, HERE, "--worker", str(r), str(world), str(port), outs[r]],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(world)]
    logs = [""] * world
    try:
        deadline = time.monotonic() + TIMEOUT_S
        for r, p in enumerate(procs):
            try:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
                logs[r] = out.decode(errors="replace")
            except subprocess.TimeoutExpired:
                pytest.fail(f"world {world}: rank {r} did not finish within {TIMEOUT_S} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    results = []
    for r in range(world):
        assert procs[r].returncode == 0, f"rank {r} exited with {procs[r].returncode}:\n{logs[r][-3000:]}"
        with open(outs[r]) as f:
            results.append(json.load(f))
    return results


@pytest.fixture(scope="module", params=[1, 2, 4], ids=lambda w: f"world{w}")
def group_results(request, tmp_path_factory):
    world = request.param
    return world, _launch(world, tmp_path_factory.mktemp(f"dist{world}"))


def _failures(results, prefix):
    bad = []
    seen = 0
    for r, res in enumerate(results):
        for item in res:
            if item["name"].startswith(prefix):
                seen += 1
                if not item["ok"]:
                    bad.append(f"rank {r} {item['name']}: {item['detail']}")
    return seen, bad


def test_vocab_parallel_ce_matches_torch(group_results):
    world, results = group_results
    seen, bad = _failures(results, "ce:")
    assert seen == world * (len(list(_cases_ce())) + 2)
    assert not bad, "\n".join(bad[:20])


def test_vocab_parallel_linear_ce_matches_torch(group_results):
    world, results = group_results
    seen, bad = _failures(results, "lce:")
    assert seen == world * len(list(_cases_lce()))
    assert not bad, "\n".join(bad[:20])


def test_bad_input_raises_on_every_rank(group_results):
    world, results = group_results
    seen, bad = _failures(results, "err:")
    assert seen == world * (5 if world == 1 else 9)
    assert not bad, "\n".join(bad)
    # Every rank raised (not just the rank with the bad argument), with a message naming the problem.
    msgs = {item["name"]: item["detail"] for item in results[0] if item["name"].startswith("err:")}
    assert "out of bounds" in msgs["err:target_too_big"]
    assert "add up to" in msgs["err:vocab_size"]
    if world > 1:
        assert f"rank {world - 1}" in msgs["err:local_type_on_one_rank"]
        assert "number of rows N" in msgs["err:mismatched_N"]


def test_subgroups(group_results):
    world, results = group_results
    if world != 4:
        pytest.skip("subgroups are tested in the 4-process group")
    seen, bad = _failures(results, "subgroup")
    assert seen == 4 and not bad, bad


def test_group_usable_after_errors(group_results):
    _, results = group_results
    seen, bad = _failures(results, "after_errors")
    assert seen == len(results) and not bad, bad


def test_without_process_group_runs_as_group_of_one():
    import torch.distributed as dist
    import torch.nn.functional as F

    from fastlog.torch.distributed import vocab_parallel_cross_entropy

    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialized in this process")
    x = torch.randn(9, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 7, (9,))
    loss = vocab_parallel_cross_entropy(x, t, label_smoothing=0.1)
    loss.backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref = F.cross_entropy(x2, t, label_smoothing=0.1)
    ref.backward()
    assert abs(loss.item() - ref.item()) <= 1e-12 * abs(ref.item())
    assert torch.allclose(x.grad, x2.grad, rtol=0, atol=1e-12)


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--worker":
    _worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])


def test_ddp_example_reaches_single_process_accuracy(tmp_path):
    """examples/ddp_mlp.py: DDP on 2 processes with fastlog's loss = the 1-process run."""
    pytest.importorskip("mlxtend")
    example = os.path.join(os.path.dirname(HERE), os.pardir, "examples", "ddp_mlp.py")
    out = tmp_path / "acc.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", GLOO_SOCKET_IFNAME="lo")
    p = subprocess.Popen([sys.executable, example, "--epochs", "2", "--json", str(out)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        log, _ = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail("the DDP example did not finish in time")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, 9)   # the example and the processes it spawned
        p.wait()
    assert p.returncode == 0, log.decode(errors="replace")[-3000:]
    res = json.loads(out.read_text())
    ddp, single = res["ddp"]["accuracy"], res["single"]["accuracy"]
    assert single > 0.85, res                  # it learned (10 classes: chance is 0.1)
    assert abs(ddp - single) <= 0.01, res      # same batches, same init: same model up to rounding

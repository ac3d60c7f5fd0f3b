#!/usr/bin/env python3
"""attnccl.torch under PyTorch 2 on CPU: ranks are processes joined by torch.distributed (gloo),
the attnccl communicator bootstrapped from the group. Every output and gradient is checked
against torch's scaled_dot_product_attention over the whole sequence in fp64, for every algorithm,
the three layouts, causal / window / documents, GQA, B > 1, packed QKV views, sinks, fp32 and
bf16; a small block through torch.compile(fullgraph=True); shard / unshard / local_positions.
Exits 77 (skipped) when torch 2.4+ is absent."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch2_support import reference, rel_err, run_ranks, torch2_or_skip  # noqa: E402

torch = torch2_or_skip()
import attnccl.torch as at  # noqa: E402

ALGOS = ["auto", "ring", "passq", "allgather", "ulysses", "hybrid"]
TOL = {torch.float32: (2e-5, 5e-5), torch.bfloat16: (3e-2, 6e-2)}  # (out, grads), relative to max


def _case(comm, dtype, algo="auto", layout="zigzag", causal=False, window=(-1, -1), cu=None, B=1, S=24, Hq=4,
          Hkv=4, D=16, sinks=False, packed=False, scale=None, seed=0):
    """One attention call and its backward on every rank, checked against the full-sequence
    reference; returns a label on failure (the assertion text), None when it matches."""
    g = torch.Generator().manual_seed(seed)
    full = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    if packed:
        qkv = full(B, S, Hq + 2 * Hkv, D)
        qf, kf, vf = qkv[:, :, :Hq], qkv[:, :, Hq:Hq + Hkv], qkv[:, :, Hq + Hkv:]
    else:
        qf, kf, vf = full(B, S, Hq, D), full(B, S, Hkv, D), full(B, S, Hkv, D)
    sf = full(Hq) if sinks else None
    gout = full(B, S, Hq, D)
    # Reference in fp64 from the same (rounded) inputs the ranks get.
    rq, rk, rv = (x.to(dtype).double().requires_grad_() for x in (qf, kf, vf))
    rs = sf.clone().requires_grad_() if sinks else None
    ref = reference(rq, rk, rv, causal, window, cu, rs, scale)
    ref.backward(gout)

    if packed:
        # The rank's shard of the packed buffer, then views: what a model's qkv projection gives.
        local = at.shard(qkv.to(dtype), comm, layout, cu_seqlens=cu).requires_grad_()
        q, k, v = local[:, :, :Hq], local[:, :, Hq:Hq + Hkv], local[:, :, Hq + Hkv:]
    else:
        q, k, v = (at.shard(x.to(dtype), comm, layout, cu_seqlens=cu).requires_grad_() for x in (qf, kf, vf))
    s = sf.float().clone().requires_grad_() if sinks else None
    out, lse = at.attention(q, k, v, comm, causal=causal, layout=layout, algo=algo, window=window, cu_seqlens=cu,
                            sinks=s, softmax_scale=scale, return_lse=True)
    out.backward(at.shard(gout.to(dtype), comm, layout, cu_seqlens=cu))
    to, tg = TOL[dtype]
    shard = lambda t: at.shard(t, comm, layout, cu_seqlens=cu)  # noqa: E731
    errs = {"out": (rel_err(out, shard(ref)), to)}
    if packed:
        gl = local.grad
        errs["dq"] = (rel_err(gl[:, :, :Hq], shard(rq.grad)), tg)
        errs["dk"] = (rel_err(gl[:, :, Hq:Hq + Hkv], shard(rk.grad)), tg)
        errs["dv"] = (rel_err(gl[:, :, Hq + Hkv:], shard(rv.grad)), tg)
    else:
        errs["dq"] = (rel_err(q.grad, shard(rq.grad)), tg)
        errs["dk"] = (rel_err(k.grad, shard(rk.grad)), tg)
        errs["dv"] = (rel_err(v.grad, shard(rv.grad)), tg)
    if sinks:
        total = s.grad.clone()
        torch.distributed.all_reduce(total)  # each rank's share of a replicated parameter's gradient
        errs["dsinks"] = (rel_err(total, rs.grad), tg)
    if lse.shape != (B, Hq, q.shape[1]) or lse.dtype != torch.float32:
        return "lse shape %s dtype %s" % (tuple(lse.shape), lse.dtype)
    bad = ["%s %.2e > %.0e" % (n, e, t) for n, (e, t) in errs.items() if not e <= t]
    return ", ".join(bad) if bad else None


def _sweep(rank, world, cases, then=()):
    """The cases on every rank, then the functions `then` (one process start for all: starting
    torch takes longer than the cases)."""
    comm = at.Communicator.from_process_group(cpu_threads=1)
    assert comm.rank == rank and comm.size == world
    failures = []
    for kw in cases:
        kw = dict(kw)
        dtype = kw.pop("dtype", torch.float32)
        # fallback: the 0.1 path (contiguous copies, a call per sequence, sinks around the call)
        # that a library without the Ex calls takes; ATTNCCL_PY_NO_EX forces it.
        fallback = kw.pop("fallback", False)
        os.environ["ATTNCCL_PY_NO_EX"] = "1" if fallback else "0"
        msg = _case(comm, dtype, **kw)
        if fallback:
            kw["fallback"] = True
        if msg:
            failures.append("%s %s: %s" % (dtype, kw, msg))
    if at.core.has_ex():
        _packed_goes_in_place(comm)
    comm.destroy()
    if failures:
        raise AssertionError("rank %d, %d of %d cases failed:\n  " % (rank, len(failures), len(cases))
                             + "\n  ".join(failures))
    for fn in then:
        fn(rank, world)


def _packed_goes_in_place(comm):
    """With the 0.2 calls, qkv.unbind(2)-style views reach the library as they are: the
    addresses and strides of the views, no copy."""
    from attnccl.torch import _ops
    seen = []
    real = _ops.core.attn_forward_ex
    _ops.core.attn_forward_ex = lambda c, d, a, t, stream=None: (seen.append((t.q, t.k, t.kStrides.token,
                                                                                t.kStrides.head)),
                                                                   real(c, d, a, t, stream))
    try:
        qkv = torch.randn(2, 5, 3, 4, 8)  # [B, T, 3, H, D]
        q, k, v = qkv.unbind(2)
        at.attention(q, k, v, comm, causal=True, seq_len=5 * comm.nranks)
    finally:
        _ops.core.attn_forward_ex = real
    assert seen == [(q.data_ptr(), k.data_ptr(), 3 * 4 * 8, 8)], (seen, q.data_ptr(), k.data_ptr())


def _features():
    """Every algorithm over layouts, masks, documents and GQA (fp32), and a bf16 subset."""
    cases = []
    for algo in ALGOS:
        for layout in ("zigzag", "contiguous", "striped"):
            cases.append(dict(algo=algo, layout=layout, causal=True))
        cases.append(dict(algo=algo, layout="zigzag", causal=False, Hq=6, Hkv=2))      # GQA
        cases.append(dict(algo=algo, causal=True, window=(5, -1)))                      # sliding window
        cases.append(dict(algo=algo, window=(3, 4)))                                    # two-sided band
        cases.append(dict(algo=algo, causal=True, cu=[0, 12, 24], layout="zigzag"))     # documents
        cases.append(dict(algo=algo, causal=True, cu=[0, 7, 24], layout="striped"))     # uneven documents
        cases.append(dict(algo=algo, causal=True, B=2, packed=True, Hq=4, Hkv=2))       # batch + packed views
        cases.append(dict(algo=algo, causal=True, sinks=True, Hq=4, Hkv=2))             # attention sinks
        cases.append(dict(algo=algo, causal=True, dtype=torch.bfloat16, Hq=4, Hkv=2))
    cases.append(dict(algo="ring", causal=True, sinks=True, B=2, packed=True, dtype=torch.bfloat16, scale=0.3))
    for algo in ("ring", "ulysses"):
        cases.append(dict(algo=algo, causal=True, sinks=True, B=2, packed=True, Hq=4, Hkv=2, fallback=True))
        cases.append(dict(algo=algo, causal=True, cu=[0, 7, 24], layout="striped", fallback=True))
    cases.append(dict(algo="auto", causal=True, sinks=True, dtype=torch.bfloat16, fallback=True))
    return cases


def _compile_block(rank, world):
    """A block (qkv projection, packed views, attention, output projection) under
    torch.compile(fullgraph=True): a graph break would raise. Same output and gradients as eager."""
    comm = at.Communicator.from_process_group(cpu_threads=1)
    H, D, S = 4, 8, 24
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(H * D, 3 * H * D)
            self.o = torch.nn.Linear(H * D, H * D)
            self.sinks = torch.nn.Parameter(torch.randn(H))

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(x).view(B, T, 3, H, D).unbind(2)
            y = at.attention(q, k, v, comm, causal=True, algo="ring", sinks=self.sinks)
            return self.o(y.reshape(B, T, H * D))

    block = Block()
    x = at.shard(torch.randn(2, S, H * D), comm)
    eager = block(x)
    eager.sum().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.sum().backward()
    assert rel_err(out, eager) < 1e-6, rel_err(out, eager)
    for p, g in zip(block.parameters(), grads):
        assert rel_err(p.grad, g) < 1e-6, rel_err(p.grad, g)
    comm.destroy()


def _shard_roundtrip(rank, world):
    comm = at.Communicator.from_process_group(cpu_threads=1)
    for layout in ("zigzag", "contiguous", "striped"):
        for S, cu in ((24, None), (25, None), (24, [0, 7, 24])):
            pos = at.local_positions(S, comm, layout, cu_seqlens=cu)
            everyone = torch.cat([at.local_positions(S, comm, layout, cu_seqlens=cu, rank=r) for r in range(world)])
            assert sorted(everyone.tolist()) == list(range(S)), (layout, S, everyone)
            full = torch.arange(2 * S * 3, dtype=torch.float32).view(2, S, 3)
            local = at.shard(full, comm, layout, cu_seqlens=cu)
            assert torch.equal(local, full[:, pos]), (layout, S)
            x = local.clone().requires_grad_()
            back = at.unshard(x, comm, layout, seq_len=S, cu_seqlens=cu)
            assert torch.equal(back, full), (layout, S)
            # Each rank's loss reads the whole gathered tensor: its tokens' gradient sums over ranks.
            (back * (rank + 1)).sum().backward()
            assert torch.equal(x.grad, torch.full_like(x, world * (world + 1) / 2)), x.grad
    comm.destroy()
    # A subgroup: its rank 0 (global rank 1) makes the id; group ranks, not global ones, join.
    sub = torch.distributed.new_group([1, 2])
    if rank in (1, 2):
        c = at.Communicator.from_process_group(sub, cpu_threads=1)
        assert (c.rank, c.size) == (rank - 1, 2), (c.rank, c.size)
        msg = _case(c, torch.float32, algo="ring", causal=True, B=2, Hq=4, Hkv=2)
        assert msg is None, msg
        c.destroy()


class Torch2Attention(unittest.TestCase):
    def test_library_has_ex(self):
        # The 0.2 calls are what the sweep means to test; a 0.1 library gets the fallback only.
        if not at.core.has_ex():
            self.skipTest("libattnccl has no attncclAttnForwardEx: only the 0.1 fallback is tested")

    def test_features_2_ranks_and_compile(self):
        run_ranks(_sweep, 2, _features(), (_compile_block,))

    def test_features_3_ranks_and_shard_unshard(self):
        run_ranks(_sweep, 3, _features(), (_shard_roundtrip,))

    def test_bad_arguments(self):
        # Rejected in Python before any rank would enter the collective.
        class Fake:
            nranks, rank, key = 2, 0, 0
        q = torch.zeros(1, 4, 2, 8)
        with self.assertRaisesRegex(ValueError, "algo 'nope'"):
            at.attention(q, q, q, Fake(), algo="nope")
        with self.assertRaisesRegex(ValueError, "layout 'diag'"):
            at.attention(q, q, q, Fake(), layout="diag")
        with self.assertRaisesRegex(ValueError, r"\[B, S_local, H, D\]"):
            at.attention(q[0], q[0], q[0], Fake())
        with self.assertRaisesRegex(TypeError, "float32, float16 or bfloat16"):
            at.attention(q.double(), q.double(), q.double(), Fake())


if __name__ == "__main__":
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""The PyTorch binding (python/attnccl) against PyTorch's own attention math.

Ranks are processes started with torch.multiprocessing (2 and 3 ranks, one spawn per world
size running every case). Each rank builds the whole problem from a seed, computes the reference
softmax(Q K^T * scale + mask) V in fp64 with PyTorch autograd, runs attnccl's forward and backward
on its own tokens through attnccl.torch_attn.attention, and compares output, LSE and dQ/dK/dV on
its slice (relative to the whole tensor's norm). Algorithms ring, passq, allgather, ulysses,
hybrid and auto; layouts contiguous, zigzag and striped; full, causal, windowed and document
masks; GQA; fp32 and bf16.

Run by CTest with ATTNCCL_LIBRARY (the built libattnccl.so) and PYTHONPATH=python. Exits 77
(CTest: skipped) when torch cannot be imported.
"""
import math
import os
import sys
import time
import traceback

try:
    import torch
    import torch.multiprocessing as mp
except ImportError as e:  # Debian: apt-get install python3-torch (run with /usr/bin/python3)
    print("SKIP: torch is not importable by %s (%s); install python3-torch" % (sys.executable, e))
    sys.exit(77)

import attnccl
from attnccl.torch_attn import attention, local_positions

S, HQ, HKV, D = 41, 4, 2, 8  # uneven length; GQA with fewer KV heads than 3 ranks
ALGOS = ["ring", "passq", "allgather", "ulysses", "hybrid", "auto"]
LAYOUTS = ["contiguous", "zigzag", "striped"]
MASKS = {
    "full": dict(),
    "causal": dict(causal=True),
    "window": dict(causal=True, window=(6, -1)),
    "documents": dict(causal=True, cu_seqlens=[0, 9, 23, S]),
    "docs-bidir-window": dict(window=(4, 3), cu_seqlens=[0, 17, S]),
}
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def cases():
    """(algo, layout, mask, dtype): every algorithm with every layout, the masks rotating, one
    bf16 case per algorithm."""
    out, names = [], list(MASKS)
    for i, algo in enumerate(ALGOS):
        for j, layout in enumerate(LAYOUTS):
            mask = names[(i + j) % len(names)]
            dtype = torch.bfloat16 if j == (i + 2) % len(LAYOUTS) else torch.float32
            out.append((algo, layout, mask, dtype))
    return out


def visible(desc):
    """[S_q, S_k] bool matrix of the API's visibility rule."""
    i = torch.arange(desc.seq_len).view(-1, 1)
    j = torch.arange(desc.seq_len).view(1, -1)
    doc = torch.zeros(desc.seq_len, dtype=torch.int64)
    if desc.cu_seqlens:
        for n, (a, b) in enumerate(zip(desc.cu_seqlens[:-1], desc.cu_seqlens[1:])):
            doc[a:b] = n
    m = doc.view(-1, 1) == doc.view(1, -1)
    if desc.causal:
        m &= j <= i
    if desc.window[0] >= 0:
        m &= (i - j) <= desc.window[0]
    if desc.window[1] >= 0:
        m &= (j - i) <= desc.window[1]
    return m


def reference(q, k, v, dout, desc):
    """fp64 attention with PyTorch autograd: out, lse [H, S], dq, dk, dv."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    g = desc.heads_q // desc.heads_kv
    kk, vv = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    scores = torch.einsum("ihd,jhd->hij", q, kk) / math.sqrt(desc.head_dim)
    mask = visible(desc)
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    p = torch.exp(scores - lse.unsqueeze(-1)).nan_to_num(0.0)  # a row without keys: O = 0
    out = torch.einsum("hij,jhd->ihd", p, vv)
    (out * dout.double()).sum().backward()
    return out.detach(), lse.detach(), q.grad, k.grad, v.grad


def rel_err(got, want, whole):
    return (got.double() - want).norm().item() / max(whole.norm().item(), 1e-30)


def run_case(comm, nranks, rank, algo, layout, mask, dtype, seed):
    desc = attnccl.AttnDesc(S, HQ, D, heads_kv=HKV, layout=layout, **MASKS[mask])
    gen = torch.Generator().manual_seed(seed)
    q, k, v, dout = (torch.randn(S, h, D, generator=gen) for h in (HQ, HKV, HKV, HQ))
    q, k, v, dout = (t.to(dtype) for t in (q, k, v, dout))  # the reference sees the rounded inputs
    out_r, lse_r, dq_r, dk_r, dv_r = reference(q, k, v, dout, desc)

    pos = local_positions(desc, nranks, rank)
    ql, kl, vl = (t[pos].clone().requires_grad_() for t in (q, k, v))
    out, lse = attention(ql, kl, vl, comm, desc, algo=algo, return_lse=True)
    (out.double() * dout[pos].double()).sum().backward()

    tol = TOL[dtype]
    what = "%d ranks, rank %d, %s %s %s %s, seed %d" % (nranks, rank, algo, layout, mask, dtype, seed)
    for name, got, want, whole in (("out", out, out_r[pos], out_r), ("dq", ql.grad, dq_r[pos], dq_r),
                                   ("dk", kl.grad, dk_r[pos], dk_r), ("dv", vl.grad, dv_r[pos], dv_r)):
        if not torch.isfinite(got).all():
            raise AssertionError("%s: %s has non-finite values" % (what, name))
        e = rel_err(got, want, whole)
        if e > tol:
            raise AssertionError("%s: %s relative error %.3g > %.3g" % (what, name, e, tol))
    want_lse = lse_r[:, pos].float()
    if not torch.equal(torch.isinf(lse), torch.isinf(want_lse)):
        raise AssertionError("%s: LSE is -inf on different rows than the reference" % what)
    fin = torch.isfinite(want_lse)
    if fin.any() and dtype == torch.float32:
        e = (lse[fin] - want_lse[fin]).abs().max().item()
        if e > 1e-4:
            raise AssertionError("%s: LSE absolute error %.3g > 1e-4" % (what, e))


def rank_main(rank, nranks, queue):
    torch.set_num_threads(1)
    with attnccl.Communicator.from_queue(rank, nranks, queue, cpu_threads=1, timeout_ms=60000) as comm:
        for n, (algo, layout, mask, dtype) in enumerate(cases()):
            try:
                run_case(comm, nranks, rank, algo, layout, mask, dtype, seed=1000 * nranks + n)
            except Exception:
                traceback.print_exc()
                raise


def check_api_errors():
    """Errors surface as Python exceptions naming the problem (no communicator needed)."""
    desc = attnccl.AttnDesc(S, HQ, D, heads_kv=3)  # HQ % HKV != 0
    try:
        attnccl.local_tokens(desc, 2, 0)
    except attnccl.AttncclError as e:
        assert "invalid argument" in str(e), str(e)
    else:
        raise AssertionError("a descriptor with 4 query heads and 3 KV heads was accepted")
    try:
        attention(torch.zeros(1, HQ, D, dtype=torch.float64), torch.zeros(1, HKV, D), torch.zeros(1, HKV, D),
                  None, attnccl.AttnDesc(S, HQ, D, heads_kv=HKV))
    except TypeError as e:
        assert "float64" in str(e), str(e)
    else:
        raise AssertionError("float64 tensors were accepted")


def main():
    lib = os.environ.get("ATTNCCL_LIBRARY")
    attnccl.load_library(lib)
    print("attnccl %d.%d.%d from %s, torch %s" % (attnccl.version() + (lib or "the default path", torch.__version__)))
    check_api_errors()
    ctx = mp.get_context("spawn")
    for nranks in (2, 3):
        t0 = time.time()
        mp.spawn(rank_main, args=(nranks, ctx.Queue()), nprocs=nranks, join=True)
        print("%d ranks: %d cases (algorithm x layout, masks and dtypes rotating) OK in %.1f s"
              % (nranks, len(cases()), time.time() - t0))
    print("PASS")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""attnccl's ring from PyTorch against what a CPU user writes today in PyTorch, same shapes,
causal, forward and forward + backward:

  sdpa       torch's scaled_dot_product_attention on the whole sequence, one process with as
             many intra-op threads as the CP run has ranks (the same cores)
  sdpa-ring  a zigzag ring of torch's CPU flash-attention calls (the kernel behind SDPA, which
             also returns the LSE) over torch.distributed gloo with LSE merges, the
             ring-flash-attention schedule; its backward passes dK/dV around the ring with K/V
  attnccl    attnccl.torch.attention(algo="ring", layout="zigzag") over a communicator made
             from the same gloo group (one CPU thread per rank for the library)

Ranks are processes with 1 intra-op thread each. Every run first checks that sdpa-ring and
attnccl agree with each other (outputs and gradients) before timing them. Times: median of
--iters after --warmup, the slowest rank's time of each iteration.

  .venv/bin/python perf/torch_cp_perf.py --ranks 2 --seq 2048 4096 --heads 8 --dim 64
(needs ATTNCCL_LIBRARY or an editable install; PYTHONPATH=python in a checkout)
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import attnccl.torch as at  # noqa: E402

FA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
FA_BWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


# ------------------------------------------------------------------ the SDPA ring (zigzag)
# Rank r holds chunks r and 2P-1-r of the sequence (2P chunks). At step s it holds the K/V of
# rank src = (r - s) mod P:  s = 0: causal over its own tokens;  src < r: all its queries
# against src's first chunk (all earlier, no mask);  src > r: its second chunk's queries against
# all of src's keys (all earlier).  Tensors are [B, H, T, D] as the kernel takes them.
def _blocks(r, src, T):
    h = T // 2
    if src == r:
        return slice(0, T), slice(0, T), True
    if src < r:
        return slice(0, T), slice(0, h), False
    return slice(h, T), slice(0, T), False


def _ring_pass(tensors, rank, P):
    """Each tensor to rank+1, the ones of rank-1 back (gloo point-to-point)."""
    out = [torch.empty_like(t) for t in tensors]
    reqs = []
    for t, o in zip(tensors, out):
        reqs.append(dist.isend(t.contiguous(), (rank + 1) % P))
        reqs.append(dist.irecv(o, (rank - 1) % P))
    for q in reqs:
        q.wait()
    return out


def sdpa_ring_forward(q, k, v, rank, P):
    T = q.shape[2]
    out = torch.zeros_like(q, dtype=torch.float32)
    lse = torch.full(q.shape[:3], float("-inf"), dtype=torch.float32)
    kv = (k, v)
    for s in range(P):
        src = (rank - s) % P
        qs, ks, causal = _blocks(rank, src, T)
        o, l = FA(q[:, :, qs], kv[0][:, :, ks], kv[1][:, :, ks], 0.0, causal)
        # merge: lse' = logaddexp(lse, l); out' = out e^(lse - lse') + o e^(l - lse')
        new = torch.logaddexp(lse[:, :, qs], l)
        out[:, :, qs] = out[:, :, qs] * torch.exp(lse[:, :, qs] - new).unsqueeze(-1) + \
            o.float() * torch.exp(l - new).unsqueeze(-1)
        lse[:, :, qs] = new
        if s + 1 < P:
            kv = _ring_pass(kv, rank, P)
    return out.to(q.dtype), lse


def sdpa_ring_backward(dout, q, k, v, out, lse, rank, P):
    T = q.shape[2]
    dq = torch.zeros_like(q, dtype=torch.float32)
    kv = (k, v)
    dkv = (torch.zeros_like(k, dtype=torch.float32), torch.zeros_like(v, dtype=torch.float32))
    for s in range(P):
        src = (rank - s) % P
        qs, ks, causal = _blocks(rank, src, T)
        # The kernel's backward with the final O and LSE gives this block's exact share.
        gq, gk, gv = FA_BWD(dout[:, :, qs].contiguous(), q[:, :, qs].contiguous(), kv[0][:, :, ks].contiguous(),
                            kv[1][:, :, ks].contiguous(), out[:, :, qs].contiguous(), lse[:, :, qs].contiguous(),
                            0.0, causal)
        dq[:, :, qs] += gq
        dkv[0][:, :, ks] += gk
        dkv[1][:, :, ks] += gv
        # K/V move on; the dK/dV accumulated for them travel along and are home after P passes.
        if s + 1 < P:
            kv = _ring_pass(kv, rank, P)
        dkv = tuple(_ring_pass(dkv, rank, P))
    return dq.to(q.dtype), dkv[0].to(k.dtype), dkv[1].to(v.dtype)


# ------------------------------------------------------------------ timing
def _timed(fn, warmup, iters, sync=True):
    times = []
    for i in range(warmup + iters):
        if sync:
            dist.barrier()
        t0 = time.perf_counter()
        fn()
        dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        if sync:
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)
        if i >= warmup:
            times.append(float(dt))
    return statistics.median(times)


def _inputs(B, S, H, D, dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, S, H, D, generator=g).to(dtype) for _ in range(4)]  # q, k, v, dout


def _cp_worker(rank, P, init, args, results):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init, rank=rank, world_size=P)
    comm = at.Communicator.from_process_group(cpu_threads=1)
    dtype = getattr(torch, args.dtype)
    for S in args.seq:
        full = _inputs(args.batch, S, args.heads, args.dim, dtype)
        q, k, v, dout = (at.shard(t, comm, "zigzag").contiguous() for t in full)
        # attnccl: [B, T, H, D]
        qa, ka, va = (t.clone().requires_grad_() for t in (q, k, v))

        def at_fwd():
            with torch.no_grad():
                at.attention(qa, ka, va, comm, causal=True, algo="ring")

        def at_fwd_bwd():
            o = at.attention(qa, ka, va, comm, causal=True, algo="ring")
            o.backward(dout)

        # the SDPA ring: [B, H, T, D]
        qt, kt, vt, dt = (t.transpose(1, 2).contiguous() for t in (q, k, v, dout))

        def ring_fwd():
            return sdpa_ring_forward(qt, kt, vt, rank, P)

        def ring_fwd_bwd():
            o, l = sdpa_ring_forward(qt, kt, vt, rank, P)
            return o, sdpa_ring_backward(dt, qt, kt, vt, o, l, rank, P)

        # Agreement check before timing.
        o = at.attention(qa, ka, va, comm, causal=True, algo="ring")
        o.backward(dout)
        ro, (rdq, rdk, rdv) = ring_fwd_bwd()
        err = max(float((a.detach().float() - b.transpose(1, 2).float()).abs().max()) for a, b in
                  ((o, ro), (qa.grad, rdq), (ka.grad, rdk), (va.grad, rdv)))
        tol = 1e-3 if dtype == torch.float32 else 6e-2
        assert err < tol, "S=%d: sdpa-ring and attnccl differ by %.3e" % (S, err)
        row = {"S": S, "check_maxdiff": err}
        row["attnccl_fwd"] = _timed(at_fwd, args.warmup, args.iters)
        row["attnccl_fwdbwd"] = _timed(at_fwd_bwd, args.warmup, args.iters)
        row["sdpa_ring_fwd"] = _timed(ring_fwd, args.warmup, args.iters)
        row["sdpa_ring_fwdbwd"] = _timed(ring_fwd_bwd, args.warmup, args.iters)
        if rank == 0:
            results.put(row)
    comm.destroy()
    dist.destroy_process_group()


def _sdpa_single(args, threads):
    torch.set_num_threads(threads)
    dtype = getattr(torch, args.dtype)
    rows = {}
    for S in args.seq:
        q, k, v, dout = (t.transpose(1, 2) for t in _inputs(args.batch, S, args.heads, args.dim, dtype))
        qa, ka, va = (t.contiguous().requires_grad_() for t in (q, k, v))
        dt = dout.contiguous()
        F = torch.nn.functional.scaled_dot_product_attention

        def fwd():
            with torch.no_grad():
                F(qa, ka, va, is_causal=True)

        def fwd_bwd():
            F(qa, ka, va, is_causal=True).backward(dt)
        rows[S] = (_timed(fwd, args.warmup, args.iters, sync=False), _timed(fwd_bwd, args.warmup, args.iters, sync=False))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--seq", type=int, nargs="+", default=[2048, 4096])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_cp_worker, args=(args.ranks, os.path.join(d, "rv"), args, results), nprocs=args.ranks)
    cp = {}
    while not results.empty():
        r = results.get()
        cp[r["S"]] = r
    single = _sdpa_single(args, args.ranks)
    print("torch %s, %d ranks x 1 thread vs sdpa with %d threads; B=%d H=%d D=%d %s causal; median of %d (ms)"
          % (torch.__version__, args.ranks, args.ranks, args.batch, args.heads, args.dim, args.dtype, args.iters))
    print("%6s | %9s %9s %9s | %9s %9s %9s | %s" % ("S", "sdpa", "sdpa-ring", "attnccl", "sdpa", "sdpa-ring",
                                                   "attnccl", "check"))
    print("%6s | %29s | %29s |" % ("", "forward", "forward + backward"))
    for S in args.seq:
        r, (sf, sb) = cp[S], single[S]
        print("%6d | %9.1f %9.1f %9.1f | %9.1f %9.1f %9.1f | %.1e" % (
            S, sf * 1e3, r["sdpa_ring_fwd"] * 1e3, r["attnccl_fwd"] * 1e3, sb * 1e3, r["sdpa_ring_fwdbwd"] * 1e3,
            r["attnccl_fwdbwd"] * 1e3, r["check_maxdiff"]))


if __name__ == "__main__":
    main()

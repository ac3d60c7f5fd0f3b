"""attnccl attention as torch.library custom ops (attnccl::attn_fwd / attnccl::attn_bwd).

Custom ops with fake (meta) implementations so torch.compile(fullgraph=True) traces a model that
calls attention() without a graph break; autograd is registered on the forward op, and the
backward is an op too, so AOTAutograd traces it as well. Non-tensor arguments are plain values:
the communicator goes in as its registry key (_comm.lookup).

The one place that talks to the library is _launch_fwd / _launch_bwd: with the 0.2 calls
(attncclAttnForwardEx / BackwardEx, core.has_ex()) every tensor goes in with its strides, the
whole batch in one call, sinks in the library. Without them (a 0.1 library) the fallback copies
to contiguous, runs one call per batch entry, and applies sinks around the call:
    LSE' = logaddexp(LSE, sink_h),   O' = O * exp(LSE - LSE')
which is exact, and whose backward is the 0.1 backward given O' and LSE' (it recomputes
P' = exp(s - LSE') and D' = dO'.O', the terms the sink gradient of dq, dk, dv needs), plus
dsink_h = -sum_rows exp(sink_h - LSE') (dO'.O') over this rank's rows.

Sinks are a parameter every rank holds a copy of, like the projections around attention: its
gradient here is this rank's share, and the sum over the context-parallel group (the all-reduce
the group already does for every replicated parameter) is the total. (dq, dk, dv are complete:
the collective backward already brings every rank's contribution to the tokens' owner.) The 0.2
call returns the total on every rank, so it is divided by the number of ranks.
"""
from typing import List, Optional, Tuple

import torch

from .. import core
from . import _comm

_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _strides(t):
    """attncclStrides_t of a [B, T, H, D] view (elements)."""
    sb, st, sh, _ = t.stride()
    return core.Strides(sb, st, sh)


def _stream(comm, t):
    if t.is_cuda:
        return torch.cuda.current_stream(t.device).cuda_stream
    return None


def _desc(q, k, seq_len, layout, causal, wl, wr, cu, scale):
    return core.AttnDesc(seq_len, q.shape[2], q.shape[3], heads_kv=k.shape[2], layout=layout, causal=causal,
                         window=(wl, wr), softmax_scale=scale, cu_seqlens=list(cu) if cu else None,
                         batch=q.shape[0])


def _check_tokens(comm, desc, q):
    from ._shard import _positions
    n = len(_positions(desc.seq_len, comm.nranks, comm.rank, desc.layout,
                       tuple(desc.cu_seqlens) if desc.cu_seqlens else None))
    if q.shape[1] != n:
        raise ValueError("attnccl attention: q has %d tokens per sequence, but rank %d holds %d of seq_len %d "
                         "under layout %s (pass seq_len= for uneven shards)" % (q.shape[1], comm.rank, n,
                                                                               desc.seq_len, desc.layout))


def _lastdim(t):
    # The library's CUDA backend takes contiguous tensors only (strides are a CPU feature so
    # far): copy there; on the CPU only a non-contiguous last dimension needs a copy.
    if t.is_cuda:
        return t.contiguous()
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch_fwd(comm, desc, algo, q, k, v, sinks):
    B, T, Hq, _ = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    lse = torch.empty((B, Hq, T), dtype=torch.float32, device=q.device)
    dname = _DTYPES[q.dtype]
    if core.has_ex():
        q, k, v = _lastdim(q), _lastdim(k), _lastdim(v)
        t = core.tensors_struct()
        t.q, t.k, t.v, t.out, t.lse = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr()
        t.qStrides, t.kStrides, t.vStrides = _strides(q), _strides(k), _strides(v)
        if sinks is not None:
            t.sinks = sinks.data_ptr()
        core.attn_forward_ex(comm, desc.struct(dname), algo, t, _stream(comm, q))
        return out, lse
    one = core.AttnDesc(desc.seq_len, desc.heads_q, desc.head_dim, desc.heads_kv, desc.layout, desc.causal,
                        desc.window, desc.softmax_scale, desc.cu_seqlens)
    d = one.struct(dname)
    for b in range(B):
        qb, kb, vb = q[b].contiguous(), k[b].contiguous(), v[b].contiguous()
        ob, lb = torch.empty_like(qb), torch.empty((Hq, T), dtype=torch.float32, device=q.device)
        core.attn_forward(comm, d, algo, qb.data_ptr(), kb.data_ptr(), vb.data_ptr(), ob.data_ptr(), lb.data_ptr())
        out[b], lse[b] = ob, lb
    if sinks is not None:
        s = sinks.view(1, Hq, 1)
        lse2 = torch.logaddexp(lse, s)
        out = (out.float() * torch.exp(lse - lse2).transpose(1, 2).unsqueeze(-1)).to(q.dtype)
        lse = lse2
    return out, lse


def _launch_bwd(comm, desc, algo, q, k, v, out, lse, dout, sinks):
    B, T, Hq, _ = q.shape
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    dsinks = torch.empty((Hq,) if sinks is not None else (0,), dtype=torch.float32, device=q.device)
    dname = _DTYPES[q.dtype]
    if core.has_ex():
        q, k, v, dout = _lastdim(q), _lastdim(k), _lastdim(v), _lastdim(dout)
        t = core.tensors_struct()
        t.q, t.k, t.v, t.out, t.lse = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr()
        t.dout, t.dq, t.dk, t.dv = dout.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr()
        t.qStrides, t.kStrides, t.vStrides = _strides(q), _strides(k), _strides(v)
        t.outStrides, t.doutStrides = _strides(out), _strides(dout)
        if sinks is not None:
            t.sinks, t.dsinks = sinks.data_ptr(), dsinks.data_ptr()
        core.attn_backward_ex(comm, desc.struct(dname), algo, t, _stream(comm, q))
        # The library writes the total over all ranks; autograd wants this rank's share (see top).
        return dq, dk, dv, dsinks / comm.nranks
    one = core.AttnDesc(desc.seq_len, desc.heads_q, desc.head_dim, desc.heads_kv, desc.layout, desc.causal,
                        desc.window, desc.softmax_scale, desc.cu_seqlens)
    d = one.struct(dname)
    for b in range(B):
        qb, kb, vb = q[b].contiguous(), k[b].contiguous(), v[b].contiguous()
        ob, lb, gb = out[b].contiguous(), lse[b].contiguous(), dout[b].contiguous()
        dqb, dkb, dvb = torch.empty_like(qb), torch.empty_like(kb), torch.empty_like(vb)
        core.attn_backward(comm, d, algo, qb.data_ptr(), kb.data_ptr(), vb.data_ptr(), ob.data_ptr(), lb.data_ptr(),
                           gb.data_ptr(), dqb.data_ptr(), dkb.data_ptr(), dvb.data_ptr())
        dq[b], dk[b], dv[b] = dqb, dkb, dvb
    if sinks is not None:
        rows = (dout.float() * out.float()).sum(-1).transpose(1, 2)  # [B, Hq, T]: dO'.O'
        dsinks = -(torch.exp(sinks.view(1, Hq, 1) - lse) * rows).sum(dim=(0, 2))
    return dq, dk, dv, dsinks


@torch.library.custom_op("attnccl::attn_fwd", mutates_args=())
def attn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: Optional[torch.Tensor], comm: int,
             seq_len: int, layout: str, causal: bool, window_left: int, window_right: int, cu_seqlens: List[int],
             softmax_scale: float, algo: str) -> Tuple[torch.Tensor, torch.Tensor]:
    c = _comm.lookup(comm)
    desc = _desc(q, k, seq_len, layout, causal, window_left, window_right, cu_seqlens, softmax_scale)
    _check_tokens(c, desc, q)
    return _launch_fwd(c, desc, algo, q, k, v, sinks)


@attn_fwd.register_fake
def _(q, k, v, sinks, comm, seq_len, layout, causal, window_left, window_right, cu_seqlens, softmax_scale, algo):
    B, T, Hq, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((B, Hq, T), dtype=torch.float32)


@torch.library.custom_op("attnccl::attn_bwd", mutates_args=())
def attn_bwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
             dout: torch.Tensor, sinks: Optional[torch.Tensor], comm: int, seq_len: int, layout: str, causal: bool,
             window_left: int, window_right: int, cu_seqlens: List[int], softmax_scale: float,
             algo: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    c = _comm.lookup(comm)
    desc = _desc(q, k, seq_len, layout, causal, window_left, window_right, cu_seqlens, softmax_scale)
    return _launch_bwd(c, desc, algo, q, k, v, out, lse, dout.to(q.dtype), sinks)


@attn_bwd.register_fake
def _(q, k, v, out, lse, dout, sinks, comm, seq_len, layout, causal, window_left, window_right, cu_seqlens,
      softmax_scale, algo):
    hq = q.shape[2] if sinks is not None else 0
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            q.new_empty((hq,), dtype=torch.float32))


def _setup_context(ctx, inputs, output):
    q, k, v, sinks = inputs[:4]
    out, lse = output
    ctx.params = inputs[4:]
    ctx.has_sinks = sinks is not None
    ctx.save_for_backward(q, k, v, out, lse, sinks)
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse, sinks = ctx.saved_tensors
    # Every rank joins the collective backward, also one whose output gradient is zero.
    if dout is None:
        dout = torch.zeros_like(out)
    dq, dk, dv, dsinks = attn_bwd(q, k, v, out, lse, dout, sinks if ctx.has_sinks else None, *ctx.params)
    return dq, dk, dv, (dsinks if ctx.has_sinks else None), None, None, None, None, None, None, None, None, None


torch.library.register_autograd("attnccl::attn_fwd", _backward, setup_context=_setup_context)

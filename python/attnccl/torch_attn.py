"""PyTorch autograd over attnccl's attention collectives (CPU tensors).

Every rank of the communicator calls attention() with its own tokens (see local_positions), and
later runs backward; both are collectives, so every rank must take part in the same order (as it
does when each rank runs the same training step). Tensors are [T_local, heads, head_dim], rows in
increasing global position; float32, float16 or bfloat16.
"""
import torch

from . import core

_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def local_positions(desc, nranks, rank):
    """This rank's global token positions under desc's layout (int64 tensor)."""
    return torch.tensor(core.local_tokens(desc, nranks, rank), dtype=torch.int64)


def _check_inputs(q, k, v, desc):
    if q.dtype not in _DTYPES:
        raise TypeError("attnccl attention takes float32, float16 or bfloat16 tensors, not %s" % q.dtype)
    for name, t, heads in (("q", q, desc.heads_q), ("k", k, desc.heads_kv), ("v", v, desc.heads_kv)):
        if t.device.type != "cpu":
            raise ValueError("%s is on %s; the binding handles CPU tensors" % (name, t.device))
        if t.dtype != q.dtype:
            raise TypeError("%s is %s but q is %s" % (name, t.dtype, q.dtype))
        if t.dim() != 3 or t.shape[1] != heads or t.shape[2] != desc.head_dim or t.shape[0] != q.shape[0]:
            raise ValueError("%s has shape %s, expected [%d, %d, %d]" % (name, tuple(t.shape), q.shape[0], heads,
                                                                         desc.head_dim))


class AttnFunction(torch.autograd.Function):
    """out, lse = AttnFunction.apply(q, k, v, comm, desc, algo); lse is not differentiable."""

    @staticmethod
    def forward(ctx, q, k, v, comm, desc, algo):
        _check_inputs(q, k, v, desc)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = torch.empty_like(q)
        lse = torch.empty((desc.heads_q, q.shape[0]), dtype=torch.float32)
        d = desc.struct(_DTYPES[q.dtype])
        core.attn_forward(comm, d, algo, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr())
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.comm, ctx.desc, ctx.algo = comm, desc, algo
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        q, k, v, out, lse = ctx.saved_tensors
        # Every rank must join the collective backward, even one whose gradient is all zeros.
        dout = dout.to(q.dtype).contiguous() if dout is not None else torch.zeros_like(out)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        d = ctx.desc.struct(_DTYPES[q.dtype])
        core.attn_backward(ctx.comm, d, ctx.algo, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                           lse.data_ptr(), dout.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr())
        return dq, dk, dv, None, None, None


def attention(q, k, v, comm, desc, algo="auto", return_lse=False):
    """Distributed attention over the ranks of comm (differentiable in q, k, v).

    algo: "auto", "ring", "passq", "allgather", "ulysses" or "hybrid". Returns out, or (out, lse)
    with lse float32 [heads_q, T_local] when return_lse."""
    core.algo_code(algo)  # reject a bad name before any rank enters the collective
    out, lse = AttnFunction.apply(q, k, v, comm, desc, algo)
    return (out, lse) if return_lse else out

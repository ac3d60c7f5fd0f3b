"""Which tokens a rank holds (layouts of include/attnccl.h) and moving full tensors in and out."""
import functools

import torch

from .. import core


@functools.lru_cache(maxsize=256)
def _positions(seq_len, nranks, rank, layout, cu_seqlens):
    desc = core.AttnDesc(seq_len, 1, 1, layout=layout, cu_seqlens=list(cu_seqlens) if cu_seqlens else None)
    return tuple(core.local_tokens(desc, nranks, rank))


def _cu(cu_seqlens):
    if cu_seqlens is None:
        return None
    if isinstance(cu_seqlens, torch.Tensor):
        cu_seqlens = cu_seqlens.tolist()
    return tuple(int(x) for x in cu_seqlens)


def local_positions(seq_len, comm, layout="zigzag", cu_seqlens=None, rank=None, device=None):
    """Global positions (int64, increasing) of the tokens `rank` (default: this rank) holds when a
    sequence of seq_len tokens (documents cu_seqlens) is spread over comm's ranks by `layout`.
    Use them as position ids (RoPE) for the rank's shard."""
    rank = comm.rank if rank is None else rank
    pos = _positions(int(seq_len), comm.nranks, rank, layout, _cu(cu_seqlens))
    return torch.tensor(pos, dtype=torch.int64, device=device)


def shard(x, comm, layout="zigzag", dim=1, cu_seqlens=None):
    """This rank's tokens of a full-sequence tensor (ids, labels, position ids, embeddings):
    x.index_select(dim, local_positions(x.shape[dim], ...)). Differentiable."""
    pos = local_positions(x.shape[dim], comm, layout, cu_seqlens, device=x.device)
    return x.index_select(dim, pos)


def _gather(x, comm, layout, dim, seq_len, cu):
    """The full tensor from every rank's shard (all-gather through attnccl, padded to the
    largest shard so ranks with fewer tokens take part in the same call)."""
    counts = [len(_positions(seq_len, comm.nranks, r, layout, cu)) for r in range(comm.nranks)]
    if x.shape[dim] != counts[comm.rank]:
        raise ValueError("unshard: x has %d tokens in dim %d, rank %d holds %d of seq_len %d under %s"
                         % (x.shape[dim], dim, comm.rank, counts[comm.rank], seq_len, layout))
    width = max(counts)
    front = x.movedim(dim, 0)
    send = torch.zeros((width,) + tuple(front.shape[1:]), dtype=x.dtype, device=x.device)
    send[:front.shape[0]] = front
    recv = torch.empty((comm.nranks,) + tuple(send.shape), dtype=x.dtype, device=x.device)
    name = _dtype_name(x.dtype)
    core.all_gather(comm, send.data_ptr(), recv.data_ptr(), send.numel(), name)
    full = torch.empty((seq_len,) + tuple(front.shape[1:]), dtype=x.dtype, device=x.device)
    for r in range(comm.nranks):
        pos = torch.tensor(_positions(seq_len, comm.nranks, r, layout, cu), dtype=torch.int64, device=x.device)
        full[pos] = recv[r, :counts[r]]
    return full.movedim(0, dim)


def _dtype_name(dtype):
    names = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
             torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32", torch.int8: "int8",
             torch.uint8: "uint8"}
    if dtype not in names:
        raise TypeError("attnccl cannot move %s tensors" % dtype)
    return names[dtype]


class _Unshard(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, comm, layout, dim, seq_len, cu):
        ctx.comm, ctx.layout, ctx.dim, ctx.seq_len, ctx.cu = comm, layout, dim, seq_len, cu
        return _gather(x.detach(), comm, layout, dim, seq_len, cu)

    @staticmethod
    def backward(ctx, grad):
        # Every rank's output is the whole tensor, so this rank's tokens get the sum over ranks.
        g = grad.contiguous().clone()
        core.all_reduce_sum(ctx.comm, g.data_ptr(), g.data_ptr(), g.numel(), _dtype_name(g.dtype))
        pos = torch.tensor(_positions(ctx.seq_len, ctx.comm.nranks, ctx.comm.rank, ctx.layout, ctx.cu),
                           dtype=torch.int64, device=g.device)
        return g.index_select(ctx.dim, pos), None, None, None, None, None


def unshard(x, comm, layout="zigzag", dim=1, seq_len=None, cu_seqlens=None):
    """The inverse of shard on every rank: the full tensor from each rank's tokens (a collective:
    every rank calls it). seq_len defaults to cu_seqlens[-1], else the sum of the ranks' shards
    when they are equal (x.shape[dim] * ranks). Differentiable."""
    cu = _cu(cu_seqlens)
    if seq_len is None:
        seq_len = cu[-1] if cu else x.shape[dim] * comm.nranks
    dim = dim % x.dim()
    return _Unshard.apply(x, comm, layout, dim, int(seq_len), cu)

"""attnccl for PyTorch 2: context-parallel attention over a torch.distributed job.

    import torch.distributed as dist, attnccl.torch as at
    dist.init_process_group("gloo")                      # torchrun sets rank / world size
    comm = at.Communicator.from_process_group()          # attnccl rendezvous over the group
    q = at.shard(q_full, comm)                           # [B, S, H, D] -> this rank's [B, S/P, H, D]
    out = at.attention(q, k, v, comm, causal=True)       # like flash_attn_func; differentiable

Tensors are [B, S_local, H, D] (flash-attn's order), any strides with the last dimension
contiguous (packed qkv.unbind(2) views go in as they are where the library has the 0.2 calls).
CPU tensors run on the CPU communicator; CUDA tensors on a CUDA communicator go on the current
stream (that path is written but not tested on machines without a GPU).
"""
import torch

from ._comm import Communicator
from ._ops import attn_bwd, attn_fwd
from ._shard import local_positions, shard, unshard
from .. import core

__all__ = ["Communicator", "attention", "local_positions", "shard", "unshard"]

_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def attention(q, k, v, comm, *, causal=False, layout="zigzag", algo="auto", window=(-1, -1), cu_seqlens=None,
              sinks=None, softmax_scale=None, return_lse=False, seq_len=None):
    """Distributed attention over comm's ranks; every rank calls it with its own tokens.

    q [B, S_local, Hq, D], k / v [B, S_local, Hkv, D] (Hq % Hkv == 0), rows in increasing global
    position under `layout` ("zigzag", "contiguous", "striped"; see local_positions). window =
    (left, right), -1 unbounded; cu_seqlens: document offsets of each sequence (list or tensor,
    [0, ..., S]); sinks: float [Hq], one extra logit per head (gpt-oss). seq_len: the global
    length, by default cu_seqlens[-1] or S_local * ranks. Returns out [B, S_local, Hq, D], and
    (out, lse) with lse float32 [B, Hq, S_local] (not differentiable) when return_lse.
    algo: "auto", "ring", "passq", "allgather", "ulysses" or "hybrid"."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("attnccl.torch.attention: q, k, v must be [B, S_local, H, D], got %s, %s, %s"
                         % (tuple(q.shape), tuple(k.shape), tuple(v.shape)))
    if q.dtype not in _SUPPORTED or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError("attnccl.torch.attention: q, k, v must share float32, float16 or bfloat16, got %s, %s, %s"
                        % (q.dtype, k.dtype, v.dtype))
    if k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[1] != q.shape[1] or k.shape[3] != q.shape[3]:
        raise ValueError("attnccl.torch.attention: shapes q %s, k %s, v %s do not match"
                         % (tuple(q.shape), tuple(k.shape), tuple(v.shape)))
    if algo not in core.ALGOS:
        raise ValueError("algo %r: one of %s" % (algo, ", ".join(core.ALGOS)))
    if layout not in core.LAYOUTS:
        raise ValueError("layout %r: one of %s" % (layout, ", ".join(core.LAYOUTS)))
    if isinstance(cu_seqlens, torch.Tensor):
        cu_seqlens = cu_seqlens.tolist()  # host offsets (a graph break under compile: pass a list there)
    cu = [int(x) for x in cu_seqlens] if cu_seqlens is not None else []
    if seq_len is None:
        seq_len = cu[-1] if cu else q.shape[1] * comm.nranks
    if sinks is not None:
        sinks = sinks.float()
    out, lse = attn_fwd(q, k, v, sinks, comm.key, int(seq_len), layout, bool(causal), int(window[0]),
                        int(window[1]), cu, float(softmax_scale or 0.0), algo)
    return (out, lse) if return_lse else out

"""attnccl for Python: the C API through ctypes (core); PyTorch 2 ops and torch.distributed
bootstrap in attnccl.torch (docs/python.md); transformers' attention interface in attnccl.hf;
the 0.1 autograd function in torch_attn (used below, works with torch 1.13):

    import attnccl
    from attnccl.torch_attn import attention, local_positions

    comm = attnccl.Communicator.from_queue(rank, nranks, queue, cpu_threads=1)
    desc = attnccl.AttnDesc(seq_len=4096, heads_q=8, heads_kv=2, head_dim=64, layout="zigzag", causal=True)
    pos = local_positions(desc, nranks, rank)            # this rank's tokens
    out = attention(q, k, v, comm, desc, algo="ring")    # q [T, 8, 64], k/v [T, 2, 64]; differentiable
"""
from .core import (ALGOS, DTYPES, LAYOUTS, AttncclError, AttnDesc, Communicator, load_library, local_tokens,
                   unique_id, version)

__all__ = ["ALGOS", "DTYPES", "LAYOUTS", "AttncclError", "AttnDesc", "Communicator", "load_library",
           "local_tokens", "unique_id", "version"]

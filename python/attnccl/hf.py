"""attnccl as an attention implementation of Hugging Face transformers (context parallelism).

    import attnccl.hf, attnccl.torch as at
    comm = at.Communicator.from_process_group()
    attnccl.hf.register(comm, layout="zigzag")          # once, before the model runs
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="attnccl")
    ids = at.shard(full_ids, comm)                      # this rank's tokens
    pos = at.local_positions(S, comm).unsqueeze(0)      # their global positions (RoPE)
    logits = model(input_ids=ids, position_ids=pos).logits

Each rank runs the model on its tokens only; everything but attention is per token, and the
attention layers exchange through attnccl. The model's own mask is not used (it would describe
local tokens only): the mask is given by the module (is_causal), a sliding window when the model
passes one, the documents of register(cu_seqlens=...) and gpt-oss's sinks (s_aux). Padding masks
are not supported: pack documents instead.
"""
import torch

from . import torch as at

NAME = "attnccl"
_STATE = {}


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None,
               s_aux=None, **kwargs):
    """transformers' attention-function contract: query [B, Hq, S, D], key/value [B, Hkv, S, D];
    returns ([B, S, Hq, D], None)."""
    if dropout:
        raise ValueError("attnccl attention has no dropout (got %s): train with attention_dropout 0" % dropout)
    st = _STATE.get("config")
    if st is None:
        raise RuntimeError("attnccl.hf: call attnccl.hf.register(comm) before running the model")
    causal = bool(getattr(module, "is_causal", True))
    window = (-1, -1)
    if sliding_window:
        window = (int(sliding_window) - 1, -1 if causal else int(sliding_window) - 1)
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # strided views, no copy with the 0.2 calls
    out = at.attention(q, k, v, st["comm"], causal=causal, layout=st["layout"], algo=st["algo"], window=window,
                       cu_seqlens=st["cu_seqlens"], sinks=s_aux, softmax_scale=scaling,
                       seq_len=st["seq_len"])
    return out, None


def _no_mask(*args, **kwargs):
    # The attention above builds its mask from positions; the model's local mask is not needed.
    return None


def register(comm, layout="zigzag", algo="auto", cu_seqlens=None, seq_len=None, name=NAME):
    """Registers (or re-points) the attention implementation `name` on comm. cu_seqlens: document
    offsets of the packed sequence; seq_len: its global length when the shards are uneven."""
    from transformers import AttentionInterface
    _STATE["config"] = dict(comm=comm, layout=layout, algo=algo,
                            cu_seqlens=list(cu_seqlens) if cu_seqlens is not None else None, seq_len=seq_len)
    AttentionInterface.register(name, _attention)
    try:  # transformers >= 4.53 builds masks through its own interface, keyed by the same name
        from transformers.masking_utils import AttentionMaskInterface
        AttentionMaskInterface.register(name, _no_mask)
    except ImportError:
        pass
    return name

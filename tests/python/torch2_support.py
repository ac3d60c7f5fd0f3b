"""Shared pieces of the PyTorch 2 tests: starting gloo ranks as processes, the fp64 reference
(torch's scaled_dot_product_attention on the whole sequence), error measures."""
import os
import sys
import tempfile
import traceback

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests


def torch2_or_skip():
    try:
        import torch
    except ImportError as e:
        print("SKIPPED: torch cannot be imported (%s); run under the venv of tools/quickstart" % e)
        sys.exit(SKIP)
    if int(torch.__version__.split(".")[0]) < 2 or not hasattr(torch, "library") or \
            not hasattr(torch.library, "custom_op"):
        print("SKIPPED: torch %s is not 2.4 or newer (needs torch.library.custom_op)" % torch.__version__)
        sys.exit(SKIP)
    return torch


def _entry(rank, fn, world, init_file, args):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    except Exception:
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()


def run_ranks(fn, world, *args):
    """fn(rank, world, *args) in `world` processes joined by a gloo process group; raises if any
    rank fails (torch.multiprocessing reports the rank's traceback)."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_entry, args=(fn, world, os.path.join(d, "rendezvous"), args), nprocs=world, join=True)


def mask(S, causal, window, cu):
    """Bool [S, S]: key j visible to query i (the rule of include/attnccl.h)."""
    import torch
    i = torch.arange(S).view(S, 1)
    j = torch.arange(S).view(1, S)
    m = torch.ones(S, S, dtype=torch.bool)
    if causal:
        m &= j <= i
    if window[0] >= 0:
        m &= i - j <= window[0]
    if window[1] >= 0:
        m &= j - i <= window[1]
    if cu:
        doc = torch.bucketize(torch.arange(S), torch.tensor(cu[1:]), right=True)
        m &= doc.view(S, 1) == doc.view(1, S)
    return m


def reference(q, k, v, causal=False, window=(-1, -1), cu=None, sinks=None, scale=None):
    """out [B, S, Hq, D] of full-sequence attention in fp64 through F.scaled_dot_product_attention.
    Sinks enter as one more key (k = 0, v = 0) whose logit is biased by sinks[h] via the mask."""
    import torch
    import torch.nn.functional as F
    qt, kt, vt = (x.double().transpose(1, 2) for x in (q, k, v))  # [B, H, S, D]
    B, Hq, S, D = qt.shape
    rep = Hq // kt.shape[1]
    kt, vt = kt.repeat_interleave(rep, dim=1), vt.repeat_interleave(rep, dim=1)
    allowed = mask(S, causal, window, cu)
    bias = torch.zeros(S, S, dtype=torch.float64).masked_fill(~allowed, float("-inf"))
    bias = bias.view(1, 1, S, S).expand(B, Hq, S, S)
    if sinks is not None:
        zero = torch.zeros(B, Hq, 1, D, dtype=torch.float64)
        kt, vt = torch.cat([kt, zero], 2), torch.cat([vt, zero], 2)
        s = sinks.double().view(1, Hq, 1, 1).expand(B, Hq, S, 1)
        # SDPA multiplies q.k by scale; the sink logit is used as given: bias = sink.
        bias = torch.cat([bias, s], 3)
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias, scale=scale)
    return out.transpose(1, 2)


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))

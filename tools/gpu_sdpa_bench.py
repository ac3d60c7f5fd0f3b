#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the GPU, timed like perf/gpu_attn_perf (CUDA events,
warm-up, mean of the timed calls), as the reference of the GPU backend's second target (attnccl forward
>= 0.9x SDPA on the same GPU; docs/design.md, "Targets").
FLOPs count visible pairs: forward 4*pairs*D*H, backward 2.5x.

Prints a table line and '#result tool=sdpa ... tflops=...' per direction. Exits 77 when torch or a
CUDA device is missing (tools/gpu-check.sh reports the comparison as skipped).

  tools/gpu_sdpa_bench.py --seqlen 16384 --heads 16 --dim 128 --dtype bf16 --causal 0 --dir fwd
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqlen", type=int, default=16384)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    ap.add_argument("--causal", type=int, default=0)
    ap.add_argument("--dir", choices=["fwd", "bwd", "both"], default="fwd")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("# sdpa: torch is not installed")
        return 77
    if not torch.cuda.is_available():
        print("# sdpa: no CUDA device visible to torch")
        return 77
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float16
    S, H, D = a.seqlen, a.heads, a.dim
    q, k, v = (torch.randn(1, H, S, D, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
    pairs = S * (S + 1) / 2 if a.causal else float(S) * S
    flops_fwd = 4.0 * pairs * D * H
    name = torch.cuda.get_device_name()
    print(f"# sdpa on {name}, torch {torch.__version__}")
    for direction in (["fwd", "bwd"] if a.dir == "both" else [a.dir]):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal))
        grad = torch.randn_like(out)

        def call():
            if direction == "fwd":
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal))
            else:
                torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)

        for _ in range(a.warmup):
            call()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(a.iters):
            call()
        e1.record()
        torch.cuda.synchronize()
        us = 1000.0 * e0.elapsed_time(e1) / a.iters
        flops = flops_fwd if direction == "fwd" else 2.5 * flops_fwd
        tflops = flops / (us * 1e-6) / 1e12
        mask = "causal" if a.causal else "full"
        print(f"  {S:8d} {H:5d} {D:4d} {a.dtype:>5s} {mask:>6s} {direction:>4s} {us:12.1f} {tflops:9.1f}")
        print(f'#result tool=sdpa device="{name}" seqlen={S} heads={H} dim={D} dtype={a.dtype} mask={mask} '
              f"dir={direction} time_us={us:.1f} tflops={tflops:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""attnccl's CPU tiles (build/perf/attn_kernel_perf) against PyTorch 2's CPU attention
(torch.nn.functional.scaled_dot_product_attention, its flash kernel on CPU) on the same shapes
and thread counts, forward and backward, in the same run.

Rounds alternate the two (A/B interleaved) and each side keeps its minimum time, so a machine
shared with other work disturbs both alike. FLOPs count visible pairs (forward 4*S^2*D*H, causal
about half; backward 2.5x), as attn_kernel_perf does. attn_kernel_perf is timed by wall clock here
(no -T) so both sides are measured the same way.

  perf/torch_sdpa_compare.py --bin build/perf/attn_kernel_perf -S 4096 -H 8 -D 128 -t 2 \
      --dtype bf16 fp32 --causal 0 1 --rounds 3

Needs torch >= 2 (e.g. the virtual environment tools/quickstart's python3-torch, or a venv with
torch from PyPI)."""
import argparse
import re
import subprocess
import time


def torch_times(S, H, D, dtype, causal, threads, iters, warm=True):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(1, H, S, D, generator=g).to(dt) for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(True)
    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
    def fwdbwd():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
        out.backward(do)
    def best(fn):
        if warm:
            fn()  # warm-up (first round only: a bf16 backward on AVX2 takes tens of seconds)
        b = float("inf")
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            b = min(b, time.perf_counter() - t0)
        return b
    tf = best(fwd)
    tfb = best(fwdbwd)
    return tf, max(tfb - tf, 1e-9)  # backward = (forward + backward) - forward


def attnccl_times(binary, S, H, D, dtype, causal, threads, iters):
    cmd = [binary, "-b", str(S), "-e", str(S), "-H", str(H), "-K", str(H), "-D", str(D), "-d", dtype,
           "-C", str(causal), "-B", "both", "-n", str(iters), "-w", "1", "-t", str(threads), "-c", "0"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    header = [l for l in out.splitlines() if l.startswith("#")]
    t = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(fwd|bwd)\s+([\d.]+)", line)
        if m:
            t[m.group(2)] = float(m.group(3)) / 1e3
    return t["fwd"], t["bwd"], header


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/perf/attn_kernel_perf")
    ap.add_argument("-S", type=int, nargs="+", default=[4096])
    ap.add_argument("-H", type=int, default=8)
    ap.add_argument("-D", type=int, default=128)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--dtype", nargs="+", default=["bf16", "fp32"])
    ap.add_argument("--causal", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=2)
    a = ap.parse_args()
    import torch
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} default threads; running with {a.threads}")
    print(f"# torch CPU capability: {torch.backends.cpu.get_cpu_capability()}")
    shown = False
    print(f"#{'S':>6} {'dtype':>5} {'causal':>6} {'dir':>4} {'attnccl(ms)':>12} {'torch(ms)':>10} "
          f"{'attnccl GF/s':>12} {'torch GF/s':>10} {'ratio':>6}")
    for S in a.S:
        for dtype in a.dtype:
            for causal in a.causal:
                best = {"af": 1e30, "ab": 1e30, "tf": 1e30, "tb": 1e30}
                for rnd in range(a.rounds):  # A/B interleaved, minima
                    af, ab, header = attnccl_times(a.bin, S, a.H, a.D, dtype, causal, a.threads, a.iters)
                    if not shown:
                        print("\n".join("# attnccl " + h.lstrip("# ") for h in header[:5]))
                        shown = True
                    tf, tb = torch_times(S, a.H, a.D, dtype, causal, a.threads, a.iters, warm=rnd == 0)
                    best = {"af": min(best["af"], af), "ab": min(best["ab"], ab),
                            "tf": min(best["tf"], tf), "tb": min(best["tb"], tb)}
                pairs = S * (S + 1) / 2 if causal else S * S
                ff = 4.0 * pairs * a.D * a.H
                for d, at, tt, fl in (("fwd", best["af"], best["tf"], ff), ("bwd", best["ab"], best["tb"], 2.5 * ff)):
                    print(f" {S:>6} {dtype:>5} {causal:>6} {d:>4} {at*1e3:>12.1f} {tt*1e3:>10.1f} "
                          f"{fl/at/1e9:>12.1f} {fl/tt/1e9:>10.1f} {tt/at:>6.2f}", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_validation (tests/fuzz/corpus): one well-formed input per entry
point, in the byte layout fuzz_validation.cc reads (little endian), so mutations start from calls
that pass validation and reach the code behind it. Run from anywhere; rewrites the directory."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

FP32, FP16, BF16 = 6, 4, 5


def desc(dtype=FP32, seq=37, hq=4, hkv=2, dim=16, layout=0, causal=0, wl=-1, wr=-1, scale=0.0, docs=None):
    """A descriptor: header 0 (right magic and size, 16-bit seqLen, 8-bit numSeqs, 16-bit offsets)."""
    b = struct.pack("<B", 0)
    b += struct.pack("<iHiiiiiqqf", dtype, seq, hq, hkv, dim, layout, causal, wl, wr, scale)
    if docs:
        b += struct.pack("<B", len(docs) - 1)
        b += b"".join(struct.pack("<H", c) for c in docs)
    else:
        b += struct.pack("<B", 0) + struct.pack("<H", 0)
    return b


def seeds():
    s = {}
    s["tokens_zigzag_docs"] = b"\x00" + desc(layout=1, causal=1, docs=[0, 20, 37]) + struct.pack("<ii", 3, 1)
    s["tokens_striped"] = b"\x00" + desc(seq=101, layout=2) + struct.pack("<ii", 5, 4)
    s["tokens_contiguous"] = b"\x00" + desc(seq=7, hq=8, hkv=8, dim=128) + struct.pack("<ii", 8, 7)
    s["forward_window"] = b"\x01" + desc(seq=24, hq=2, hkv=1, dim=8, causal=1, wl=5) + struct.pack("<iBB", 1, 0, 0)
    s["forward_docs_bf16"] = b"\x01" + desc(dtype=BF16, seq=30, docs=[0, 9, 30]) + struct.pack("<iBB", 0, 0, 0)
    s["backward_fp16"] = b"\x02" + desc(dtype=FP16, seq=16, hq=2, hkv=2, dim=8, wl=3, wr=2) + struct.pack("<iBB", 4, 0, 0)
    s["backward_causal"] = b"\x02" + desc(seq=20, causal=1, layout=1) + struct.pack("<iBB", 2, 0, 0)
    s["headalltoall"] = b"\x03" + desc(seq=12, dim=8) + struct.pack("<iiB", 4, 0, 0)
    s["headalltoall_back"] = b"\x03" + desc(seq=12, dim=8, docs=[0, 5, 12]) + struct.pack("<iiB", 3, 1, 0)
    s["merge_fp32"] = b"\x04" + struct.pack("<BBiiiB", 0, 5, 2, 8, FP32, 0)
    s["merge_bf16_nocomm"] = b"\x04" + struct.pack("<BBiiiB", 0, 9, 3, 4, BF16, 16)
    s["headrange"] = b"\x05" + struct.pack("<iii", 7, 3, 1)
    for which, name in enumerate(["allgather", "reducescatter", "alltoall", "alltoallv", "sendrecv"]):
        s["coll_" + name] = b"\x06" + struct.pack("<BBHiiiB", which, 0, 100, FP32, 0, 0, 0)
    s["coll_alltoallv_displ"] = b"\x06" + struct.pack("<BBHiiiBH", 3, 0, 10, FP16, 0, 0, 32, 5)
    s["config_shm"] = b"\x07" + struct.pack("<Biiiii", 4, -1, 1, 1000, 2, 0) + b"shm".ljust(12, b"\x00")
    s["config_bad_magic"] = b"\x07" + struct.pack("<BIiiiii", 1, 7, -1, 1, 0, 0, 0) + b"".ljust(12, b"\x00")
    s["config_nonblocking"] = b"\x07" + struct.pack("<Biiiii", 4, -1, 0, 0, 0, 2) + b"ucx".ljust(12, b"\x00")
    s["stats"] = b"\x08" + struct.pack("<HBi", 40, 0, 3)
    # The Ex calls: batch 2, q/k/v packed views of one [B][T][4+2*2][16] row (T = 37 on one rank),
    # contiguous out and LSE (no strides), sinks; backward adds contiguous dout/dq/dk/dv and dsinks.
    T, W = 37, (4 + 2 * 2) * 16
    packed = lambda off: struct.pack("<Bhhh", 1, T * W, W, 16)
    dense = struct.pack("<B", 0)
    fwd_views = packed(0) * 3 + dense * 2
    s["forward_ex_packed_sinks"] = (b"\x09" + desc() + struct.pack("<BiB", 2, 1, 0) + fwd_views +
                                    struct.pack("<B", 1))
    s["backward_ex_packed_dsinks"] = (b"\x0a" + desc(causal=1) + struct.pack("<BiB", 2, 2, 0) + fwd_views +
                                      struct.pack("<B", 3) + dense * 4)
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    for name, data in seeds().items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds()), OUT))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summary of perf/run_collective_pairs.sh: per op and rank count, the median busbw (GB/s) over
the repeats of every variant and size, and the ratios against Open MPI (and new/base when a
baseline ran). Logs are <op>.<P>.<variant>.<repeat>.txt with the perf tools' tables."""
import collections
import glob
import os
import re
import statistics
import sys

ROW = re.compile(r"^\s+(\d+)\s+\d+\s+\w+\s+[\d.]+\s+[\d.]+\s+([\d.]+)")


def parse(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = ROW.match(line)
            if m:
                out[int(m.group(1))] = float(m.group(2))
    return out


def size_name(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"


def main(d):
    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    loads = []
    for path in sorted(glob.glob(os.path.join(d, "*.txt"))):
        op, p, variant, _rep, _ = os.path.basename(path).split(".")
        with open(path) as f:
            head = f.read(400)
        m = re.search(r"load before: ([\d.]+)", head)
        if m:
            loads.append(float(m.group(1)))
        for size, bw in parse(path).items():
            runs[(op, int(p))][(variant, size)].append(bw)
    order = ["mpi", "base-proc", "new-proc", "new-proc-ip", "base-threads", "new-threads", "new-threads-ip"]
    for (op, p) in sorted(runs):
        cells = runs[(op, p)]
        variants = [v for v in order if any(k[0] == v for k in cells)]
        sizes = sorted({k[1] for k in cells})
        reps = max(len(v) for v in cells.values())
        print(f"\n#### {op}, {p} ranks: median busbw in GB/s over {reps} interleaved repeats\n")
        ratios = [(v, "mpi") for v in ("new-proc", "new-proc-ip", "new-threads", "new-threads-ip") if v in variants]
        if "base-proc" in variants:
            ratios += [("new-proc", "base-proc"), ("new-threads", "base-threads")]
        hdr = ["size"] + variants + [f"{a}/{b}" for a, b in ratios]
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---:|" * len(hdr))
        for s in sizes:
            med = {v: statistics.median(cells[(v, s)]) for v in variants if cells.get((v, s))}
            row = [size_name(s)] + [f"{med[v]:.2f}" if v in med else "-" for v in variants]
            for a, b in ratios:
                row.append(f"{med[a] / med[b]:.2f}" if a in med and b in med and med[b] > 0 else "-")
            print("| " + " | ".join(row) + " |")
    if loads:
        print(f"\nLoad average (1 min) before the runs: {min(loads):.1f} to {max(loads):.1f} "
              f"(median {statistics.median(loads):.1f}) on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main(sys.argv[1])

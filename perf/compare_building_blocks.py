#!/usr/bin/env python3
"""Compares building-block perf tables (attnccl tools and mpi_bench) written by
run_building_blocks.sh: for every (collective, ranks, size), the median busbw over the repeats of
each mode, the ratios to Open MPI and to the memcpy ceiling measured in the same runs.

usage: compare_building_blocks.py DIR   (DIR holds <op>.<P>.<mode>.<repeat>.txt)
"""
import collections
import os
import re
import statistics
import sys

MODES = ["threads", "proc-shm", "proc-ucx", "mpi"]
NAME = re.compile(r"^(\w+)\.(\d+)\.([\w-]+)\.(\d+)\.txt$")


def parse_table(path):
    """size -> {column: value} from an nccl-tests-like table."""
    header, rows = None, {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            if w[0] == "#":
                if "#wrong" in w:
                    header = w[1:]
                continue
            if header is None or w[0].startswith("#") or len(w) != len(header):
                continue
            row = dict(zip(header, w))
            rows[int(row["size"])] = row
    return rows


def median(values):
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main(directory):
    # (op, P) -> mode -> size -> list of (busbw, memcpy, wrong)
    data = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
    for name in sorted(os.listdir(directory)):
        m = NAME.match(name)
        if not m:
            continue
        op, ranks, mode, _ = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        for size, row in parse_table(os.path.join(directory, name)).items():
            memcpy = float(row["memcpy"]) if "memcpy" in row else None
            data[(op, ranks)][mode][size].append((float(row["busbw"]), memcpy, row["#wrong"]))
    wrong_total = 0
    for (op, ranks) in sorted(data):
        modes = data[(op, ranks)]
        sizes = sorted(set().union(*[set(v) for v in modes.values()]))
        print(f"\n### {op}, {ranks} ranks: busbw in GB/s (median of repeats)\n")
        print("| size | threads | proc shm | proc ucx | Open MPI | threads/MPI | shm/MPI | ucx/MPI "
              "| memcpy | threads/memcpy | shm/memcpy |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizes:
            bus = {}
            memcpys = []
            for mode in MODES:
                samples = modes.get(mode, {}).get(size, [])
                bus[mode] = median([s[0] for s in samples])
                memcpys += [s[1] for s in samples if s[1] is not None]
                wrong_total += sum(int(s[2]) for s in samples if s[2].isdigit())
            mc = median(memcpys)
            mpi = bus["mpi"]

            def ratio(a, b):
                return None if a is None or not b else a / b

            label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} B"
            print(f"| {label} | {fmt(bus['threads'])} | {fmt(bus['proc-shm'])} | {fmt(bus['proc-ucx'])} | "
                  f"{fmt(mpi)} | {fmt(ratio(bus['threads'], mpi))} | {fmt(ratio(bus['proc-shm'], mpi))} | "
                  f"{fmt(ratio(bus['proc-ucx'], mpi))} | {fmt(mc)} | {fmt(ratio(bus['threads'], mc))} | "
                  f"{fmt(ratio(bus['proc-shm'], mc))} |")
    print(f"\nwrong elements over all runs: {wrong_total}")
    return 0 if wrong_total == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))

#!/usr/bin/env python3
"""Compares building-block perf tables (attnccl tools and mpi_bench) written by
run_building_blocks.sh: for every (collective, ranks, size), the best (or median) busbw over the
repeats of each mode, the ratios to Open MPI and to the memcpy ceiling measured in the same runs.

usage: compare_building_blocks.py [--stat max|median] DIR   (DIR holds <op>.<P>.<mode>.<rep>.txt)
"""
import collections
import os
import re
import statistics
import sys

MODES = ["threads", "proc-shm", "proc-ucx", "mpi"]
NAME = re.compile(r"^(\w+)\.(\d+)\.([\w-]+)\.(\d+)\.txt$")


OTHER_LOAD = re.compile(r"^# other processes' cpu during the run: (-?\d+)%")


def parse_table(path):
    """(size -> {column: value}, other processes' cpu % or None) from an nccl-tests-like table."""
    header, rows, load = None, {}, None
    with open(path) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            m = OTHER_LOAD.match(line)
            if m:
                load = max(0, int(m.group(1)))
            if w[0] == "#":
                if "#wrong" in w:
                    header = w[1:]
                continue
            if header is None or w[0].startswith("#") or len(w) != len(header):
                continue
            row = dict(zip(header, w))
            rows[int(row["size"])] = row
    return rows, load


def median(values):
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def main(directory, stat):
    pick = max if stat == "max" else median
    label_stat = "best of repeats" if stat == "max" else "median of repeats"
    # (op, P) -> mode -> size -> list of (busbw, memcpy, wrong)
    data = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
    loads = collections.defaultdict(list)  # (op, P) -> other processes' cpu % of each run
    for name in sorted(os.listdir(directory)):
        m = NAME.match(name)
        if not m:
            continue
        op, ranks, mode, _ = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        rows, load = parse_table(os.path.join(directory, name))
        if load is not None:
            loads[(op, ranks)].append(load)
        for size, row in rows.items():
            memcpy = float(row["memcpy"]) if "memcpy" in row else None
            data[(op, ranks)][mode][size].append((float(row["busbw"]), memcpy, row["#wrong"]))
    wrong_total = 0
    for (op, ranks) in sorted(data):
        modes = data[(op, ranks)]
        sizes = sorted(set().union(*[set(v) for v in modes.values()]))
        print(f"\n### {op}, {ranks} ranks: busbw in GB/s ({label_stat})\n")
        print("| size | threads | proc shm | proc ucx | Open MPI | threads/MPI | shm/MPI | ucx/MPI "
              "| memcpy | threads/memcpy | shm/memcpy |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizes:
            bus = {}
            memcpys = []
            for mode in MODES:
                samples = modes.get(mode, {}).get(size, [])
                bus[mode] = pick([s[0] for s in samples]) if samples else None
                memcpys += [s[1] for s in samples if s[1] is not None]
                wrong_total += sum(int(s[2]) for s in samples if s[2].isdigit())
            mc = pick(memcpys) if memcpys else None
            mpi = bus["mpi"]

            def ratio(a, b):
                return None if a is None or not b else a / b

            label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} B"
            print(f"| {label} | {fmt(bus['threads'])} | {fmt(bus['proc-shm'])} | {fmt(bus['proc-ucx'])} | "
                  f"{fmt(mpi)} | {fmt(ratio(bus['threads'], mpi))} | {fmt(ratio(bus['proc-shm'], mpi))} | "
                  f"{fmt(ratio(bus['proc-ucx'], mpi))} | {fmt(mc)} | {fmt(ratio(bus['threads'], mc))} | "
                  f"{fmt(ratio(bus['proc-shm'], mc))} |")
        if loads[(op, ranks)]:
            ls = loads[(op, ranks)]
            print(f"\nOther processes' CPU use during these {len(ls)} runs: {min(ls)}% to {max(ls)}% "
                  f"(median {statistics.median(ls):.0f}%).")
    print(f"\nwrong elements over all runs: {wrong_total}")
    return 0 if wrong_total == 0 else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    stat = "median"
    if len(args) == 3 and args[0] == "--stat" and args[1] in ("max", "median"):
        stat, args = args[1], args[2:]
    if len(args) != 1:
        sys.exit(__doc__)
    sys.exit(main(args[0], stat))

#!/usr/bin/python3
"""Charts from attnccl's attention perf tools and planner (PNG, matplotlib).

  /usr/bin/python3 tools/plot_perf.py -o perf/plots ring.json passq.json ... plan.json

Inputs are the -J files of perf/*_attn_perf (one algorithm each; the tool name says which) and
of tools/attnccl-plan (every algorithm, per sequence length). Charts written to the -o folder:

  efficiency.png            distributed efficiency vs sequence length per algorithm, forward and
                            backward (measured: solid; planner: dashed, when a plan is given)
  tflops.png                TFLOP/s (visible pairs, all ranks) vs sequence length per algorithm
  predicted_vs_measured.png time per call, predicted vs measured, one point per algorithm,
                            direction and length, with the +-25% band
  plan_time.png             the planner's forward+backward time per algorithm (planner only)

Several files of one tool (repeated runs on a shared machine) merge into the best row; -m
prints a side-by-side markdown table of the algorithms (time, efficiency, planner prediction).

Needs Debian's python3-matplotlib: run with /usr/bin/python3 (a pyenv python3 may lack it).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ALGOS = ["ring", "passq", "allgather", "ulysses", "hybrid", "auto"]
COLORS = dict(zip(ALGOS, ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:gray"]))
DIRS = [("fwd", "forward"), ("bwd", "backward")]


def merge_best(doc, other):
    """Repeated runs of one tool: per sequence length and direction, keep the fastest row."""
    rows = {r["seqlen"]: r for r in doc["rows"]}
    for r in other["rows"]:
        mine = rows.get(r["seqlen"])
        if mine is None:
            rows[r["seqlen"]] = r
            continue
        for d, _ in DIRS:
            key, ref = d + "_time_us", d + "_one_rank_us"
            best_ref = min([x[ref] for x in (mine, r) if x.get(ref) is not None] or [None])
            if r.get(key) is not None and (mine.get(key) is None or r[key] < mine[key]):
                for k in list(r):
                    if k.startswith(d + "_"):
                        mine[k] = r[k]
            # Efficiency from the best of both times (each run's own ratio mixes a quiet and a
            # busy moment on a shared machine).
            if best_ref is not None and mine.get(key):
                mine[ref] = best_ref
                mine[d + "_efficiency"] = best_ref / mine[key]
    doc["rows"] = [rows[k] for k in sorted(rows)]


def load(paths):
    """Splits the inputs into perf runs {algo: doc} and planner docs. Several files of one tool
    (repeated runs) merge into the best time per row."""
    perf, plans = {}, []
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        tool = doc.get("tool", "")
        if tool == "attnccl-plan":
            plans.append(doc)
        elif tool.endswith("_attn_perf"):
            algo = tool[: -len("_attn_perf")]
            if algo in perf:
                merge_best(perf[algo], doc)
            else:
                perf[algo] = doc
        else:
            sys.exit("%s: not an attention perf tool or planner JSON (tool '%s')" % (path, tool))
    return perf, plans


def markdown(perf, plans):
    """A side-by-side table, one row per (sequence length, algorithm): measured time, efficiency,
    bytes sent per rank and compute balance, forward / backward, and the planner's prediction
    when a plan is given."""
    algos = [a for a in ALGOS if a in perf]
    lengths = sorted({r["seqlen"] for a in algos for r in perf[a]["rows"]})
    pred = {}
    for p in plans:
        for row in p["rows"]:
            for a in row["algorithms"]:
                pred[(a["algorithm"], row["seqlen"])] = a

    def pair(r, key, scale, fmt):
        vals = [r.get("%s_%s" % (d, key)) for d, _ in DIRS]
        return " / ".join("-" if v is None else fmt % (v * scale) for v in vals)

    print("| seqlen | algorithm | time fwd / bwd (ms) | efficiency | sent per rank (MB) | balance | planner (ms) |")
    print("|---|---|---|---|---|---|---|")
    for n in lengths:
        for a in algos:
            r = next((x for x in perf[a]["rows"] if x["seqlen"] == n), None)
            if r is None:
                continue
            name = a
            if a == "auto":
                name += " (%s / %s)" % (r.get("fwd_algo"), r.get("bwd_algo"))
            if r.get("fwd_time_us") is None and r.get("bwd_time_us") is None:
                print("| %d | %s | ERR | | | | |" % (n, name))
                continue
            # auto: the prediction of the algorithm it chose, per direction.
            qf = pred.get((r.get("fwd_algo", a) if a == "auto" else a, n))
            qb = pred.get((r.get("bwd_algo", a) if a == "auto" else a, n))
            plan = "%.1f / %.1f" % (qf["fwd"]["seconds"] * 1e3, qb["bwd"]["seconds"] * 1e3) if qf and qb else ""
            print("| %d | %s | %s | %s | %s | %s | %s |" % (
                n, name, pair(r, "time_us", 1e-3, "%.1f"), pair(r, "efficiency", 1, "%.2f"),
                pair(r, "sent_bytes", 1e-6, "%.2f"), pair(r, "balance", 1, "%.3f"), plan))


def perf_series(doc, key):
    xs, ys = [], []
    for row in doc["rows"]:
        if row.get(key) is not None:
            xs.append(row["seqlen"])
            ys.append(row[key])
    return xs, ys


def plan_series(plan, algo, field):
    """Planner values per sequence length for one algorithm; field(entry) picks the value."""
    xs, ys = [], []
    for row in plan["rows"]:
        for a in row["algorithms"]:
            if a["algorithm"] == algo and a["supported"]:
                xs.append(row["seqlen"])
                ys.append(field(a, row))
    return xs, ys


def subtitle(perf, plans):
    parts = []
    if perf:
        doc = next(iter(perf.values()))
        r = doc["rows"][0]
        parts.append("%s: %d ranks (%d proc x %d thr), %s, H %d/%d, D %d, %s, %s" % (
            doc["machine"]["cpu"], doc["ranks"], doc["processes"], doc["threads_per_process"], r["dtype"],
            r["heads"], r["kv_heads"], r["head_dim"], r["mask"], r["layout"]))
    for p in plans:
        c, pr = p["cluster"], p["problem"]
        parts.append("plan %s: %d x %d ranks, H %d/%d, D %d, %s, %s, %s" % (
            c["name"], c["nodes"], c["ranks_per_node"], pr["heads"], pr["kv_heads"], pr["head_dim"], pr["dtype"],
            "causal" if pr["causal"] else "full", pr["layout"]))
    return "\n".join(parts)


def finish(fig, path, title):
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("wrote", path)


def per_direction_chart(perf, plans, key, ylabel, path, title, plan_field=None):
    """Forward and backward side by side; one color per algorithm, measured solid with circles,
    the planner's prediction dashed with squares; one legend under both."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=False)
    handles = {}
    for ax, (d, name) in zip(axes, DIRS):
        for algo in ALGOS:
            if algo in perf:
                xs, ys = perf_series(perf[algo], "%s_%s" % (d, key))
                if xs:
                    handles[algo + " measured"] = ax.plot(xs, ys, "o-", color=COLORS[algo])[0]
            for p in plans if plan_field else []:
                xs, ys = plan_series(p, algo, lambda a, row: plan_field(a, row, d))
                if xs:
                    handles[algo + " planner"] = ax.plot(xs, ys, "s--", color=COLORS[algo], alpha=0.6, mfc="none")[0]
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
    if not handles:
        plt.close(fig)
        return
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=min(6, len(handles)),
               fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.09 if len(handles) > 6 else 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print("wrote", path)


def predicted_vs_measured(perf, plans, path, title):
    fig, ax = plt.subplots(figsize=(6, 5.5))
    lo, hi = float("inf"), 0.0
    for algo in ALGOS:
        for d, name in DIRS:
            if algo not in perf:
                continue
            measured = dict(zip(*perf_series(perf[algo], d + "_time_us")))
            for p in plans:
                xs, ys = plan_series(p, algo, lambda a, row: a[d]["seconds"] * 1e6)
                pts = [(measured[x], y) for x, y in zip(xs, ys) if x in measured]
                if not pts:
                    continue
                ax.scatter([m for m, _ in pts], [y for _, y in pts], color=COLORS[algo],
                           marker="o" if d == "fwd" else "^", label="%s %s" % (algo, name))
                lo = min([lo] + [min(m, y) for m, y in pts])
                hi = max([hi] + [max(m, y) for m, y in pts])
    if hi == 0:
        plt.close(fig)
        return
    span = [lo / 1.5, hi * 1.5]
    ax.plot(span, span, "k-", lw=1, label="predicted = measured")
    ax.fill_between(span, [s * 0.75 for s in span], [s * 1.25 for s in span], color="k", alpha=0.08, label="+-25%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured time per call (us)")
    ax.set_ylabel("predicted time per call (us)")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    finish(fig, path, title)


def plan_time(plans, path, title):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for p in plans:
        for algo in ALGOS:
            xs, ys = plan_series(p, algo, lambda a, row: (a["fwd"]["seconds"] + a["bwd"]["seconds"]) * 1e3)
            if xs:
                axes[0].plot(xs, ys, "s-", color=COLORS[algo], label=algo)
            xs, ys = plan_series(p, algo, lambda a, row: a["efficiency"])
            if xs:
                axes[1].plot(xs, ys, "s-", color=COLORS[algo], label=algo)
    for ax, label in zip(axes, ["predicted fwd+bwd time (ms)", "predicted efficiency (fwd+bwd)"]):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    finish(fig, path, title)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="perf tool and planner JSON files")
    ap.add_argument("-o", "--out", default=".", help="folder for the PNG files")
    ap.add_argument("-t", "--title", default="", help="a first title line")
    ap.add_argument("-m", "--markdown", action="store_true", help="also print a side-by-side markdown table")
    args = ap.parse_args()
    perf, plans = load(args.inputs)
    if args.markdown and perf:
        markdown(perf, plans)
    os.makedirs(args.out, exist_ok=True)
    title = (args.title + "\n" if args.title else "") + subtitle(perf, plans)
    eff = (lambda a, row, d: a[d]["efficiency"])
    per_direction_chart(perf, plans, "efficiency", "efficiency t(1 rank) / t(P ranks)",
                        os.path.join(args.out, "efficiency.png"), title, eff)
    tfl = (lambda a, row, d: row["fwd_flops"] * (2.5 if d == "bwd" else 1) / a[d]["seconds"] / 1e12)
    per_direction_chart(perf, plans, "tflops", "TFLOP/s (visible pairs, all ranks)",
                        os.path.join(args.out, "tflops.png"), title, tfl)
    if perf and plans:
        predicted_vs_measured(perf, plans, os.path.join(args.out, "predicted_vs_measured.png"), title)
    if plans and not perf:
        plan_time(plans, os.path.join(args.out, "plan_time.png"), title)


if __name__ == "__main__":
    main()

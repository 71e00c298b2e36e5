#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Turn bench/report/results.tsv into report.md and PNG plots (gnuplot).

Usage: report.py RESULTS_TSV REPORT_DIR
"""
import csv
import glob
import os
import platform
import subprocess
import sys
import time


def goal_met(value, goal):
    try:
        v = float(value)
    except ValueError:
        return "?"
    if goal.startswith("<="):
        return "yes" if v <= float(goal[2:]) else "NO"
    if goal.startswith(">="):
        return "yes" if v >= float(goal[2:]) else "NO"
    return ""


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    results, report = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(results), delimiter="\t"))
    ratios = [r for r in rows if r["kind"] == "ratio"]

    # Ratio bar chart: value and goal side by side.
    plots = []
    if ratios:
        dat = os.path.join(report, "data", "ratios.dat")
        with open(dat, "w") as f:
            for i, r in enumerate(ratios):
                g = r["unit_or_goal"]
                goal = g[2:] if g[:2] in ("<=", ">=") else "NaN"
                f.write(f'{i} "{r["name"]}" {r["value"]} {goal}\n')
        png = os.path.join(report, "ratios.png")
        gnuplot(f"""
set terminal pngcairo noenhanced size 1200,{300 + 28 * len(ratios)} font ",10"
set output "{png}"
set title "Ratios against the floor measured in the same run (bars) and goals (x)"
set yrange [-1:{len(ratios)}]
set ytics ({", ".join(f'"{r["name"]}" {i}' for i, r in enumerate(ratios))})
set xlabel "ratio"
set grid x
set style fill solid 0.6
set key outside bottom
plot "{dat}" using ($3*0.5):1:($3*0.5):(0.35) with boxxyerror title "measured", \\
     "" using 4:1 with points pt 2 ps 2 lc rgb "red" title "goal"
""")
        plots.append(("Ratios", "ratios.png"))

    cdfs = sorted(glob.glob(os.path.join(report, "data", "*.cdf")))
    if cdfs:
        png = os.path.join(report, "latency-cdf.png")
        curves = ", ".join(
            f'"{c}" using 1:2 with lines lw 2 title "{os.path.basename(c)[:-4]}"' for c in cdfs)
        gnuplot(f"""
set terminal pngcairo noenhanced size 1000,600 font ",10"
set output "{png}"
set title "Round-trip latency CDF (same run)"
set logscale x
set xlabel "microseconds"
set ylabel "fraction"
set grid
set key bottom right
plot {curves}
""")
        plots.append(("Latency CDF", "latency-cdf.png"))

    # Plots a suite drew itself (e.g. pager-slowdown.png).
    for png in sorted(glob.glob(os.path.join(report, "*.png"))):
        name = os.path.basename(png)
        if name not in [p for _, p in plots]:
            plots.append((name[:-4], name))

    with open(os.path.join(report, "report.md"), "w") as f:
        f.write("# splitvm benchmark report\n\n")
        f.write(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        f.write(f"- host: {platform.node()}, kernel {platform.release()}, "
                f"{os.cpu_count()} CPUs\n")
        f.write("- ratios are against floors measured in the same run with the same CPU "
                "placement; goals are reported, not enforced.\n\n")
        for suite in dict.fromkeys(r["suite"] for r in rows):
            f.write(f"## {suite}\n\n")
            sr = [r for r in rows if r["suite"] == suite]
            rr = [r for r in sr if r["kind"] == "ratio"]
            if rr:
                f.write("| ratio | value | goal | met | what |\n|---|---|---|---|---|\n")
                for r in rr:
                    f.write(f"| {r['name']} | {r['value']} | {r['unit_or_goal']} | "
                            f"{goal_met(r['value'], r['unit_or_goal'])} | "
                            f"{r['description']} |\n")
                f.write("\n")
            mr = [r for r in sr if r["kind"] == "metric"]
            if mr:
                f.write("| metric | value | unit |\n|---|---|---|\n")
                for r in mr:
                    f.write(f"| {r['name']} | {r['value']} | {r['unit_or_goal']} |\n")
                f.write("\n")
            for r in sr:
                if r["kind"] == "error":
                    f.write(f"**suite failed**: {r['description']}\n\n")
        for title, png in plots:
            f.write(f"## {title}\n\n![{title}]({png})\n\n")


if __name__ == "__main__":
    main()

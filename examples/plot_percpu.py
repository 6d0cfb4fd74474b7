#!/usr/bin/env python3
"""Draws ns per add against threads from `percpu_counter --csv` as an SVG.

    cargo run --release --example percpu_counter -- --csv target/percpu.csv
    python3 examples/plot_percpu.py target/percpu.csv docs/percpu_counter.svg

Python 3 standard library only. The y axis is logarithmic, so that the
per-CPU counter and the Mutex fit one picture.
"""

import csv
import math
import sys

COLOURS = ["#1b7837", "#c51b7d", "#2166ac", "#b35806"]
WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 200, 60, 60


def read(path):
    """The machine line, the method names and the rows of the CSV."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    machine = ""
    if lines and lines[0].startswith("#"):
        machine = lines.pop(0).lstrip("# ").strip()
    table = list(csv.reader(lines))
    header, rows = table[0], table[1:]
    if header[:2] != ["threads", "cpus"] or not rows:
        sys.exit(f"{path}: not the CSV that percpu_counter --csv writes")
    methods = header[2:]
    data = [(int(r[0]), int(r[1]), [float(v) for v in r[2:]]) for r in rows]
    return machine, methods, data


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(machine, methods, data):
    threads = [d[0] for d in data]
    cpus = data[0][1]
    values = [v for d in data for v in d[2]]
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i):
        return LEFT + (plot_w * i / (len(threads) - 1) if len(threads) > 1 else plot_w / 2)

    def y(v):
        return TOP + plot_h * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">'
        "ns per add against threads (lower is better)</text>",
        f'<text x="{LEFT}" y="42" fill="#555">{esc(machine)}</text>',
    ]
    # Horizontal grid at 1, 2, 5 x each power of ten.
    decade = lo
    while decade <= hi:
        for m in (1, 2, 5):
            v = decade * m
            if lo <= v <= hi:
                yy = y(v)
                out.append(
                    f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{LEFT + plot_w}" y2="{yy:.1f}" '
                    f'stroke="{"#ccc" if m == 1 else "#eee"}"/>'
                )
                label = f"{v:g}"
                out.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>')
        decade *= 10
    for i, t in enumerate(threads):
        out.append(
            f'<text x="{x(i):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{t}</text>'
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 16}" text-anchor="middle">'
        f"threads ({cpus} CPUs; beyond them, oversubscribed)</text>"
    )
    out.append(
        f'<text transform="translate(18 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        "ns per add (log scale)</text>"
    )
    # Where the threads outnumber the CPUs.
    over = [i for i, t in enumerate(threads) if t > cpus]
    if over and over[0] > 0:
        xx = (x(over[0] - 1) + x(over[0])) / 2
        out.append(
            f'<line x1="{xx:.1f}" y1="{TOP}" x2="{xx:.1f}" y2="{TOP + plot_h}" '
            'stroke="#999" stroke-dasharray="4 4"/>'
        )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>'
    )
    for m, name in enumerate(methods):
        colour = COLOURS[m % len(COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(d[2][m]):.1f}" for i, d in enumerate(data))
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, d in enumerate(data):
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(d[2][m]):.1f}" r="3.5" fill="{colour}">'
                f"<title>{esc(name)}, {d[0]} threads: {d[2][m]:.2f} ns</title></circle>"
            )
        ly = TOP + 10 + 22 * m
        lx = LEFT + plot_w + 16
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 28}" y="{ly + 4}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot_percpu.py PERCPU.CSV OUT.SVG")
    machine, methods, data = read(sys.argv[1])
    with open(sys.argv[2], "w") as f:
        f.write(svg(machine, methods, data))


if __name__ == "__main__":
    main()

"""search.png: the metric over the searched parameters."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xsharp.searchspec import is_number

from .result import SearchResult

PLOT_SIZE = (6.4, 4.8)  # inches at 100 dpi
PLOT_LEFT, PLOT_RIGHT = (
    0.13,
    0.95,
)  # of the figure's width (the right: room for half the last tick label): the axes' sides (fixed margins: tight_layout costs 0.15 s)
TICK_CHARS = 14  # a text value's tick label is cut to this many characters
TICK_PX = 8  # a tick label's characters at the default 10 pt, in pixels (DejaVu Sans' widest digits and letters are under this)


def _label(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= TICK_CHARS else text[: TICK_CHARS - 1] + "\u2026"


def _log_axis(axis, lo: float, hi: float) -> None:
    """A log axis labelled in plain numbers (20, 50, 100 or 1e-05), never matplotlib's minor labels
    (2x10^1, 3x10^1 ...) that run into each other over one or two decades."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    decades = math.log10(hi / lo)
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,), numticks=8))
    axis.set_major_formatter(StrMethodFormatter("{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def figure(result: SearchResult):
    """The figure :func:`plot` saves (None when no trial has a metric): laid out by fixed margins,
    so tick labels are thinned and the legend placed by rule, not by measuring drawn text."""
    from matplotlib.figure import Figure

    done = [t for t in result.trials if t.metric is not None]
    if not done or not result.params:
        return None
    fig = Figure(figsize=PLOT_SIZE, dpi=100)
    ax = fig.add_subplot()
    xs = [t.params[result.params[0]] for t in done]
    ys = [100 * t.metric for t in done]
    numeric = all(is_number(v) for v in xs)
    bottom, top = 0.11, 0.93
    if len(result.params) == 1 or not numeric:
        if numeric:
            order = sorted(range(len(done)), key=lambda i: xs[i])
            px = [xs[i] for i in order]
        else:  # text, lists...: one place per distinct value, in the order first seen
            order = list(range(len(done)))
            labels = list(dict.fromkeys(_label(v) for v in xs))
            where = {text: i for i, text in enumerate(labels)}
            px = [where[_label(xs[i])] for i in order]
            width = (PLOT_RIGHT - PLOT_LEFT) * PLOT_SIZE[0] * 100
            longest = TICK_PX * max(len(text) for text in labels) + 10
            if len(labels) * longest <= width:  # every label, level
                ticks, rotation = list(range(len(labels))), 0
            else:  # upright, every step-th: a label's height (14 px) plus room between
                step = math.ceil(len(labels) * 22 / width)
                ticks, rotation = list(range(0, len(labels), step)), 90
                bottom = 0.11 + longest / (PLOT_SIZE[1] * 100)
            ax.set_xticks(ticks, [labels[i] for i in ticks], rotation=rotation)
        py = [ys[i] for i in order]
        ax.plot(px, py, "o-", color="C0", label="validation accuracy")
        stopped = [(x, y, i) for x, y, i in zip(px, py, order) if done[i].state == "STOPPED"]
        if stopped:
            ax.plot([x for x, _, _ in stopped], [y for _, y, _ in stopped], "x", color="C3", ms=9, mew=2, label="stopped early (at a rung)")
        if result.best is not None and result.best in done:
            b = order.index(done.index(result.best))
            ax.plot([px[b]], [py[b]], "*", color="C1", ms=16, mec="k", label=f"best: trial {result.best.id}")
        ax.set_xlabel(result.params[0])
        ax.set_ylabel("validation accuracy (%)")
        # above the axes, under the title: the legend never covers a point, whatever the curve's shape
        top = 0.86
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01, 1.0, 0.05), mode="expand", ncol=3, borderaxespad=0.0, frameon=False, fontsize=9)
    else:
        zs = [t.params[result.params[1]] for t in done]
        sc = ax.scatter(xs, zs, c=ys, s=160, cmap="viridis", edgecolors="k")
        for x, z, y in zip(xs, zs, ys):
            ax.annotate(f"{y:.1f}", (x, z), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=7)
        fig.colorbar(sc, ax=ax, label="validation accuracy (%)")
        ax.set_xlabel(result.params[0])
        ax.set_ylabel(result.params[1])
        if all(is_number(z) for z in zs) and min(zs) > 0 and max(zs) / min(zs) >= 8:
            ax.set_yscale("log")
            _log_axis(ax.yaxis, min(zs), max(zs))
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log")
        _log_axis(ax.xaxis, min(xs), max(xs))
    elif numeric:  # at most 7 labels, about 80 px apart: room for 8 digits (matplotlib's own choice allows 42 px)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    fig.subplots_adjust(left=PLOT_LEFT, right=PLOT_RIGHT, bottom=bottom, top=top)
    stopped = sum(t.state == "STOPPED" for t in result.trials)
    fig.suptitle(f"{len(done)} trials" + (f", {stopped} stopped early" if stopped else "") + (f"; best trial {result.best.id}" if result.best else ""), y=0.98)
    return fig


def plot(result: SearchResult, path: Path) -> Path | None:
    """The metric over the searched parameters: a curve for one, a coloured map for two or more
    (the first two), like the DLPF paper's error surface over learning rate x hidden units."""
    fig = figure(result)
    if fig is None:
        return None
    fig.savefig(path)
    return path

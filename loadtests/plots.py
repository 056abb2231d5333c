"""PNG plots of one load test, or of several overlaid (comparison mode). matplotlib, Agg backend (no display).

- ttft_over_time.png, itl_over_time.png: p50/p90/p99 per interval (loadtests.timeseries)
- throughput_over_time.png: output tokens/s, completed requests/s and, when known, running users
- latency_histograms.png: TTFT, ITL, TPOT and E2E distributions with p50/p99 marked

Called by `loadtests.run_loadtest` and `loadtests.compare_targets`; returns the files written.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from loadtests.records import RequestRecord  # noqa: E402
from loadtests.slo import percentile  # noqa: E402
from loadtests.timeseries import Series  # noqa: E402

DPI = 110
_PCT_STYLES = {"p50": "-", "p90": "--", "p99": ":"}


def _percentile_plot(path: Path, title: str, runs: dict[str, Series], field: str, unit: str) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, series) in enumerate(runs.items()):
        values = getattr(series, field)
        for pct, style in _PCT_STYLES.items():
            points = [(t, v) for t, v in zip(series.times_s, values[pct], strict=True) if v is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                name = pct if len(runs) == 1 else f"{label} {pct}"
                ax.plot(xs, ys, style, marker=".", color=colors[index % len(colors)], label=name)
    ax.set_title(title)
    ax.set_xlabel("time since the first request (s)")
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=3 if len(runs) > 1 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _throughput_plot(path: Path, runs: dict[str, Series], users: dict[str, list[tuple[float, int]]]) -> Path:
    has_users = any(users.values())
    fig, axes = plt.subplots(2 if has_users else 1, 1, figsize=(9, 6 if has_users else 4.5), sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1] if has_users else [1]})
    ax = axes[0][0]
    right = ax.twinx()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, series) in enumerate(runs.items()):
        color = colors[index % len(colors)]
        prefix = "" if len(runs) == 1 else f"{label} "
        ax.plot(series.times_s, series.output_tokens_per_s, "-", marker=".", color=color,
                label=f"{prefix}output tokens/s")
        right.plot(series.times_s, series.completed_per_s, "--", color=color, alpha=0.7,
                   label=f"{prefix}requests/s")
        # Locust's user count, from one second before the first request (its start-up before that is noise).
        history = [(t - series.t0_unix_s, n) for t, n in users.get(label, []) if t >= series.t0_unix_s - 1]
        if history:
            xs, ys = zip(*history, strict=True)
            axes[1][0].step(xs, ys, "-", where="post", color=color, label=f"{prefix}users")
    ax.set_title("Throughput over time")
    ax.set_ylabel("output tokens/s")
    right.set_ylabel("completed requests/s")
    ax.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small", loc="lower right")
    if has_users:
        axes[1][0].set_ylabel("users")
        axes[1][0].set_ylim(bottom=0)
        axes[1][0].grid(alpha=0.3)
    axes[-1][0].set_xlabel("time since the first request (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _histograms(path: Path, runs: dict[str, list[RequestRecord]]) -> Path:
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    metrics = (("TTFT (ms)", lambda r: [r.ttft_ms] if r.ttft_ms is not None else []),
               ("ITL (ms)", lambda r: r.itls_ms),
               ("TPOT (ms)", lambda r: [r.tpot_ms] if r.tpot_ms is not None else []),
               ("E2E latency (ms)", lambda r: [r.e2e_ms]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, values_of) in zip(axes.flat, metrics, strict=True):
        samples = {label: [v for r in records if r.ok for v in values_of(r)] for label, records in runs.items()}
        bins = _bins([v for values in samples.values() for v in values])
        if not isinstance(bins, int):
            ax.set_xscale("log")
            title += ", log scale"
        for index, (label, values) in enumerate(samples.items()):
            if not values:
                continue
            color = colors[index % len(colors)]
            p50, p99 = percentile(values, 50.0), percentile(values, 99.0)
            name = f"{label}: " if len(runs) > 1 else ""
            ax.hist(values, bins=bins, alpha=0.55 if len(runs) > 1 else 0.85, color=color,
                    label=f"{name}n={len(values)}, p50 {p50:.0f}, p99 {p99:.0f}")
            ax.axvline(p50, color=color, linestyle="-", linewidth=1)
            ax.axvline(p99, color=color, linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_ylabel("samples")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small")
    fig.suptitle("Latency distributions (solid line p50, dotted p99)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _bins(values: list[float]) -> int | list[float]:
    """40 linear bins, or 40 log-spaced ones for heavy tails (a stall of seconds among 50 ms token gaps would
    squeeze every other sample into the first bin)."""
    positive = [v for v in values if v > 0]
    if len(positive) < 2:
        return 40
    low, high = min(positive), max(positive)
    median = percentile(positive, 50.0) or low
    if high / max(median, 1e-9) < 20:
        return 40
    return [float(b) for b in np.logspace(np.log10(low), np.log10(high), 41)]


def write_plots(directory: Path, series: dict[str, Series], records: dict[str, list[RequestRecord]],
                users: dict[str, list[tuple[float, int]]]) -> list[Path]:
    """One or several runs keyed by label (a single run: one key). Returns the PNG files written."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        _percentile_plot(directory / "ttft_over_time.png", "Time to first token (per interval)", series,
                         "ttft_ms", "TTFT (ms)"),
        _percentile_plot(directory / "itl_over_time.png", "Inter-token latency (per interval)", series,
                         "itl_ms", "ITL (ms)"),
        _throughput_plot(directory / "throughput_over_time.png", series, users),
        _histograms(directory / "latency_histograms.png", records),
    ]

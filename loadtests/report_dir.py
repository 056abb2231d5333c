"""Turns a finished Locust run's directory into the report: summary.json, PNG plots and report.md.

Called by `loadtests.run_loadtest` after Locust exits; reads `records/` and Locust's CSV files from the same
directory. Returns the summary dict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtests.locust_csv import read_stats, read_user_history
from loadtests.locust_runner import CSV_PREFIX
from loadtests.plots import write_plots
from loadtests.records import read_records
from loadtests.report_md import render_report
from loadtests.slo import SLO
from loadtests.summary import build_summary
from loadtests.timeseries import build_series

RECORDS_DIR = "records"


def write_report(out_dir: Path, slo: SLO, context: dict[str, Any], plots: bool = True) -> dict[str, Any]:
    records = read_records(out_dir / RECORDS_DIR)
    rows = read_stats(out_dir / f"{CSV_PREFIX}_stats.csv")
    summary = build_summary(records, rows, slo, context)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    written: list[Path] = []
    if plots and records:
        label = context["scenario"]["name"]
        history = read_user_history(out_dir / f"{CSV_PREFIX}_stats_history.csv")
        written = write_plots(out_dir, {label: build_series(records)}, {label: records}, {label: history})
    (out_dir / "report.md").write_text(render_report(summary, [p.name for p in written]), encoding="utf-8")
    return summary

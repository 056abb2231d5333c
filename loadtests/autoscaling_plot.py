"""Plot a replicas-vs-load timeline (JSON list of {t, users, replicas}) as a PNG step chart.

The integration test `tests/integration/test_scaling.py::test_step_load_scales_up_and_back_down_within_the_delays`
records such a timeline at /tmp/warmserve-autoscaling-timeline.json:

    python -m loadtests.autoscaling_plot /tmp/warmserve-autoscaling-timeline.json docs/img/autoscaling-step.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_timeline(timeline: list[dict[str, float]], path: Path) -> Path:
    times = [p["t"] for p in timeline]
    fig, users_axis = plt.subplots(figsize=(9, 4))
    users_axis.step(times, [p["users"] for p in timeline], where="post", color="tab:gray", label="users (load)")
    users_axis.set_xlabel("time (s)")
    users_axis.set_ylabel("concurrent users")
    replicas_axis = users_axis.twinx()
    replicas_axis.step(times, [p["replicas"] for p in timeline], where="post", color="tab:blue", linewidth=2,
                       label="running replicas")
    replicas_axis.set_ylabel("running replicas")
    replicas_axis.set_ylim(0, max(p["replicas"] for p in timeline) + 1)
    handles = users_axis.get_legend_handles_labels()[0] + replicas_axis.get_legend_handles_labels()[0]
    users_axis.legend(handles, [h.get_label() for h in handles], loc="upper right")
    users_axis.set_title("LLM autoscaling on a step load (fake engines, real Ray Serve)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(plot_timeline(json.loads(Path(argv[0]).read_text()), Path(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Visible progress for long model preparation: a tqdm bar over named steps, on stderr."""

from __future__ import annotations

import time

from tqdm import tqdm


class StepProgress:
    def __init__(self, label: str, total_steps: int) -> None:
        self._bar = tqdm(total=total_steps, desc=f"preparing {label}", unit="step", dynamic_ncols=True)
        self._started_s = time.monotonic()

    def step(self, what: str) -> None:
        """Announce the step that starts now; the previous one is counted as done."""
        if self._bar.n or self._bar.postfix:
            self._bar.update(1)
        self._bar.set_postfix_str(what)

    def done(self) -> None:
        self._bar.update(self._bar.total - self._bar.n)
        self._bar.set_postfix_str(f"done in {time.monotonic() - self._started_s:.0f} s")
        self._bar.close()

"""Class labels: a `labels.txt` (one per line) shipped beside a weights file, else `class_0`..`class_{n-1}`.

Random weights have no meaning, so generated names say so; nothing is downloaded for ImageNet's names.
"""

from __future__ import annotations

from pathlib import Path


def generated_labels(num_classes: int) -> list[str]:
    return [f"class_{i}" for i in range(num_classes)]


def read_labels(path: Path, num_classes: int) -> list[str]:
    """Labels from `path`; raises ValueError when the count does not match the network's classes."""
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(labels) != num_classes:
        raise ValueError(f"{path} has {len(labels)} labels but the model has {num_classes} classes")
    return labels

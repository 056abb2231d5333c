"""Model versions in the config: an LLM entry named `<model>@<version>` is one version of `<model>`.

The rules a config's versions must follow (checked at load by `check_versions`); what a version means for
routing is in router/traffic_split.py and docs/operations.md ("Versions and traffic splitting").
"""

from __future__ import annotations

from collections.abc import Iterable

VERSION_SEPARATOR = "@"
# `<model>` or `<model>@<version>`. Vision names have no `/`: they are a path segment of the KServe routes.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*(@[A-Za-z0-9][A-Za-z0-9._-]*)?$"
VISION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*(@[A-Za-z0-9][A-Za-z0-9._-]*)?$"


def split_version(name: str) -> tuple[str, str | None]:
    """`smollm2@v2` -> ("smollm2", "v2"); an unversioned name -> (name, None)."""
    base, separator, version = name.partition(VERSION_SEPARATOR)
    return (base, version) if separator else (name, None)


def check_weight_on_version(name: str, traffic_weight: float) -> None:
    """A traffic weight belongs to a version only. Compared with the default (1), not "was it set": a dumped
    and re-validated config sets every field."""
    if traffic_weight != 1.0 and split_version(name)[1] is None:
        raise ValueError(f"model {name!r}: traffic_weight applies only to versions (entries named "
                         f"'<model>@<version>'); {name!r} has no version")


def check_versions(llm_weights: Iterable[tuple[str, float]], vision_weights: Iterable[tuple[str, float]]) -> None:
    """Raise ValueError unless every versioned name is unambiguous and its model has traffic somewhere.

    Each argument holds one kind's entries as (name, traffic_weight); both kinds share the one model
    namespace, and a model's versions are all of one kind."""
    entries = [(name, weight, "llm") for name, weight in llm_weights] + \
        [(name, weight, "vision") for name, weight in vision_weights]
    plain = {name for name, _, _ in entries if split_version(name)[1] is None}
    totals: dict[str, float] = {}
    kinds: dict[str, set[str]] = {}
    for name, weight, kind in entries:
        base, version = split_version(name)
        if version is not None:
            totals[base] = totals.get(base, 0.0) + weight
            kinds.setdefault(base, set()).add(kind)
    clashes = sorted(base for base in totals if base in plain)
    if clashes:
        raise ValueError(f"models: {clashes} name both a model and the versions of one (entries named "
                         f"'{clashes[0]}@<version>'); a request for '{clashes[0]}' would be ambiguous: rename one")
    mixed = sorted(base for base, seen in kinds.items() if len(seen) > 1)
    if mixed:
        raise ValueError(f"models: the versions of {mixed} are both LLMs and vision models; a model's versions "
                         "must all be of one kind")
    silent = sorted(base for base, total in totals.items() if total <= 0)
    if silent:
        raise ValueError(f"models: every version of {silent} has traffic_weight 0, so requests for "
                         f"'{silent[0]}' would have nowhere to go; give at least one version a weight > 0")

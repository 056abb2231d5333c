"""Model versions in the config: an LLM entry named `<model>@<version>` is one version of `<model>`.

The rules a config's versions must follow (checked at load by `check_versions`); what a version means for
routing is in router/traffic_split.py and docs/operations.md ("Versions and traffic splitting").
"""

from __future__ import annotations

from collections.abc import Iterable

VERSION_SEPARATOR = "@"


def split_version(name: str) -> tuple[str, str | None]:
    """`smollm2@v2` -> ("smollm2", "v2"); an unversioned name -> (name, None)."""
    base, separator, version = name.partition(VERSION_SEPARATOR)
    return (base, version) if separator else (name, None)


def check_versions(llm_weights: Iterable[tuple[str, float]], other_names: Iterable[str]) -> None:
    """Raise ValueError unless every versioned LLM name is unambiguous and its model has traffic somewhere.

    `llm_weights` are the LLM entries' (name, traffic_weight); `other_names` the vision models' names, which
    share the one model namespace."""
    llm_weights = list(llm_weights)
    plain = {name for name, _ in llm_weights if split_version(name)[1] is None} | set(other_names)
    totals: dict[str, float] = {}
    for name, weight in llm_weights:
        base, version = split_version(name)
        if version is not None:
            totals[base] = totals.get(base, 0.0) + weight
    clashes = sorted(base for base in totals if base in plain)
    if clashes:
        raise ValueError(f"models: {clashes} name both a model and the versions of one (entries named "
                         f"'{clashes[0]}@<version>'); a request for '{clashes[0]}' would be ambiguous: rename one")
    silent = sorted(base for base, total in totals.items() if total <= 0)
    if silent:
        raise ValueError(f"models: every version of {silent} has traffic_weight 0, so requests for "
                         f"'{silent[0]}' would have nowhere to go; give at least one version a weight > 0")

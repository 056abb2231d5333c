"""Which served model a request's `model` names: a model, a pinned version, or a versioned model's split.

The ingress holds one resolver for its LLMs. Weights arrive from the ingress's user config, so a rollout
step changes them on every running ingress replica without a restart (`Ingress.reconfigure`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from configs.model_versions import VERSION_SEPARATOR, split_version
from deployments.errors import APIError, model_not_found
from router.traffic_split import TrafficSplit, splits_of

# Request header: the conversation or user a request belongs to; requests with the same value go to the same
# version (the OpenAI `user` field serves when it is absent). Also a request header pinning a version.
SESSION_HEADER = "x-warmserve-session"
VERSION_HEADER = "x-warmserve-version"  # in requests: pin this version; in responses: the version that answered

Served = TypeVar("Served")


class ModelResolver(Generic[Served]):
    def __init__(self, served: Mapping[str, Served], rng: random.Random | None = None) -> None:
        self._served = dict(served)
        self._rng = rng or random.Random()
        self._splits: dict[str, TrafficSplit] = {}
        self.set_weights({name: 1.0 for name in self._served})

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Versions' traffic weights by served name (`<model>@<version>`); versions not named keep 0 traffic
        unless pinned. Raises ValueError, changing nothing, for a name this ingress does not serve."""
        unknown = sorted(set(weights) - set(self._served))
        if unknown:
            raise ValueError(f"traffic weights name models this ingress does not serve: {unknown}; "
                             f"it serves {sorted(self._served)}")
        versions = [(name, float(weights.get(name, 0.0))) for name in self._served if split_version(name)[1]]
        self._splits = splits_of(versions)

    def splits(self) -> dict[str, TrafficSplit]:
        return dict(self._splits)

    def names(self) -> list[str]:
        """Every name a request may use: models, versions and versioned models' bare names."""
        return sorted(set(self._served) | set(self._splits))

    def resolve(self, name: str, pinned_version: str | None = None, session: str | None = None) -> tuple[str, Served]:
        """(served name, served model) for a request naming `name`, maybe pinned by header, maybe in a session.

        Raises a 404 APIError listing the known names for an unknown model or version, 400 when the pin
        contradicts a version already in the name."""
        if pinned_version:
            base, version = split_version(name)
            if version is not None and version != pinned_version:
                raise APIError(400, f"the {VERSION_HEADER} header asks for version '{pinned_version}', but the model "
                               f"'{name}' already names version '{version}'", type="invalid_request_error",
                               param="model", code="version_conflict")
            name = f"{base}{VERSION_SEPARATOR}{pinned_version}"
        served = self._served.get(name)
        if served is not None:
            return name, served
        split = self._splits.get(name)
        if split is None:
            raise model_not_found(name, self.names())
        chosen = split.choose(session, self._rng)
        return chosen, self._served[chosen]


    def fallback(self, name: str, failed: str, session: str | None = None) -> tuple[str, Served] | None:
        """Where a request for the bare name `name`, which failed on its version `failed` before answering,
        goes instead: another version with traffic, by the same session hash (or at random). None when the
        request named or pinned a version itself (it asked for that one), or no other version has traffic.

        This is what keeps a bad canary's errors from its clients: the rollout still sees them in the
        failed version's metrics and rolls it back, while the request is answered by the old version."""
        split = self._splits.get(name)
        rest = None if split is None else split.without(failed)
        if rest is None:
            return None
        chosen = rest.choose(session, self._rng)
        return chosen, self._served[chosen]


def bare_name_cards(resolver: ModelResolver[Served], card: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """`/v1/models` entries for the versioned models' bare names: the first version's card (`card(name)`)
    under the bare name, with each version's share."""
    return [{**card(split.versions[0]), "id": model, "versions": split.shares()}
            for model, split in resolver.splits().items()]

"""Stable deployment versions, so re-applying a config restarts only the deployments it changed.

`serve.run` gives every deployment without a version a random one, so each re-apply (`warmserve up` on a
running head, the tests' redeploys) would restart every replica of every model and drop their KV caches.
A deployment's version here is a digest of what its replicas are built from: warmserve's own code and
the deployment's init arguments. Re-applying an unchanged model then leaves its replicas running (Serve
still applies lightweight changes, such as replica counts or the ingress's traffic weights, in place),
and a changed model, or new warmserve code, rolls its replicas as before.

A checkpoint changed on disk under the same path is not seen: give it a new model name or path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ray.serve import Application, Deployment

# The packages a replica or the ingress imports; a change to any file in them changes every version.
_CODE_PACKAGES = ("configs", "engines", "router", "deployments")


@cache
def code_fingerprint() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in _CODE_PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            digest.update(str(source.relative_to(root)).encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    """A JSON-able form of an init argument that is equal exactly when the argument is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):  # e.g. an API key's digest
        return value.hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    # A bound deployment (Serve turns it into a handle): it is versioned on its own, so only its name counts.
    bound = getattr(value, "_bound_deployment", None)
    if bound is not None:
        return {"deployment": bound.name}
    raise TypeError(f"no stable version for an init argument of type {type(value).__name__}")


def deployment_version(init_args: Iterable[Any]) -> str:
    payload = json.dumps([code_fingerprint(), *(_canonical(arg) for arg in init_args)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def versioned_bind(deployment: Deployment, *init_args: Any) -> Application:
    """`deployment.bind(*init_args)` under a version derived from its code and arguments. `_internal`:
    Serve keeps the `version` option for its own callers; `serve.run` users otherwise get a random one."""
    return deployment.options(version=deployment_version(init_args), _internal=True).bind(*init_args)

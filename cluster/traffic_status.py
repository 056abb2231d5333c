"""`warmserve status`'s traffic lines: each versioned model's split, as the ingress's `/v1/models` reports it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def traffic_lines_of(models: dict[str, Any]) -> list[str]:
    """One line per versioned model in a `/v1/models` body: `chat: chat@v1 90%, chat@v2 10%`."""
    lines = []
    for card in models.get("data", []):
        versions = card.get("versions")
        if versions:
            shares = ", ".join(f"{name} {share:.0%}" for name, share in versions.items())
            lines.append(f"traffic {card['id']}: {shares}")
    return lines


def traffic_lines(root_url: str, api_key: str | None, timeout_s: float = 10.0) -> list[str]:
    """The lines, none when no model has versions, or one line saying why they could not be read."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(f"{root_url}/v1/models", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return traffic_lines_of(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        if error.code == 401 and api_key is None:  # API keys configured: splits shown with --api-key only
            return []
        return [f"traffic: {root_url}/v1/models answered HTTP {error.code}"]
    except (urllib.error.URLError, OSError, ValueError) as error:
        return [f"traffic: {root_url}/v1/models unreachable ({error})"]

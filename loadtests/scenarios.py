"""Named load-test scenarios and their YAML/JSON form: which users (with weights), which load shape, the
workload sizes and the SLOs.

A scenario file looks like this (every key optional; unknown keys are errors):

    name: my-chat
    description: shared-prefix chat, stepping up to 16 users
    users: {shared_prefix: 3, multi_turn: 1}        # kind -> weight (kinds: loadtests.workloads.KINDS)
    shape: {kind: step, users: 16, step_users: 4, step_s: 30, duration_s: 300, max_requests: 5000}
    workload: {model: smollm2-135m-instruct, seed: 0, max_tokens: 64, prefix_groups: 16, prefix_tokens: 600}
    slo: {ttft_ms: 2000, tpot_ms: 200}

Called by `loadtests.run_loadtest` (which applies command-line overrides, then writes the resolved scenario as
JSON into the report directory) and by `loadtests.locustfile` (which reads that JSON in every Locust process).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from loadtests.shapes import ShapeSpec
from loadtests.slo import SLO
from loadtests.workloads import KINDS, WorkloadParams


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names the offending key or value."""


@dataclass(slots=True)
class Scenario:
    name: str
    description: str
    users: dict[str, int]  # kind -> weight >= 1
    shape: ShapeSpec = field(default_factory=ShapeSpec)
    workload: WorkloadParams = field(default_factory=WorkloadParams)
    slo: SLO = field(default_factory=SLO)

    def validate(self) -> None:
        if not self.users:
            raise ScenarioError(f"scenario {self.name!r}: `users` names no user kind (kinds: {', '.join(KINDS)})")
        for kind, weight in self.users.items():
            if kind not in KINDS:
                raise ScenarioError(f"scenario {self.name!r}: unknown user kind {kind!r} (kinds: {', '.join(KINDS)})")
            if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 1000:
                raise ScenarioError(f"scenario {self.name!r}: weight of {kind} must be an integer in [1, 1000], "
                                    f"got {weight!r}")
        try:
            self.workload.validate()
        except ValueError as error:
            raise ScenarioError(f"scenario {self.name!r}: workload: {error}") from None

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "description": self.description, "users": self.users,
                           "shape": asdict(self.shape), "workload": asdict(self.workload),
                           "slo": asdict(self.slo)}, indent=2)


BUILTIN: dict[str, Scenario] = {
    "chat": Scenario("chat", "streaming chat, requests in 8 groups sharing a 512-token system prompt",
                     {"shared_prefix": 1}),
    "multi_turn": Scenario("multi_turn", "4-turn conversations resending their growing history", {"multi_turn": 1}),
    "long_context": Scenario("long_context", "1500-token documents with a short instruction", {"long_context": 1}),
    "completions": Scenario("completions", "/v1/completions with 256-token prompts", {"completions": 1}),
    "vision": Scenario("vision", "KServe v2 infer requests, one image each (binary tensors)", {"vision": 1}),
    "mixed": Scenario("mixed", "shared-prefix chat, multi-turn, long-context and completions users, 3:2:1:1",
                      {"shared_prefix": 3, "multi_turn": 2, "long_context": 1, "completions": 1}),
}


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in name (BUILTIN) or a YAML/JSON file. Raises ScenarioError naming what is wrong."""
    if name_or_path in BUILTIN:
        builtin = BUILTIN[name_or_path]
        scenario = Scenario(builtin.name, builtin.description, dict(builtin.users), builtin.shape,
                            WorkloadParams(**asdict(builtin.workload)), builtin.slo)
        scenario.validate()
        return scenario
    path = Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(f"--scenario {name_or_path!r} is neither a built-in scenario "
                            f"({', '.join(BUILTIN)}) nor a file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ScenarioError(f"cannot read scenario file {path}: {error}") from None
    return scenario_from_mapping(raw, default_name=path.stem)


def scenario_from_mapping(raw: object, default_name: str) -> Scenario:
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {default_name!r}: expected a mapping at the top level")
    known = {"name", "description", "users", "shape", "workload", "slo"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ScenarioError(f"scenario {default_name!r}: unknown key(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))})")
    name = str(raw.get("name", default_name))
    users = raw.get("users", {"shared_prefix": 1})
    if not isinstance(users, dict):
        raise ScenarioError(f"scenario {name!r}: `users` must map user kinds to weights")
    try:
        shape = ShapeSpec.from_mapping(_mapping(raw, "shape", name))
        workload = _dataclass_from(WorkloadParams, _mapping(raw, "workload", name), name, "workload")
        slo = _dataclass_from(SLO, _mapping(raw, "slo", name), name, "slo")
    except (TypeError, ValueError) as error:
        raise ScenarioError(f"scenario {name!r}: {error}") from None
    scenario = Scenario(name, str(raw.get("description", "")), dict(users), shape, workload, slo)
    scenario.validate()
    return scenario


def _mapping(raw: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ScenarioError(f"scenario {name!r}: `{key}` must be a mapping")
    return value


def _dataclass_from(cls: type, values: dict[str, Any], name: str, key: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ScenarioError(f"scenario {name!r}: unknown {key} key(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))})")
    return cls(**values)

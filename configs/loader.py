"""Load and validate a deployment config file once, reporting every error with its field path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from configs.schema import ClusterConfig

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass(slots=True, frozen=True)
class ConfigIssue:
    field_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.field_path}: {self.message}" if self.field_path else self.message


class ConfigError(Exception):
    """Raised by `load_config`; carries every problem found, not just the first."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"invalid config {source}:\n{lines}")


def resolve_config_path(name_or_path: str) -> Path:
    """A file path, or the name of a shipped profile (`local`, `local-tp2`, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    profile = PROFILES_DIR / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if profile.is_file():
        return profile
    shipped = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    raise ConfigError(name_or_path, [ConfigIssue("", f"no such file, and not a shipped profile {shipped}")])


def _issues_from_validation(error: ValidationError) -> list[ConfigIssue]:
    issues = []
    for item in error.errors():
        field_path = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        issues.append(ConfigIssue(field_path, message))
    return issues


def parse_config(data: object, source: str = "<memory>") -> ClusterConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", f"top level must be a mapping, got {type(data).__name__}")])
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, _issues_from_validation(error)) from None


def load_config(name_or_path: str) -> ClusterConfig:
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [ConfigIssue("", f"not valid YAML: {error}")]) from None
    return parse_config(data, str(path))

"""Config loading for the entry points: schema validation plus a check that every model reference resolves.

The schema lives in `configs/` (which cannot know the model store); this adds the store check so that an
unknown model name or a path that is not a model fails at load time, with the known names listed.
"""

from __future__ import annotations

from configs.loader import ConfigError, ConfigIssue, load_config
from configs.schema import ClusterConfig
from configs.security_schema import ApiKeyError, read_key_secret
from engines.model_store.store import UnknownModelError, check_reference


def check_models(config: ClusterConfig, source: str) -> None:
    issues = []
    for index, model in enumerate(config.models):
        try:
            check_reference(model.model)
        except UnknownModelError as error:
            issues.append(ConfigIssue(f"models.{index}.model", str(error)))
    for index, key in enumerate(config.security.api_keys):  # an unset key_env fails here, not at build
        try:
            read_key_secret(key)
        except ApiKeyError as error:
            issues.append(ConfigIssue(f"security.api_keys.{index}", str(error)))
    if issues:
        raise ConfigError(source, issues)


def load_checked_config(name_or_path: str) -> ClusterConfig:
    config = load_config(name_or_path)
    check_models(config, name_or_path)
    return config

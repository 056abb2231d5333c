"""A Ray Serve application builder: the app `warmserve up` deploys, for `serve deploy` and KubeRay's RayService.

Serve config: `import_path: cluster.serve_app:app_builder` with `args: {config: PATH}` (a warmserve config
file, e.g. mounted from a ConfigMap; docs/kuberay/). Serve calls it on the head node each time it builds
the application. It uses the same config as `warmserve up`, validated the same way (the placement checks
included); a multi-node model must be a directory present at the same path on every node (a shared
volume or the image), since a model-store name is built into the head's own cache only.
"""

from __future__ import annotations

from ray.serve import Application

from cluster.config_check import load_checked_config
from cluster.serve_control import prepare_models
from deployments.app_builder import build_app


def app_builder(args: dict[str, str]) -> Application:
    """Called by Ray Serve with the application's `args`; raises ConfigError listing every config problem."""
    config = load_checked_config(args["config"])
    return build_app(config, prepare_models(config))

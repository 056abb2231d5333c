"""One LLM model as the ingress serves it: its config, tokenizer, handles, admission gate, and how this
process's routers name its deployment when a replica of it fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ray.serve.handle import DeploymentHandle

from configs.schema import LLMModelConfig
from deployments.admission import AdmissionGate
from deployments.tokenizer_thread import TokenizerThread
from engines.tokenizer import PromptTokenizer
from router.replica_exclusions import deployment_key, process_exclusions


@dataclass(slots=True)
class ServedModel:
    config: LLMModelConfig
    tokenizer: PromptTokenizer
    handle: DeploymentHandle
    created: int
    admission: AdmissionGate
    # How this process's routers name the model's deployment in the replica exclusion registry.
    exclusion_key: str
    # `generate` as a token stream over Serve's inter-deployment gRPC channel (the replica's own gRPC
    # server) rather than a Ray streaming generator: less CPU per streamed chunk in the ingress and the
    # replica (docs/benchmarks.md, "Transport"). Set on the handle, not left to the handle's default, which Serve
    # fixes from RAY_SERVE_THROUGHPUT_OPTIMIZED when the creating process first imports `ray.serve`.
    stream: DeploymentHandle
    # Where the chat template and the tokenizer run: off the event loop.
    tokenizer_thread: TokenizerThread

    @classmethod
    def create(cls, config: LLMModelConfig, model_path: str, handle: DeploymentHandle, created: int) -> ServedModel:
        return cls(config, PromptTokenizer(Path(model_path)), handle, created,
                   AdmissionGate(config.admission, config.name),
                   deployment_key(handle.app_name, handle.deployment_name),
                   handle.options(stream=True, _by_reference=False),
                   TokenizerThread(config.name))

    def exclude_replica(self, replica_id: str) -> None:
        """A call to the replica failed: the routers of this process skip it from now on."""
        process_exclusions().exclude(self.exclusion_key, replica_id, self.config.failover.exclude_s)

    def left_behind(self, request_id: str) -> str | None:
        """The replica an engine request waits on when that replica was excluded meanwhile."""
        return process_exclusions().left_behind(self.exclusion_key, request_id)

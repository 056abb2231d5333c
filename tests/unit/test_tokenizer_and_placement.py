from __future__ import annotations

import os
from pathlib import Path

import pytest

from configs.loader import parse_config
from engines.model_store.store import ModelStore
from engines.placement import replica_resources
from engines.platform import resolve_dtype
from engines.tokenizer import ChatTemplateError, PromptTokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PromptTokenizer:
    return PromptTokenizer(ModelStore(tmp_path_factory.mktemp("models")).resolve("tiny-random-llama"))


def test_chat_template_renders_chatml_with_generation_prompt(tokenizer: PromptTokenizer) -> None:
    text = tokenizer.render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_encode_decode_round_trip(tokenizer: PromptTokenizer) -> None:
    ids = tokenizer.encode("The capital of France is Paris.")
    assert ids and tokenizer.decode(ids) == "The capital of France is Paris."
    chat_ids = tokenizer.encode_chat([{"role": "user", "content": "Hi"}])
    assert chat_ids[0] == tokenizer.encode("<|im_start|>")[0]


def test_tokenizer_without_template_is_rejected(tmp_path: Path, tokenizer: PromptTokenizer) -> None:
    tokenizer._tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    import json
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    with pytest.raises(ChatTemplateError, match="no chat template"):
        PromptTokenizer(tmp_path)


def _model(placement: dict | None = None, **engine: object) -> object:
    entry = {"name": "m", "model": "x", "engine": engine, "placement": placement or {}}
    return parse_config({"models": [entry]}).models[0]


def test_cpu_bundles_give_each_worker_its_own_cpu() -> None:
    resources = replica_resources(_model(tensor_parallel_size=2))
    assert resources.bundles == [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert resources.strategy == "STRICT_PACK" and resources.total == {"CPU": 3.0}


def test_gpu_bundle_holds_all_gpus_of_the_replica() -> None:
    model = _model(tensor_parallel_size=4, placement={"device": "gpu", "gpus_per_node": 8})
    assert replica_resources(model).bundles == [{"CPU": 5.0, "GPU": 4.0}]


def test_fake_engine_needs_only_the_replica() -> None:
    assert replica_resources(_model(kind="fake")).bundles == [{"CPU": 1.0}]


def test_serve_options_keep_the_cpu_tp2_profile_and_free_bundle_0_for_a_gpu_worker() -> None:
    from configs.loader import load_config
    from deployments.app_builder import replica_placement_options

    tp2 = replica_placement_options(replica_resources(load_config("local-tp2").models[0]))
    assert tp2 == {"ray_actor_options": {"num_cpus": 1.0, "num_gpus": 0.0},
                   "placement_group_bundles": [{"CPU": 1.0}] * 3, "placement_group_strategy": "STRICT_PACK"}
    spanning = _model(tensor_parallel_size=8, pipeline_parallel_size=2,
                      placement={"device": "gpu", "gpus_per_node": 8, "nodes": 2})
    options = replica_placement_options(replica_resources(spanning))
    # The replica takes no GPU: vLLM's Ray worker for bundle 0 needs that bundle's GPU.
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert len(options["placement_group_bundles"]) == 16 and options["placement_group_strategy"] == "PACK"


def test_dtype_resolution() -> None:
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("auto", "gpu") == "auto"
    assert resolve_dtype("auto", "cpu") == "float32"


def test_engine_children_get_the_configured_niceness() -> None:
    import subprocess

    import psutil

    from engines.process_priority import set_child_niceness

    child = subprocess.Popen(["sleep", "30"])
    try:
        set_child_niceness(7)  # raising niceness needs no privilege, so this holds everywhere
        assert psutil.Process(child.pid).nice() == 7
    finally:
        child.kill()
        child.wait()


def test_own_niceness_reaches_threads_started_before_it() -> None:
    """Every existing thread is reniced, not only the main one (Linux niceness is per thread); raising
    niceness needs no privilege, so this runs in a child process to leave the test runner's priority."""
    import subprocess
    import sys

    script = (
        "import os, threading\n"
        "from engines.process_priority import set_own_niceness\n"
        "seen = {}\n"
        "started = threading.Event(); renice_done = threading.Event()\n"
        "def worker():\n"
        "    started.set(); renice_done.wait(); seen['thread'] = os.getpriority(os.PRIO_PROCESS, 0)\n"
        "t = threading.Thread(target=worker); t.start(); started.wait()\n"
        "set_own_niceness(os.getpriority(os.PRIO_PROCESS, 0) + 3)\n"
        "renice_done.set(); t.join()\n"
        "print(os.getpriority(os.PRIO_PROCESS, 0), seen['thread'])\n"
    )
    base = os.getpriority(os.PRIO_PROCESS, 0)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=str(Path(__file__).resolve().parents[2]))
    main_nice, thread_nice = (int(v) for v in done.stdout.split())
    expected = min(base + 3, 19)
    assert (main_nice, thread_nice) == (expected, expected), done.stdout

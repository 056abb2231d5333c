"""Prompts for the load-test users: exact token sizes, determinism, and the scenario format."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loadtests.scenarios import BUILTIN, ScenarioError, load_scenario, scenario_from_mapping
from loadtests.text_source import BOOK_PATH, HFTokenCounter, TextSource, WordCounter, resolve_tokenizer
from loadtests.workloads import CHAT_PATH, COMPLETIONS_PATH, WorkloadFactory, WorkloadParams

SMOLLM2_TOKENIZER = Path.home() / ".cache" / "warmserve" / "models" / "smollm2-135m-instruct" / "tokenizer.json"
TINY_TOKENIZER = Path.home() / ".cache" / "warmserve" / "models" / "tiny-random-llama" / "tokenizer.json"


def test_shipped_book_is_a_few_hundred_kb() -> None:
    assert 100_000 < BOOK_PATH.stat().st_size < 400_000


@pytest.mark.parametrize("tokenizer", [SMOLLM2_TOKENIZER, TINY_TOKENIZER], ids=["smollm2", "tiny"])
def test_passages_have_exact_token_counts(tokenizer: Path) -> None:
    if not tokenizer.is_file():
        pytest.skip(f"{tokenizer} not built (./warmserve prepare)")
    counter = HFTokenCounter(tokenizer)
    source = TextSource(counter)
    rng = random.Random(7)
    for tokens in [1, 2, 3, 7, 31, 128, 600, 2000]:
        for _ in range(5):
            assert counter.count(source.passage(rng, tokens)) == tokens


def test_passages_are_deterministic_and_long_ones_repeat_the_text() -> None:
    source = TextSource(WordCounter())
    assert source.passage(random.Random(1), 50) == source.passage(random.Random(1), 50)
    assert source.passage(random.Random(1), 50) != source.passage(random.Random(2), 50)
    longer = source.total_tokens + 100
    assert WordCounter().count(source.passage(random.Random(0), longer)) == longer
    with pytest.raises(ValueError):
        source.passage(random.Random(0), 0)


def test_requests_per_kind() -> None:
    params = WorkloadParams(model="m", seed=3, max_tokens=8, prefix_groups=2, prefix_tokens=40, question_tokens=5,
                            turns=2, turn_tokens=6, long_context_tokens=90, completion_prompt_tokens=12)
    factory = WorkloadFactory(params, TextSource(WordCounter()))
    shared = [factory.shared_prefix(user, i).body for user in range(3) for i in range(4)]
    systems = {b["messages"][0]["content"] for b in shared}
    assert len(systems) <= 2  # every request uses one of the groups' system prompts
    assert all(len(s.split()) == 40 for s in systems)
    assert all(b["max_tokens"] == 8 and b["ignore_eos"] and b["stream"] and b["model"] == "m" for b in shared)
    assert factory.shared_prefix(1, 2) == factory.shared_prefix(1, 2)
    assert factory.shared_prefix(1, 2).path == CHAT_PATH
    long = factory.long_context(0, 0)
    assert len(long.body["messages"][0]["content"].split()) == 90
    completion = factory.completion(0, 0)
    assert completion.path == COMPLETIONS_PATH and len(completion.body["prompt"].split()) == 12


def test_conversation_resends_its_growing_history() -> None:
    params = WorkloadParams(turns=3, turn_tokens=5)
    conversation = WorkloadFactory(params, TextSource(WordCounter())).conversation(0, 0)
    first = conversation.next_request().body["messages"]
    assert [m["role"] for m in first] == ["user"]
    conversation.answer("first answer")
    second = conversation.next_request().body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[:2] == [first[0], {"role": "assistant", "content": "first answer"}]
    conversation.drop_unanswered()  # the second turn failed
    assert len(conversation.messages) == 2 and not conversation.done
    conversation.next_request()
    conversation.answer("a")
    conversation.next_request()
    assert conversation.done


def test_workload_bounds_name_the_field() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        WorkloadParams(max_tokens=0).validate()


def test_scenarios_builtin_and_from_mapping(tmp_path: Path) -> None:
    for name in BUILTIN:
        assert load_scenario(name).name == name
    scenario = scenario_from_mapping({"users": {"shared_prefix": 2, "completions": 1},
                                      "shape": {"kind": "spike", "users": 8, "duration_s": 30},
                                      "workload": {"max_tokens": 4}, "slo": {"ttft_ms": 500}}, "x")
    assert scenario.shape.kind == "spike" and scenario.workload.max_tokens == 4 and scenario.slo.ttft_ms == 500
    path = tmp_path / "s.yaml"
    path.write_text("users: {shared_prefix: 1}\nshape: {kind: step}\n")
    assert load_scenario(str(path)).name == "s"
    # The resolved scenario's JSON loads back to the same scenario (how the harness hands it to Locust).
    (tmp_path / "s.json").write_text(scenario.to_json())
    again = load_scenario(str(tmp_path / "s.json"))
    assert (again.users, again.shape, again.workload, again.slo) == (scenario.users, scenario.shape,
                                                                     scenario.workload, scenario.slo)


@pytest.mark.parametrize(("raw", "message"), [
    ({"users": {"audio": 1}}, "unknown user kind"),
    ({"workload": {"vision_model": ""}}, "vision_model must be a model name"),
    ({"users": {"shared_prefix": 0}}, "weight"),
    ({"users": {}}, "names no user kind"),
    ({"shape": {"users": -1}}, "users"),
    ({"workload": {"max_token": 3}}, "max_token"),
    ({"workload": {"turns": 0}}, "turns"),
    ({"slo": {"ttft_ms": 0}}, "ttft_ms"),
    ({"extra": 1}, "extra"),
])
def test_bad_scenarios_name_the_problem(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        scenario_from_mapping(raw, "bad")


def test_tokenizer_resolution(tmp_path: Path) -> None:
    assert resolve_tokenizer(None, "no-such-model") is None
    with pytest.raises(ValueError, match="nowhere"):
        resolve_tokenizer(str(tmp_path / "nowhere"), "m")
    (tmp_path / "tokenizer.json").write_text("{}")
    assert resolve_tokenizer(str(tmp_path), "m") == tmp_path / "tokenizer.json"

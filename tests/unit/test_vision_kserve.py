"""The KServe v2 / Triton codec against tritonclient's own request encoder and response parser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from deployments.vision_kserve import (
    HEADER_LENGTH,
    KServeError,
    OutputTensor,
    classification_strings,
    encode_infer_response,
    parse_infer_request,
)


def _client_request(array: np.ndarray, datatype: str, binary: bool, outputs=None) -> tuple[bytes, str | None]:
    tensor = httpclient.InferInput("input", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([tensor], outputs=outputs,
                                                                             request_id="42")
    return body, None if json_size is None else str(json_size)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(("dtype", "datatype"), [(np.float32, "FP32"), (np.float16, "FP16"), (np.int64, "INT64")])
def test_parses_what_tritonclient_sends(binary: bool, dtype: type, datatype: str) -> None:
    array = (np.arange(2 * 3 * 4 * 5) - 7).reshape(2, 3, 4, 5).astype(dtype)
    request = parse_infer_request(*_client_request(array, datatype, binary))
    (parsed,) = request.inputs
    assert parsed.name == "input" and parsed.datatype == datatype and parsed.shape == [2, 3, 4, 5]
    np.testing.assert_array_equal(parsed.array, array)
    assert request.id == "42" and request.binary_output is True  # no outputs named: binary by default


def test_requested_outputs_and_classification_are_read() -> None:
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=False, class_count=3)]
    request = parse_infer_request(*_client_request(np.zeros((1, 2), np.float32), "FP32", True, outputs))
    assert request.binary_output is False
    assert (request.outputs[0].name, request.outputs[0].binary, request.outputs[0].class_count) == ("logits", False, 3)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_reads_what_we_send(binary: bool) -> None:
    logits = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    strings = classification_strings(np.full((3, 4), 0.25), ["a", "b", "c", "d"], 2)
    body, headers = encode_infer_response("m", "1", "7", [(OutputTensor("logits", "FP32", logits), binary),
                                                          (OutputTensor("top", "BYTES", strings), binary)])
    header_length = headers.get(HEADER_LENGTH)
    assert (header_length is not None) == binary
    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=None if header_length is None else int(header_length))
    np.testing.assert_array_equal(result.as_numpy("logits"), logits)
    top = result.as_numpy("top")
    assert top.shape == (3, 2)
    first = top[0][0].decode() if isinstance(top[0][0], bytes) else str(top[0][0])
    assert first == "0.250000:0:a"
    assert result.get_response()["model_name"] == "m" and result.get_response()["id"] == "7"


def _json(body: dict) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(("body", "header", "needle"), [
    (b"{not json", None, "not valid JSON"),
    (_json({"inputs": []}), None, "at least one input"),
    (_json({}), None, "missing required field 'inputs'"),
    (_json({"inputs": [{"name": "input", "datatype": "FP99", "shape": [1], "data": [1]}]}), None,
     "unsupported datatype 'FP99'"),
    (_json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, -1], "data": [1]}]}), None,
     "non-negative integers"),
    (_json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}), None,
     "3 values, but shape [2, 2] needs 4"),
    (_json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2], "data": ["a", "b"]}]}), None,
     "not a rectangular array of FP32"),
    (_json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2]}]}), None, "neither 'data' nor"),
    (_json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2],
                        "parameters": {"binary_data_size": 4}}]}) + b"\0" * 4, "-", "must be an integer"),
    (_json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1]}]}), "99999", "but the body has"),
])
def test_malformed_requests_name_the_problem(body: bytes, header: str | None, needle: str) -> None:
    with pytest.raises(KServeError, match=None) as caught:
        parse_infer_request(body, header)
    assert needle in str(caught.value)


def test_binary_sizes_must_match_the_shape_and_the_body() -> None:
    header = _json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2],
                                "parameters": {"binary_data_size": 4}}]})
    with pytest.raises(KServeError, match="needs 8"):
        parse_infer_request(header + b"\0" * 4, str(len(header)))
    header = _json({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2],
                                "parameters": {"binary_data_size": 8}}]})
    with pytest.raises(KServeError, match="4 binary bytes for it, 8 declared"):
        parse_infer_request(header + b"\0" * 4, str(len(header)))
    with pytest.raises(KServeError, match="4 binary bytes that no input declares"):
        parse_infer_request(header + b"\0" * 12, str(len(header)))

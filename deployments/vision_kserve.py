"""The KServe v2 / Triton HTTP inference protocol, request and response bodies (pure: no Ray, no FastAPI).

Requests carry tensors as JSON (`data`, flat or nested, row-major) or, with Triton's binary tensor
extension, as raw little-endian bytes after a JSON header whose length is in the
`Inference-Header-Content-Length` header; each binary input says its size in
`parameters.binary_data_size`. Responses follow the request: binary outputs when it asks for them
(`binary_data_output`, or per output `binary_data`), JSON otherwise; the classification extension
(`parameters.classification: k`) returns "score:index:label" strings. Every malformed request raises
`KServeError` with a message naming the offending field.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
TRITON_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype(np.int8), "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
MAX_RANK = 8


class KServeError(ValueError):
    """A request the protocol layer rejects; the message is the 400 body's `error`."""


@dataclass(slots=True)
class InferInput:
    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: follow the request's binary_data_output
    class_count: int = 0


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_output: bool = False


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, required: bool = True) -> Any:
    if key not in obj:
        if required:
            raise KServeError(f"{where}: missing required field '{key}'")
        return None
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise KServeError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _shape(raw: list[Any], where: str) -> list[int]:
    if len(raw) > MAX_RANK or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise KServeError(f"{where}.shape: expected up to {MAX_RANK} non-negative integers, got {raw}")
    return list(raw)


def _parse_input(raw: object, index: int, binary: memoryview, offset: int) -> tuple[InferInput, int]:
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise KServeError(f"{where}: expected an object")
    name = _field(raw, "name", str, where)
    datatype = _field(raw, "datatype", str, where)
    if datatype not in TRITON_DTYPES:
        raise KServeError(f"{where} ('{name}'): unsupported datatype '{datatype}'; this server takes "
                          f"{', '.join(TRITON_DTYPES)}")
    shape = _shape(_field(raw, "shape", list, where), where)
    dtype = TRITON_DTYPES[datatype]
    count = prod(shape)
    parameters = _field(raw, "parameters", dict, where, required=False) or {}
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise KServeError(f"{where}.parameters.binary_data_size: expected a non-negative integer, got {size!r}")
        if size != count * dtype.itemsize:
            raise KServeError(f"{where} ('{name}'): binary_data_size is {size} bytes but shape {shape} of "
                              f"{datatype} needs {count * dtype.itemsize}")
        if offset + size > len(binary):
            raise KServeError(f"{where} ('{name}'): the body holds {len(binary) - offset} binary bytes for it, "
                              f"{size} declared")
        array = np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape)
        return InferInput(name, datatype, shape, array), offset + size
    if "data" not in raw:
        raise KServeError(f"{where} ('{name}'): neither 'data' nor parameters.binary_data_size given")
    try:
        array = np.asarray(raw["data"], dtype=dtype)
    except (ValueError, TypeError) as error:
        raise KServeError(f"{where} ('{name}').data: not a rectangular array of {datatype} values ({error})") from None
    if array.size != count:
        raise KServeError(f"{where} ('{name}').data: {array.size} values, but shape {shape} needs {count}")
    return InferInput(name, datatype, shape, array.reshape(shape)), offset


def _parse_output(raw: object, index: int) -> RequestedOutput:
    where = f"outputs[{index}]"
    if not isinstance(raw, dict):
        raise KServeError(f"{where}: expected an object")
    parameters = _field(raw, "parameters", dict, where, required=False) or {}
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise KServeError(f"{where}.parameters.binary_data: expected a boolean")
    classes = parameters.get("classification", 0)
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
        raise KServeError(f"{where}.parameters.classification: expected a non-negative integer")
    return RequestedOutput(_field(raw, "name", str, where), binary, classes)


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Called by the ingress's `/v2/models/{name}/infer` with the raw body and the header's value."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise KServeError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= length <= len(body):
            raise KServeError(f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes")
        json_part, binary = body[:length], memoryview(body)[length:]
    try:
        raw = json.loads(json_part)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KServeError(f"the inference request header is not valid JSON: {error}") from None
    except RecursionError:  # `[[[[...` thousands deep: the decoder's recursion limit, not a server fault
        raise KServeError("the inference request header is not valid JSON: it is nested too deeply") from None
    if not isinstance(raw, dict):
        raise KServeError("the inference request must be a JSON object")
    raw_inputs = _field(raw, "inputs", list, "request")
    if not raw_inputs:
        raise KServeError("request.inputs: at least one input is required")
    offset, inputs = 0, []
    for index, item in enumerate(raw_inputs):
        parsed, offset = _parse_input(item, index, binary, offset)
        inputs.append(parsed)
    if offset != len(binary):
        raise KServeError(f"the body has {len(binary) - offset} binary bytes that no input declares")
    outputs = [_parse_output(o, i) for i, o in enumerate(_field(raw, "outputs", list, "request", required=False) or [])]
    parameters = _field(raw, "parameters", dict, "request", required=False) or {}
    request_id = raw.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise KServeError("request.id: expected a string")
    return InferRequest(request_id, inputs, outputs, bool(parameters.get("binary_data_output", False)))


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray  # numeric, or an object array of bytes for BYTES


def _bytes_payload(array: np.ndarray) -> bytes:
    # Triton's BYTES wire format: each element as a 4-byte little-endian length, then its bytes.
    return b"".join(struct.pack("<I", len(item)) + item for item in array.reshape(-1))


def encode_infer_response(model: str, version: str, request_id: str | None, outputs: list[tuple[OutputTensor, bool]]
                          ) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers; each output goes out binary when its flag says so."""
    described, blobs = [], []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.array.shape)}
        if binary:
            blob = _bytes_payload(tensor.array) if tensor.datatype == "BYTES" else \
                np.ascontiguousarray(tensor.array, dtype=TRITON_DTYPES[tensor.datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif tensor.datatype == "BYTES":
            entry["data"] = [item.decode() for item in tensor.array.reshape(-1)]
        else:
            entry["data"] = tensor.array.reshape(-1).tolist()
        described.append(entry)
    header: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request_id is not None:
        header["id"] = request_id
    encoded = json.dumps(header).encode()
    if not blobs:
        return encoded, {"content-type": "application/json"}
    return encoded + b"".join(blobs), {"content-type": "application/octet-stream",
                                       HEADER_LENGTH: str(len(encoded))}


def classification_strings(probabilities: np.ndarray, labels: list[str], k: int) -> np.ndarray:
    """The classification extension's BYTES tensor [N, k]: "score:index:label", best first."""
    k = min(k, probabilities.shape[-1])
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    rows = [[f"{row[i]:.6f}:{int(i)}:{labels[int(i)]}".encode() for i in top] for row, top in zip(probabilities, order)]
    return np.array(rows, dtype=object).reshape(len(rows), k)

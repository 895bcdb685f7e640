"""Reading and writing safetensors files (the format of Hugging Face's safetensors:
an 8-byte little-endian header length, a JSON header of name -> dtype, shape and
byte offsets, then the raw little-endian data). Numpy only; never pickle."""
import json
import os
import struct

import numpy as np

from .errors import DatasetError, TrugradeIOError

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16, "U8": np.uint8,
           "I8": np.int8, "U16": np.uint16, "I16": np.int16, "I32": np.int32, "I64": np.int64, "BOOL": np.bool_}
_CODES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
          np.dtype(np.uint8): "U8", np.dtype(np.int8): "I8", np.dtype(np.uint16): "U16", np.dtype(np.int16): "I16",
          np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"}
MAX_HEADER = 100 * 1024 * 1024


def load(path):
    """Returns ({name: numpy array}, metadata dict). Raises DatasetError naming the file
    and the problem for a truncated or malformed file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TrugradeIOError(f"{path}: cannot read safetensors file: {e.strerror}") from e
    if len(data) < 8:
        raise DatasetError(f"{path}: not a safetensors file (only {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER or 8 + header_len > len(data):
        raise DatasetError(f"{path}: safetensors header length {header_len} does not fit the {len(data)}-byte file "
                           "(truncated or not safetensors)")
    try:
        header = json.loads(data[8:8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: safetensors header is not valid JSON: {e}") from e
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{path}: tensor '{name}' has a malformed header entry {info!r}") from e
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(body) or end - begin != count * dtype.itemsize:
            raise DatasetError(f"{path}: tensor '{name}' bytes [{begin}, {end}) do not match shape {shape} "
                               f"{info['dtype']} within a {len(body)}-byte body (truncated?)")
        array = np.frombuffer(body[begin:end], dtype=dtype.newbyteorder("<")).reshape(shape)
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.astype(dtype.newbyteorder("="), copy=False)
    return tensors, metadata


def save(path, tensors, metadata=None):
    """Writes {name: array} (float32, int64, ...) with string metadata, atomically
    (temporary file, fsync, rename)."""
    path = os.fspath(path)
    header, offset, chunks = {}, 0, []
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        if not array.flags.c_contiguous:  # NOTE: not np.ascontiguousarray, which makes 0-d arrays 1-d
            array = array.copy(order="C")
        code = _CODES.get(array.dtype)
        if code is None:
            raise TypeError(f"safetensors: tensor '{name}' has unsupported dtype {array.dtype}")
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""Safe loading of ONNX files, with external data confined to the model's folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from .errors import Onnx2SnnError, first_line

MAX_FILE_BYTES = 2 * 1024 ** 3      # protobuf cannot parse more than 2 GiB anyway


def load_onnx(path: str | os.PathLike, error: type[Onnx2SnnError] = Onnx2SnnError, *,
              max_bytes: int | None = MAX_FILE_BYTES,
              before_external_data: Callable[[onnx.ModelProto], None] | None = None) -> onnx.ModelProto:
    """Load ``path`` and its external data.

    Refuses a missing, empty, oversized (``max_bytes``; None: no limit) or unparsable file, text fields that
    are not UTF-8, and external data that is missing, truncated, larger than ``max_bytes`` in all, or whose
    location resolves outside the model's folder (an ONNX file must not read arbitrary files on disk).
    ``before_external_data(model)``, if given, runs on the parsed model before any external data is read
    (size checks on declared shapes).  Raises ``error`` with a one-line message naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise error(f"{path}: the file is empty")
    if max_bytes is not None and size > max_bytes:
        raise error(f"{path}: the file has {size:,} bytes, more than the limit of {max_bytes:,}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise error(f"{path}: not a valid ONNX file ({type(e).__name__}: {first_line(e)})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise error(f"{path}: not a valid ONNX model (no graph; the file may be truncated or not ONNX)")
    where = _non_text_field(model)
    if where is not None:
        raise error(f"{path}: not a valid ONNX file (field {where} is not UTF-8 text; the file may be corrupt)")
    if before_external_data is not None:
        before_external_data(model)
    _load_external_data(model, path, error, max_bytes)
    return model


def _non_text_field(message, prefix: str = "") -> str | None:
    """The path of the first string field that is not valid UTF-8 (the protobuf runtime then hands back
    ``bytes`` instead of ``str``), or None."""
    for field, value in message.ListFields():
        name = f"{prefix}.{field.name}" if prefix else field.name
        repeated = _repeated(field)
        if field.type == FieldDescriptor.TYPE_STRING:
            for k, item in enumerate(value if repeated else [value]):
                if not isinstance(item, str):
                    return f"'{name}[{k}]'" if repeated else f"'{name}'"
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for k, item in enumerate(value if repeated else [value]):
                found = _non_text_field(item, f"{name}[{k}]" if repeated else name)
                if found is not None:
                    return found
    return None


def _repeated(field) -> bool:
    if hasattr(field, "is_repeated"):       # protobuf >= 6.31 (``label`` is gone in 7)
        return field.is_repeated
    return field.label == FieldDescriptor.LABEL_REPEATED


def _load_external_data(model: onnx.ModelProto, path: Path, error: type[Onnx2SnnError],
                        max_bytes: int | None = None) -> None:
    folder = path.resolve().parent
    external = [t for t in external_data_helper._get_all_tensors(model)
                if external_data_helper.uses_external_data(t)]
    total = 0
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or folder not in target.parents:
            raise error(f"{path}: tensor '{tensor.name}' has external data at '{location}', outside the "
                        f"model's folder; refusing to read it")
        if not target.is_file():
            raise error(f"{path}: tensor '{tensor.name}' needs external data file '{location}', which is missing")
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") else None
        except ValueError:
            raise error(f"{path}: external data of tensor '{tensor.name}' has a non-integer offset or length "
                        f"({info.get('offset')!r}, {info.get('length')!r})") from None
        size = target.stat().st_size
        if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
            raise error(f"{path}: external data of tensor '{tensor.name}' in '{location}' is truncated")
        total += size - offset if length is None else length
        if max_bytes is not None and total > max_bytes:
            raise error(f"{path}: external data holds more than the limit of {max_bytes:,} bytes")
    if external:
        try:
            external_data_helper.load_external_data_for_model(model, str(folder))
        except (OSError, ValueError) as e:
            raise error(f"{path}: cannot read external data ({first_line(e)})") from None

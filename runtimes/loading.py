"""Safe loading of ONNX files, with external data confined to the model's folder."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from .errors import Onnx2SnnError


def load_onnx(path: str | os.PathLike, error: type[Onnx2SnnError] = Onnx2SnnError) -> onnx.ModelProto:
    """Load ``path`` and its external data.

    Refuses a missing, empty or unparsable file, and external data that is missing, truncated, or whose
    location resolves outside the model's folder (an ONNX file must not read arbitrary files on disk).
    Raises ``error`` with a one-line message naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise error(f"{path}: the file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise error(f"{path}: not a valid ONNX file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise error(f"{path}: not a valid ONNX model (no graph; the file may be truncated or not ONNX)")
    _load_external_data(model, path, error)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path, error: type[Onnx2SnnError]) -> None:
    folder = path.resolve().parent
    external = [t for t in external_data_helper._get_all_tensors(model)
                if external_data_helper.uses_external_data(t)]
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or folder not in target.parents:
            raise error(f"{path}: tensor '{tensor.name}' has external data at '{location}', outside the "
                        f"model's folder; refusing to read it")
        if not target.is_file():
            raise error(f"{path}: tensor '{tensor.name}' needs external data file '{location}', which is missing")
        offset, length = int(info.get("offset", 0) or 0), info.get("length")
        size = target.stat().st_size
        if offset < 0 or offset > size or (length is not None and offset + int(length) > size):
            raise error(f"{path}: external data of tensor '{tensor.name}' in '{location}' is truncated")
    if external:
        try:
            external_data_helper.load_external_data_for_model(model, str(folder))
        except (OSError, ValueError) as e:
            raise error(f"{path}: cannot read external data ({e})") from None

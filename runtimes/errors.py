"""Exceptions raised for bad user input.  Every message is one line naming the file, input or node."""

from __future__ import annotations

import re


class Onnx2SnnError(Exception):
    """Base of every error a user can cause; the CLI prints its message on one line and exits 1."""


class ArtifactError(Onnx2SnnError):
    """A spiking artifact cannot be loaded or executed."""


class InputError(Onnx2SnnError):
    """Run inputs (arrays, names, shapes, dtypes) do not match the model."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an (onnxruntime) error, without the C++ source location and signature
    onnxruntime puts before some messages."""
    line = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
    return re.sub(r"/onnxruntime_src/\S+:\d+ .*?\) (?=[A-Z])", "", line, count=1)

"""The converter's exceptions.  Each message is one line naming the file, input or node, and the way out."""

from __future__ import annotations

from runtimes.errors import ArtifactError, InputError, Onnx2SnnError, first_line  # noqa: F401


class ModelError(Onnx2SnnError):
    """The ONNX model cannot be read or converted."""


class DomainError(Onnx2SnnError):
    """The input domain or the calibration data is invalid."""


class CalibrationError(Onnx2SnnError):
    """Calibration cannot produce finite parameters."""


class ResourceError(Onnx2SnnError):
    """The work would not fit in this machine's memory (estimated before it starts: ``resources``)."""


class OutputPathError(Onnx2SnnError):
    """The output path is unusable (equal to the input, or in a missing folder)."""


__all__ = ["Onnx2SnnError", "ModelError", "DomainError", "CalibrationError", "OutputPathError", "ResourceError",
           "ArtifactError", "InputError"]

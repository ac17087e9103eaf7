"""Exceptions raised for bad user input.  Every message is one line naming the file, input or node."""

from __future__ import annotations


class Onnx2SnnError(Exception):
    """Base of every error a user can cause; the CLI prints its message on one line and exits 1."""


class ArtifactError(Onnx2SnnError):
    """A spiking artifact cannot be loaded or executed."""


class InputError(Onnx2SnnError):
    """Run inputs (arrays, names, shapes, dtypes) do not match the model."""

"""Atomic, non-destructive writes of artifacts and arrays."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, TYPE_CHECKING

from .errors import ModelError, OutputPathError, first_line

if TYPE_CHECKING:
    import onnx


def check_output_path(path: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Refuse an output equal to the input model, in a missing folder, or that is a folder."""
    path = Path(path)
    if source is not None and Path(source).resolve() == path.resolve():
        raise OutputPathError(f"{path}: the output would overwrite the input model; choose another -o path")
    if not path.parent.resolve().is_dir():
        raise OutputPathError(f"{path}: folder '{path.parent}' does not exist")
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give a file path")
    return path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in the target folder, then rename it onto ``path``.
    The file gets the mode of the file it replaces, else the one a plain ``open`` would give (0666 less
    the umask; ``mkstemp`` alone would leave 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_model(model: onnx.ModelProto, path: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Check the artifact with ``onnx.checker`` and write it atomically."""
    import onnx
    path = check_output_path(path, source)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"internal error: the artifact fails onnx.checker: {first_line(e)}") from None
    return atomic_write(path, lambda tmp: tmp.write_bytes(model.SerializeToString()))


def _umask() -> int:
    """The process umask (reading it means setting it: set, then restored at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

"""What every ``onnx2snn`` subcommand shares: the usage error, exit codes, progress on stderr, and
writing JSON, arrays and the readable report atomically."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..saving import atomic_write

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
REPORT_TIMESTEPS = {"rate": (8, 16, 32, 64, 128), "phase": (4, 5, 6, 7, 8, 10, 12)}   # --report's T sweep, by coding


class UsageError(Exception):
    pass


def progress_line(message: str) -> None:
    """One stage line on stderr, flushed (logs and terminals alike)."""
    print(f"[onnx2snn] {message}", file=sys.stderr, flush=True)


class Progress:
    """Renders the library's progress callback (``onnx2snn.progress``) on stderr: a stage line for
    ``progress(message)``; for ``progress(message, done, total, detail)`` a tqdm bar per stage on a
    terminal, nothing when stderr is not one (logs get the stage lines only)."""

    def __init__(self):
        self.terminal = sys.stderr.isatty()
        self.bar, self.label = None, None

    def __call__(self, message: str, done: int | None = None, total: int | None = None,
                 detail: str | None = None) -> None:
        if done is None:
            self.close()
            progress_line(message)
            return
        if not self.terminal:
            return
        if self.bar is None or self.label != message:
            from tqdm import tqdm
            self.close()
            self.bar = tqdm(total=total, desc=message, file=sys.stderr, leave=False,
                            dynamic_ncols=True)
            self.label = message
        self.bar.n = done
        if detail:
            self.bar.set_postfix_str(detail, refresh=False)
        self.bar.refresh()
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.label = None, None


def say_compiling(quiet: bool = False) -> None:
    """Once, before numba's first compile of the spiking kernels (``runtimes.kernels.needs_compile``)."""
    from runtimes import kernels
    if not quiet and kernels.needs_compile():
        progress_line("compiling spiking kernels (first run only, cached afterwards)")


def short(value: float) -> str:
    """``1.2e-2`` for 0.012 (two significant digits, no exponent padding)."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def write_json(path: str, data: dict) -> None:
    """A report as indented JSON, written atomically."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def save_npy(tmp: Path, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, array)


def save_npz(tmp: Path, arrays: dict) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)


def report_timesteps(own: int, coding: str) -> list[int]:
    """The T sweep of a report: the artifact's own T first, then ``REPORT_TIMESTEPS`` of its coding."""
    return [own] + [T for T in REPORT_TIMESTEPS[coding] if T != own]


def report_directory(option: str | None, artifact: Path) -> Path | None:
    """``--report`` given as DIR, or bare (then ARTIFACT without .onnx, plus .report, beside it)."""
    if option is None:
        return None
    directory = Path(option) if option else artifact.with_name(artifact.name.removesuffix(".onnx") + ".report")
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"onnx2snn: --report {directory}: exists and is not a directory")
    return directory


def write_document(directory: Path, evaluation, artifact: Path) -> None:
    from ..field import field
    from ..report_document import write_report
    shown = field(evaluation.imported, evaluation.network, evaluation.domain, evaluation.report["timesteps"]) \
        if evaluation.domain is not None else None
    if shown is None:
        raise UsageError("onnx2snn: --report needs the artifact's domain (metadata 'onnx2snn.domain') to plot "
                         "the error over it")
    written = write_report(directory, evaluation.report, shown, artifact.name)
    print(f"wrote {written[0]} with {len(written) - 2} figures and {written[1].name}")

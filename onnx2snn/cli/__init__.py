"""The ``onnx2snn`` command line: the only package that prints (one module per subcommand).

Exit codes: 0 success; 1 the input or the model cannot be processed (one line on stderr naming the
problem, no traceback unless ``--traceback``); 2 usage error; 130 interrupted (Ctrl-C).  A failed command
leaves no partial output file behind.
"""

from __future__ import annotations

import re
import sys

from runtimes.errors import Onnx2SnnError

from .artifact_commands import export_nir_command, standard_command, verify_command
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Progress, UsageError, report_timesteps
from .convert_command import convert_command
from .evaluate_command import evaluate_command
from .inspect_command import inspect_command
from .parser import build_parser
from .run_command import run_command
from .train_command import train_command

__all__ = ["main", "build_parser", "report_timesteps", "Progress", "UsageError", "COMMANDS"]

HANDLERS = {"convert": convert_command, "run": run_command, "evaluate": evaluate_command, "inspect": inspect_command,
            "verify": verify_command, "standard": standard_command, "train": train_command,
            "export-nir": export_nir_command}
COMMANDS = tuple(HANDLERS)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        argv = ["convert"] + argv
    traceback_wanted = "--traceback" in argv
    argv = _join_negative_values(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        handler = HANDLERS[args.command]
        return handler(args)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:          # output piped into a closed reader (e.g. `| head`)
        sys.stderr.close()
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("onnx2snn: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Onnx2SnnError as e:
        if traceback_wanted:
            raise
        print(f"onnx2snn: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        if traceback_wanted:
            raise
        print("onnx2snn: error: out of memory; a smaller -T, fewer --samples or fewer points may help "
              "(--traceback shows where)", file=sys.stderr)
        return EXIT_ERROR


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--domain -1:1`` as ``--domain=-1:1``: argparse reads a value that starts with '-' (and is not a
    plain negative number) as an option and fails with a bare 'expected one argument'."""
    joined, k = [], 0
    while k < len(argv):
        if argv[k] == "--domain" and k + 1 < len(argv) and re.match(r"-[\d.]", argv[k + 1]):
            joined.append(f"--domain={argv[k + 1]}")
            k += 2
        else:
            joined.append(argv[k])
            k += 1
    return joined

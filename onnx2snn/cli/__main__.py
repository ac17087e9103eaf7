"""``python -m onnx2snn.cli``: the same as the ``onnx2snn`` command."""

import sys

from . import main

sys.exit(main())

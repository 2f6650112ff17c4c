"""Speed of LIF-refrac layers: lifexport eager, compiled and in onnxruntime, against Norse 1.1.0
and the hardware floors (see lifexport/bench/ for the workloads, variants and floors).

    .venv/bin/python scripts/bench.py                      # T=100, B=32, N=512
    .venv/bin/python scripts/bench.py --n 4096 --t 1000    # bigger shapes
    .venv/bin/python scripts/bench.py --json > out.json    # rows and ratios as JSON

The same as `lifexport bench`.
"""

from __future__ import annotations

import sys

from lifexport.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))

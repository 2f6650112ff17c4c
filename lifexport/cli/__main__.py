"""``python -m lifexport.cli``: the ``lifexport`` command."""

from __future__ import annotations

import sys

from lifexport.cli import main

if __name__ == "__main__":
    sys.exit(main())

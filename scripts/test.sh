#!/usr/bin/env bash
# The test suite: set up .venv with the test extras and Norse 1.1.0, then run pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/functional -x`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test >&2
exec .venv/bin/python -m pytest "$@"

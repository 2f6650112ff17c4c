#!/usr/bin/env bash
# The test suite: set up .venv with the test extras and Norse 1.1.0, then run pytest.
# Without arguments, the whole main suite in two worker processes (pytest-xdist), each test
# file in one worker so that the compiled models a file shares are compiled once.
# Extra arguments go to pytest instead, e.g. `bash scripts/test.sh tests/functional -x`.
# The oldest-torch check is separate: `bash scripts/test-oldest.sh` (CI runs both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test >&2
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "${LIFEXPORT_TEST_WORKERS:-2}" --dist loadfile

#!/usr/bin/env bash
# The test suite: set up .venv with the test extras and Norse 1.1.0, then run pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/functional -x`.
# Without arguments (as CI runs it), the export and validation tests then run again on the
# oldest torch pyproject.toml allows, in .venv-oldest (`bash scripts/setup.sh oldest`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh test >&2
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
status=0
.venv/bin/python -m pytest || status=$?
bash scripts/setup.sh oldest >&2
oldest="$(.venv-oldest/bin/python -c 'import torch; print(torch.__version__)')"
echo "== export and validation tests on torch $oldest (.venv-oldest) ==" >&2
.venv-oldest/bin/python -m pytest tests/export tests/validation lifexport/export \
    lifexport/validation || status=$?
exit "$status"

#!/usr/bin/env bash
# The export and validation tests on the oldest torch pyproject.toml allows, in .venv-oldest
# (`bash scripts/setup.sh oldest`: torch with its CUDA libraries, several GB, built once).
# CI runs it after `bash scripts/test.sh`. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh oldest >&2
oldest="$(.venv-oldest/bin/python -c 'import torch; print(torch.__version__)')"
echo "== export and validation tests on torch $oldest (.venv-oldest) ==" >&2
if [ "$#" -gt 0 ]; then
    exec .venv-oldest/bin/python -m pytest "$@"
fi
exec .venv-oldest/bin/python -m pytest -n "${LIFEXPORT_TEST_WORKERS:-2}" --dist loadfile \
    tests/export tests/validation lifexport/export lifexport/validation

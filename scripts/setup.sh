#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv.
#   bash scripts/setup.sh          # the package and its ONNX tools
#   bash scripts/setup.sh demo     # also scikit-learn and matplotlib, for `lifexport demo`
#   bash scripts/setup.sh test     # also pytest, hypothesis and the Norse 1.1.0 oracle
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again (it skips work already done).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extra="${1:-onnx}"
python="${PYTHON:-python3}"
# The CPU build of torch; override for a CUDA machine, e.g. LIFEXPORT_TORCH="torch".
torch_spec="${LIFEXPORT_TORCH:-torch==2.13.0}"

stamp=".venv/.setup-$extra-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# torch first, so that no dependency resolves torch to a multi-GB CUDA build.
pip install "$torch_spec"
pip install -e ".[$extra]"
if [ "$extra" = test ]; then
    # Norse 1.1.0 is the numerical oracle of the conformance tests. Its declared torchvision
    # dependency is not needed to import norse.torch and would pull another torch build.
    pip install --no-deps "norse==1.1.0" nir nirtorch h5py
fi
touch "$stamp"

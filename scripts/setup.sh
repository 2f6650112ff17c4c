#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environments.
#   bash scripts/setup.sh          # .venv: the package and its ONNX tools
#   bash scripts/setup.sh demo     # also scikit-learn and matplotlib, for `lifexport demo`
#   bash scripts/setup.sh test     # also pytest, hypothesis and the Norse 1.1.0 oracle
#   bash scripts/setup.sh oldest   # .venv-oldest: the test extras on the oldest torch that
#                                  # pyproject.toml allows (its "torch>=X" bound), for the export
#                                  # and validation tests that scripts/test-oldest.sh runs there
# Called by scripts/run.sh, scripts/test.sh and scripts/test-oldest.sh; safe to run again (it
# skips work already done).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${1:-onnx}"
python="${PYTHON:-python3}"
venv=.venv
extra="$target"
# The CPU build of torch; override for a CUDA machine, e.g. LIFEXPORT_TORCH="torch".
torch_spec="${LIFEXPORT_TORCH:-torch==2.13.0}"
if [ "$target" = oldest ]; then
    venv=.venv-oldest
    extra=test
    oldest="$(sed -n 's/^ *"torch>=\([0-9.]*\)",*$/\1/p' pyproject.toml)"
    if [ -z "$oldest" ]; then
        echo "setup.sh: no \"torch>=X\" dependency in pyproject.toml" >&2
        exit 1
    fi
    # PyPI's Linux torch wheels are CUDA builds, and torch does not import without the
    # nvidia-* libraries they depend on (GPU or not): a few GB, downloaded once.
    torch_spec="torch==$oldest"
fi

stamp="$venv/.setup-$target-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then exit 0; fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
# torch first, so that no dependency resolves torch to a multi-GB CUDA build.
pip install "$torch_spec"
pip install -e ".[$extra]"
if [ "$target" = test ]; then
    # Norse 1.1.0 is the numerical oracle of the conformance tests. Its declared torchvision
    # dependency is not needed to import norse.torch and would pull another torch build.
    pip install --no-deps "norse==1.1.0" nir nirtorch h5py
fi
touch "$stamp"

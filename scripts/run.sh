#!/usr/bin/env bash
# The main job: set up .venv if needed, then run `lifexport demo` (or the lifexport
# subcommand given as arguments, e.g. `bash scripts/run.sh demo --steps 500`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh demo >&2
[ "$#" -gt 0 ] || set -- demo
exec .venv/bin/lifexport "$@"

#!/usr/bin/env bash
# The GPU check, on a CUDA machine, in under 10 minutes: the cuda-marked tests, then
# `lifexport bench --device cuda` at (T, B, N) = (100, 32, 512) with the SpikingJelly comparison
# (at its shape (32, 64, 65536): float32 and bfloat16, each memory mode, eager and compiled),
# and at (500, 256, 1024), the inference graphs with arithmetic and selecting masks on the CUDA
# EP (scripts/bench_lean_graphs.py), then the recurrent W3 alone (`--recurrent
# --no-feedforward`: LIFRefracRecurrent(512, 512) at (500, 64, 512), Norse, scan, triton and
# its GEMM floor).
# Every output goes to $OUT (default ./gpu-check-out).
#
# The GPU machine has torch (cu130) and Triton but no network and no pip, so this runs the
# machine's python3 (no venv) on onnxruntime-gpu, Norse and SpikingJelly brought along by
# ../shared/tools/ort-gpu-pack. Here, once:
#     bash ../shared/tools/ort-gpu-pack  # writes .device/part00..02, rest.tar.xz, unpack.py, site
# There, from the repository root, after its printed commands have put the parts in /tmp/parts:
#     python3 .device/unpack.py .device && bash scripts/gpu_check.sh
#     bash scripts/gpu_check.sh tests            # only some parts: tests, bench-small, bench-big,
#                                                # lean-graphs, bench-recurrent
#
# Environment (all optional):
#     ORT_DIR    onnxruntime-gpu, as unpack.py leaves it (default /tmp/ort)
#     SITE_DIR   Norse, NIR, nirtorch, SpikingJelly (default ./.device/site)
#     OUT        the output folder (default ./gpu-check-out)
#     PYTHON     the interpreter (default python3)
#     BUDGET     seconds for the whole check (default 570); each part also has its own limit:
#     TESTS_TIMEOUT (170), BENCH_SMALL_TIMEOUT (240), BENCH_BIG_TIMEOUT (160),
#     LEAN_GRAPHS_TIMEOUT (60), BENCH_RECURRENT_TIMEOUT (120); bench-small holds most compilation: a lifexport.compile
#     graph per dtype, memory mode and layer beside SpikingJelly. A part gets what is left of
#     the budget when that is less than its limit: the limits add up to more than BUDGET, so
#     bench-recurrent, last, is cut first (run it alone to give it its whole limit).
# Exit status: 0 when every part passed, 3 without CUDA, 2 for an unknown part, 1 when any part
# failed or timed out (its output so far is kept; the benchmark logs each row to its .log file as
# it is measured).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
ORT_DIR=${ORT_DIR:-/tmp/ort}
SITE_DIR=${SITE_DIR:-$root/.device/site}
OUT=${OUT:-$root/gpu-check-out}
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-570}
parts=${*:-tests bench-small bench-big lean-graphs bench-recurrent}
export PYTHONPATH="$ORT_DIR:$SITE_DIR:$root${PYTHONPATH:+:$PYTHONPATH}"
export SJ_LIF_CUDA_IMPLEMENTATION=${SJ_LIF_CUDA_IMPLEMENTATION:-triton}  # SpikingJelly's Triton LIF
status=0

say() { echo "gpu_check: $*" | tee -a "$summary" >&2; }

# limited LIMIT NAME STDOUT STDERR COMMAND...: runs COMMAND with its output in the two files,
# under a limit: the part's own, or what is left of the budget if that is less.
limited() {
    local limit=$1 name=$2 stdout=$3 stderr=$4
    shift 4
    local left=$((BUDGET - SECONDS))
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        say "$name: not run, the ${BUDGET}s budget is spent"
        status=1
        return
    fi
    local start=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" > "$stdout" 2> "$stderr" || rc=$?
    if ((rc == 124 || rc == 137)); then
        say "$name: TIMED OUT after ${limit}s (raise its timeout or BUDGET, or run the part alone)"
        status=1
    elif ((rc != 0)); then
        say "$name: FAILED (exit $rc) in $((SECONDS - start))s"
        status=1
    else
        say "$name: ok in $((SECONDS - start))s"
    fi
}

for part in $parts; do
    case $part in
    tests | bench-small | bench-big | lean-graphs | bench-recurrent) ;;
    *)
        echo "gpu_check: unknown part '$part'; expected tests, bench-small, bench-big," \
            "lean-graphs or bench-recurrent" >&2
        exit 2
        ;;
    esac
done
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
say "repository $root, output $OUT, parts: $parts"
[ -d "$ORT_DIR/onnxruntime" ] || say "no onnxruntime in $ORT_DIR (ORT_DIR): run unpack.py first"
[ -d "$SITE_DIR" ] || say "no $SITE_DIR (SITE_DIR): Norse and SpikingJelly rows will be absent"

# CUDA for torch (required) and onnxruntime's CUDA EP (reported; the torch rows run without it).
"$PYTHON" - > "$OUT/preflight.txt" 2>&1 <<'PY'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "CUDA", torch.version.cuda)
if not torch.cuda.is_available():
    print("CUDA is not available to torch (torch.cuda.is_available() is False): this check "
          "needs a CUDA GPU")
    sys.exit(3)
print("GPU", torch.cuda.get_device_name())
for name in ("triton", "onnx", "onnxscript", "onnxruntime", "norse", "spikingjelly", "pytest",
             "hypothesis", "numpy"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as error:
        print(name, "MISSING:", type(error).__name__, error)
try:
    import onnxruntime as ort
    ort.preload_dlls()  # the CUDA 13 libraries torch ships, before a CUDA session
    providers = ort.get_available_providers()
    print("onnxruntime providers", providers, "from", ort.__file__)
    if "CUDAExecutionProvider" not in providers:
        print("CUDA EP NOT AVAILABLE: onnxruntime-gpu's CUDA provider is missing")
        sys.exit(4)
except ImportError as error:
    print("CUDA EP NOT AVAILABLE: onnxruntime does not import:", error)
    sys.exit(4)
PY
rc=$?
cat "$OUT/preflight.txt" >&2
if ((rc != 0 && rc != 4)); then
    say "stopping: torch cannot use CUDA here (see $OUT/preflight.txt)"
    exit 3
fi
if ((rc == 4)); then
    say "onnxruntime's CUDA EP is not available: its tests fail and its bench rows are absent"
    status=1
fi

for part in $parts; do
    case $part in
    tests)
        if ! "$PYTHON" -m pytest --version > /dev/null 2>&1; then
            say "tests: not run: pytest is not installed for $PYTHON here (no pip on this machine)"
            status=1
            continue
        fi
        # Files whose imports are missing here are reported and skipped, not fatal.
        limited "${TESTS_TIMEOUT:-170}" tests "$OUT/pytest-cuda.txt" "$OUT/pytest-cuda.err" \
            "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors \
            --junitxml="$OUT/pytest-cuda.xml" tests lifexport
        tail -n 30 "$OUT/pytest-cuda.txt" "$OUT/pytest-cuda.err" >&2
        ;;
    bench-small)
        limited "${BENCH_SMALL_TIMEOUT:-240}" bench-small "$OUT/bench-100x32x512.md" \
            "$OUT/bench-100x32x512.log" "$PYTHON" -m lifexport bench --device cuda \
            --t 100 --b 32 --n 512 --spikingjelly
        ;;
    bench-big)
        limited "${BENCH_BIG_TIMEOUT:-160}" bench-big "$OUT/bench-500x256x1024.md" \
            "$OUT/bench-500x256x1024.log" "$PYTHON" -m lifexport bench --device cuda \
            --t 500 --b 256 --n 1024 --repeats 5 --warmup 2
        ;;
    bench-recurrent)
        limited "${BENCH_RECURRENT_TIMEOUT:-120}" bench-recurrent \
            "$OUT/bench-recurrent-500x64x512.md" "$OUT/bench-recurrent-500x64x512.log" \
            "$PYTHON" -m lifexport bench --device cuda \
            --t 500 --b 64 --n 512 --recurrent --no-feedforward --repeats 5 --warmup 2
        ;;
    lean-graphs)
        limited "${LEAN_GRAPHS_TIMEOUT:-60}" lean-graphs "$OUT/lean-graphs-cuda-ep.md" \
            "$OUT/lean-graphs-cuda-ep.log" "$PYTHON" scripts/bench_lean_graphs.py \
            --provider CUDAExecutionProvider
        ;;
    esac
done
say "done in ${SECONDS}s, status $status; outputs in $OUT"
exit "$status"

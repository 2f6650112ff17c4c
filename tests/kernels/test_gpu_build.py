"""The kernels as the GPU runs them, built on any machine: Triton compiles them for sm_90
(PTX and cubin, with the ptxas its wheel ships) in a process without ``TRITON_INTERPRET``,
for every model and surrogate; where no libdevice function is inlined, the PTX has no fused
multiply-add (``enable_fp_fusion=False`` holds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lifexport.kernels import _triton as k

assert not k.INTERPRETED
ptrs = lambda names: {n: "*fp32" for n in names}
params = {f"p{j}": "*fp32" for j in range(6)} | {f"s{j}": "i32" for j in range(6)}
def build(kernel, signature, constexprs):
    signature = signature | {name: "constexpr" for name in constexprs}
    source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    options = {"num_warps": k.NUM_WARPS, "enable_fp_fusion": False}
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm
fma = {}
for model, ns in ((0, 2), (1, 2), (2, 3)):
    fwd = ptrs(["x_ptr", "state_ptr", "y_ptr", "final_ptr", "checkpoint_ptr"]) | params
    asm = build(k.forward_kernel, fwd | {"T": "i32", "M": "i32"},
                {"MODEL": model, "NS": ns, "CHUNK": k.CHUNK, "BLOCK": k.BLOCK})
    fma[f"forward {model}"] = "fma." in asm["ptx"]
    bwd = ptrs(["x_ptr", "gy_ptr", "gfinal_ptr", "checkpoint_ptr", "scratch_ptr", "gx_ptr",
                "ginit_ptr", "gparams_ptr", "alpha_ptr"]) | params | {"T": "i32", "M": "i32"}
    for method, code in k.METHOD_CODES.items():
        if model == 0 and code:
            continue
        asm = build(k.backward_kernel, bwd, {"MODEL": model, "METHOD": code, "INTERPRET": False,
                    "NS": ns, "CHUNK": k.CHUNK, "BLOCK": k.BLOCK})
        assert asm["cubin"]
        fma[f"backward {model} {method}"] = "fma." in asm["ptx"]
print(json.dumps(fma))
"""


def test_kernels_build_for_sm90_without_fma():
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fma = json.loads(done.stdout.strip().splitlines()[-1])
    # libdevice's tanh, exp and pow use fma inside (as torch's CUDA kernels, which call them);
    # everything else is the step's own arithmetic, unfused.
    libdevice = {"tanh", "circ", "heavi_erfc"}
    for name, has_fma in fma.items():
        assert has_fma == (name.split()[-1] in libdevice), name

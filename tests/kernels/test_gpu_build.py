"""The kernels as the GPU runs them, built on any machine: Triton compiles them for sm_90
(PTX and cubin, with the ptxas its wheel ships) in a process without ``TRITON_INTERPRET``.

Each build takes the signature a launch would: the arguments are specialised as
``JITFunction.run`` does (triton 3.9): pointers by dtype (``*fp16``, ``*bf16`` inputs too)
and 16-byte alignment, integers by divisibility by 16, and an integer equal to 1 becomes the
constant 1 (a layer's scalar parameters: sizes ``s0 .. s5``; one neuron: ``M``). Built: every
model and surrogate, with a checkpoint every step (``store``) and every 32 (``recompute``),
half-precision inputs, every autotuner config, and the specialisations of scalar parameters
and of ``M`` in {1, a multiple of 16} (``M == 1`` did not build before ``tl.cast``). Where no
libdevice function is inlined, the PTX has no fused multiply-add (``enable_fp_fusion=False``
holds); a float16 gradient is converted with round-to-nearest-even. The recurrent kernels
build for both models and memory modes, float32 (IEEE products, no TF32) and half-precision
(tensor-core products) inputs, with their barrier between steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BUILDER = r"""
import json, re, torch, triton
from triton._C.libtriton import native_specialize_impl
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import CUDABackend
from triton.compiler import ASTSource
from lifexport.kernels._ops import CHUNK

def compile_for_sm90(kernel, args, constants, warps, options):
    # As JITFunction.run specialises a launch's arguments; returns the PTX.
    signature, attrs, constants = {}, {}, dict(constants)
    for j, (name, param) in enumerate(zip(kernel.arg_names, kernel.params)):
        if name in constants:
            signature[name] = "constexpr"
            continue
        kind, attr = native_specialize_impl(
            CUDABackend, args[name], False, not param.do_not_specialize,
            not param.do_not_specialize_on_alignment,
        )
        signature[name] = kind
        if kind == "constexpr":
            constants[name] = attr
        elif attr:
            attrs[(j,)] = CUDABackend.parse_attr(attr)
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                              options=options | {"num_warps": warps})
    assert compiled.asm["cubin"]
    return compiled.asm["ptx"]
"""

SCRIPT = (
    BUILDER
    + r"""
from lifexport.kernels import _triton as k

assert not k.INTERPRETED
options = k._launch_options()
assert options == {"enable_fp_fusion": False}, options
# The launches go through the autotuner, over CONFIGS, keyed on M (and the dtypes).
for tuned, fn in ((k._forward, k.forward_kernel), (k._backward, k.backward_kernel)):
    assert isinstance(tuned, triton.runtime.Autotuner) and tuned.fn is fn
    assert [(c.kwargs["BLOCK"], c.num_warps) for c in tuned.configs] == list(k.CONFIGS)
    assert "M" in tuned.keys
    # Only blocks that fit M are timed; the smallest always (one neuron: nothing to time).
    assert tuned.early_config_prune is k._fitting
    assert [c.kwargs["BLOCK"] for c in k._fitting(tuned.configs, {"M": 1})] == [128]
    assert len(k._fitting(tuned.configs, {"M": 8192})) == len(k.CONFIGS)

def build(kernel, args, constexprs, block, warps):
    return compile_for_sm90(kernel, args, dict(constexprs, BLOCK=block), warps, options)

def arguments(x_dtype, m, per_neuron, t=50):
    state = torch.zeros(4)
    x = torch.zeros(4, dtype=x_dtype)
    p = torch.zeros(4 if per_neuron else 1)
    return dict(
        x_ptr=x, y_ptr=x, gy_ptr=x, gx_ptr=x, state_ptr=state, final_ptr=state,
        checkpoint_ptr=state, gfinal_ptr=state, scratch_ptr=state, ginit_ptr=state,
        gparams_ptr=state, alpha_ptr=torch.zeros(()), T=t, M=m,
        **{f"p{j}": p for j in range(6)}, **{f"s{j}": m if per_neuron else 1 for j in range(6)},
    )

results = {}
def record(name, ptx):
    cvt = sorted(set(re.findall(r"cvt\.rn\.f16\.f32", ptx)))
    results[name] = {"fma": "fma." in ptx, "cvt": cvt}

block, warps = k.INTERPRETER_CONFIG
methods = {0: {"heaviside": 0}, 1: k.METHOD_CODES, 2: k.METHOD_CODES}
# Every model and surrogate, per-neuron parameters, 300 neurons; both memory modes for one.
for model, ns in ((0, 2), (1, 2), (2, 3)):
    args = arguments(torch.float32, 300, True)
    for chunk in (1, CHUNK):
        record(f"forward {model} {chunk} fp32 heaviside",
               build(k.forward_kernel, args, dict(MODEL=model, NS=ns, CHUNK=chunk), block, warps))
    for method, code in methods[model].items():
        for chunk in (1, CHUNK) if method in ("heaviside", "tanh") else (CHUNK,):
            constexprs = dict(MODEL=model, METHOD=code, INTERPRET=False, NS=ns, CHUNK=chunk)
            record(f"backward {model} {chunk} fp32 {method}",
                   build(k.backward_kernel, args, constexprs, block, warps))
# The forward at the first checkpoint interval of chunks, and the backward at each of them.
def pair(label, args, model, ns, method, chunks, blk=block, wrp=warps):
    record(f"forward {model} {chunks[0]} {label} heaviside",
           build(k.forward_kernel, args, dict(MODEL=model, NS=ns, CHUNK=chunks[0]), blk, wrp))
    for chunk in chunks:
        constexprs = dict(MODEL=model, METHOD=k.METHOD_CODES[method], INTERPRET=False, NS=ns,
                          CHUNK=chunk)
        record(f"backward {model} {chunk} {label} {method}",
               build(k.backward_kernel, args, constexprs, blk, wrp))
# Half-precision x (and y, grad_y, grad_x) over a float32 state.
for x_dtype, name in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
    for model, ns, method in ((0, 2, "heaviside"), (1, 2, "super"), (2, 3, "triangle")):
        pair(name, arguments(x_dtype, 300, True), model, ns, method, (1, CHUNK))
# Every config the autotuner times, on the largest kernels.
for block_, warps_ in k.CONFIGS:
    args = arguments(torch.bfloat16, 8192, True)
    pair(f"config{block_}x{warps_}", args, 2, 3, "circ", (CHUNK,), block_, warps_)
# Scalar parameters (s0 .. s5 == 1: constants), M a multiple of 16, and M == 1 (a constant).
for m in (16 * 512, 1):
    for model, ns, method in ((0, 2, "heaviside"), (2, 3, "super")):
        pair(f"scalar-M{m}", arguments(torch.float32, m, False), model, ns, method, (1, CHUNK))
print(json.dumps(results))
"""
)


def test_kernels_build_for_sm90_without_fma():
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 24 + 18 + 14 + 12  # the four groups of builds, in order
    # libdevice's tanh, exp and pow use fma inside (as torch's CUDA kernels, which call them);
    # everything else is the step's own arithmetic, unfused.
    libdevice = {"tanh", "circ", "heavi_erfc"}
    for name, found in results.items():
        assert found["fma"] == (name.split()[-1] in libdevice), name
        # A float16 gradient leaves rounded to nearest even (the float16 outputs of the
        # forward are spikes, exact either way); bfloat16's rounding is integer arithmetic.
        if name.startswith("backward") and " fp16 " in name:
            assert found["cvt"] == ["cvt.rn.f16.f32"], name


RECURRENT = (
    BUILDER
    + r"""
from lifexport.kernels import _triton_recurrent as k

assert not k.INTERPRETED
config = dict(k.CONFIG)
warps = config.pop("num_warps")
options = k._options()
assert options == {"enable_fp_fusion": False, **k.CONFIG}, options
options.pop("num_warps")
for name in config:
    options.pop(name)

def arguments(a_dtype, b, h, per_neuron):
    state = torch.zeros(4)
    a = torch.zeros(4, dtype=a_dtype)
    p = torch.zeros(4 if per_neuron else 1)
    return dict(
        a_ptr=a, w_ptr=a, zs_ptr=a, gzs_ptr=a, ga_ptr=a, state_ptr=state, final_ptr=state,
        checkpoint_ptr=state, gfinal_ptr=state, scratch_ptr=state, gstate_ptr=state,
        gparams_ptr=state, alpha_ptr=torch.zeros(()), T=500, B=b, H=h,
        **{f"p{j}": p for j in range(6)}, **{f"s{j}": h if per_neuron else 1 for j in range(6)},
    )

results = {}
builds = (
    (torch.float32, 64, 512, True, "super"), (torch.bfloat16, 64, 512, True, "tanh"),
    (torch.float16, 5, 40, False, "heavi_erfc"),
)
for a_dtype, b, h, per_neuron, method in builds:
    args = arguments(a_dtype, b, h, per_neuron)
    round_ = a_dtype != torch.float32
    for model, ns in ((1, 2), (2, 3)):
        for chunk in (1, CHUNK):
            label = f"{model} {chunk} {str(a_dtype)[6:]} B{b} {method}"
            constexprs = dict(config, MODEL=model, NS=ns, CHUNK=chunk, ROUND=round_)
            results[f"forward {label}"] = compile_for_sm90(
                k.recurrent_forward_kernel, args, constexprs, warps, options)
            constexprs.update(METHOD=k.METHOD_CODES[method], INTERPRET=False)
            results[f"backward {label}"] = compile_for_sm90(
                k.recurrent_backward_kernel, args, constexprs, warps, options)
print(json.dumps({name: {"tf32": "tf32" in ptx, "mma": "mma" in ptx, "bar": "bar.sync" in ptx}
                  for name, ptx in results.items()}))
"""
)


def test_recurrent_kernels_build_for_sm90():
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", RECURRENT], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 3 * 2 * 2 * 2
    for name, found in results.items():
        assert not found["tf32"], name  # float32 products are IEEE float32, not TF32
        assert found["bar"], name  # the barrier between steps
        # Half-precision products run on the tensor cores.
        assert found["mma"] == (" float32 " not in name), name

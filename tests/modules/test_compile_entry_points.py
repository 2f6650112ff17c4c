"""``torch.compile`` the ways users call it: plain ``torch.compile(model)``, tensor-valued
parameters, several alphas in one process, T=1, CUDA graphs, and bad input under compile.

Each compiled result is compared with the eager module (spikes bit-equal, states and
gradients close). Shapes are small: each compile costs seconds on 2 cores.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils._pytree import tree_leaves

import lifexport
from lifexport.functional import (
    LIFFeedForwardState,
    LIFParameters,
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    LIParameters,
    lif_refrac_feed_forward_step,
)

B, F, N, T = 3, 5, 6, 12
P = LIFRefracParameters(LIFParameters(alpha=2.0), rho_reset=3.0)

# One of each sequence layer, and a stack of them.
SEQUENCE_MODELS = {
    "LIF": lambda: lifexport.LIF(LIFParameters(alpha=2.0)),
    "LIFRefrac": lambda: lifexport.LIFRefrac(P, trainable=("v_th",)),
    "LI": lambda: lifexport.LI(LIParameters(), trainable=("tau_mem_inv",)),
    "LIFRecurrent": lambda: lifexport.LIFRecurrent(F, N, LIFParameters(alpha=2.0)),
    "LIFRefracRecurrent": lambda: lifexport.LIFRefracRecurrent(F, N, P),
    "SequentialState": lambda: lifexport.SequentialState(
        torch.nn.Linear(F, N), lifexport.LIFRefrac(P), torch.nn.Linear(N, 2), lifexport.LI()
    ),
}
RECURRENT = ("LIFRecurrent", "LIFRefracRecurrent", "SequentialState")


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return SEQUENCE_MODELS[name]()


def drive(name: str, steps: int = T, seed: int = 1) -> torch.Tensor:
    features = F if name in RECURRENT else N
    gen = torch.Generator().manual_seed(seed)
    return (4.0 * torch.rand(steps, B, features, generator=gen)).requires_grad_()


def tensors(state) -> list[torch.Tensor]:
    """The tensors of a state pytree (a stack's stateless layers hold ``None``)."""
    return [t for t in tree_leaves(state) if t is not None]


def assert_same_forward_and_backward(model, compiled, x, state=None) -> None:
    """Compiled spikes bit-equal to eager, states and the gradients of a loss over outputs
    and final state (w.r.t. input and parameters) close."""
    leaves = [x, *(p for p in model.parameters() if p.requires_grad)]
    out, final = model(x, state)
    c_out, c_final = compiled(x, state)
    assert torch.equal(c_out, out)
    for a, b in zip(tensors(c_final), tensors(final)):
        torch.testing.assert_close(a, b)
    loss = out.sum() + sum(t.sum() for t in tensors(final))
    c_loss = c_out.sum() + sum(t.sum() for t in tensors(c_final))
    grads = torch.autograd.grad(loss, leaves)
    c_grads = torch.autograd.grad(c_loss, leaves)
    assert grads[0].abs().sum() > 0, "no gradient reached the input: the test proves little"
    for a, b in zip(c_grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -- 1. plain torch.compile ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(SEQUENCE_MODELS))
def test_plain_torch_compile_equals_eager(name: str) -> None:
    model = build(name)
    compiled = torch.compile(model)  # no fullgraph, no dynamic marks: as users call it
    assert_same_forward_and_backward(model, compiled, drive(name))
    # a second length (torch then recompiles with a dynamic T) and a given state
    x = drive(name, steps=T + 5, seed=2)
    with torch.no_grad():
        _, state = model(drive(name, seed=3))
    assert_same_forward_and_backward(model, compiled, x, state)


def test_plain_compile_needs_scalar_outputs_captured() -> None:
    # torch 2.13: scan's lowering reads its loop counter with .item(); without captured scalar
    # outputs a plain torch.compile of a sequence layer fails. lifexport turns the capture on
    # (modules/_time.py); this test fails once torch no longer needs it.
    model = build("LIFRefrac")
    with torch._dynamo.config.patch(capture_scalar_outputs=False):
        torch._dynamo.reset()
        with pytest.raises(Exception, match="DataDependentOutputException|data-dependent"):
            torch.compile(model)(drive("LIFRefrac"))
    torch._dynamo.reset()


# -- 2. tensor-valued parameters ------------------------------------------------------------


def tensor_parameters(alpha: float = 3.0) -> LIFRefracParameters:
    """Every parameter a tensor, as Norse's defaults are; v_th and rho_reset per neuron."""
    return LIFRefracParameters(
        LIFParameters(
            tau_syn_inv=torch.as_tensor(200.0),
            tau_mem_inv=torch.as_tensor(100.0),
            v_leak=torch.as_tensor(0.0),
            v_th=torch.linspace(0.8, 1.2, N),
            v_reset=torch.as_tensor(0.0),
            method="super",
            alpha=torch.as_tensor(alpha),
        ),
        rho_reset=torch.tensor([2.0, 3.0, 4.0, 5.0, 2.0, 3.0]),
    )


def test_functional_step_with_tensor_parameters_has_no_graph_break() -> None:
    def trajectory(xs, p):
        zero = torch.zeros_like(xs[0])
        state = LIFRefracFeedForwardState(LIFFeedForwardState(zero, zero), zero)
        zs = []
        for x in xs:
            z, state = lif_refrac_feed_forward_step(x, state, p)
            zs.append(z)
        return torch.stack(zs), state

    xs = 30.0 * torch.rand(8, B, N, generator=torch.Generator().manual_seed(4))
    p = tensor_parameters()
    explanation = torch._dynamo.explain(trajectory)(xs, p)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    xs.requires_grad_()
    z, state = torch.compile(trajectory, fullgraph=True)(xs, p)
    z_ref, state_ref = trajectory(xs, p)
    assert torch.equal(z, z_ref) and z.sum() > 0
    (g,) = torch.autograd.grad((z * torch.arange(8.0)[:, None, None]).sum(), xs)
    (g_ref,) = torch.autograd.grad((z_ref * torch.arange(8.0)[:, None, None]).sum(), xs)
    torch.testing.assert_close(g, g_ref)


def test_module_with_tensor_parameters_compiles_fullgraph() -> None:
    model = lifexport.LIFRefrac(tensor_parameters(), trainable=("v_th", "rho_reset"))
    x = drive("LIFRefrac")
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert_same_forward_and_backward(model, lifexport.compile(model), x)


# -- 3. several alphas ----------------------------------------------------------------------


def test_a_new_alpha_does_not_recompile() -> None:
    """A sweep over alpha: the first model compiles, the others reuse its code, and each
    computes with its own alpha (the surrogate gradient depends on it)."""
    torch._dynamo.reset()
    x = drive("LIFRefrac")
    grads = []
    for k, alpha in enumerate((10.0, 100.0, 0.5)):
        model = lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(alpha=alpha)))
        compiled = lifexport.compile(model)
        with torch._dynamo.config.patch(error_on_recompile=k > 0):
            out, _ = compiled(x)
            (grad,) = torch.autograd.grad(out.sum(), x)
        (eager_grad,) = torch.autograd.grad(model(x)[0].sum(), x)
        torch.testing.assert_close(grad, eager_grad)
        grads.append(grad)
    assert not torch.equal(grads[0], grads[1])  # alpha reached the compiled surrogate


def test_layers_with_different_alphas_in_one_model() -> None:
    torch.manual_seed(0)
    model = lifexport.SequentialState(
        torch.nn.Linear(F, N),
        lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(alpha=10.0))),
        torch.nn.Linear(N, N),
        lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(alpha=100.0, method="tanh"))),
    )
    assert_same_forward_and_backward(model, lifexport.compile(model), drive("SequentialState"))


# -- 5. one graph for every T, T=1 included ---------------------------------------------------


@pytest.mark.parametrize("lengths", [(1, 5, 1, 9), (5, 1, 9)], ids=["T=1 first", "T=1 later"])
def test_one_graph_serves_every_length_including_one(lengths: tuple[int, ...]) -> None:
    torch._dynamo.reset()
    model = build("LIFRefracRecurrent")
    compiled = lifexport.compile(model)
    for k, steps in enumerate(lengths):
        x = drive("LIFRefracRecurrent", steps=steps, seed=k)
        with torch._dynamo.config.patch(error_on_recompile=k > 0):
            out, _ = compiled(x)
            (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.equal(out, model(x)[0])
        torch.testing.assert_close(grad, torch.autograd.grad(model(x)[0].sum(), x)[0])


# -- 6. bad input gets the eager error, compiled or not ------------------------------------


def bad_calls(name: str):
    x = drive(name).detach()
    _, state = build(name)(x)
    other_batch = drive(name)[:, :2].detach()
    return {
        "T=0": ((x[:0],), ValueError),
        "integer input": ((x.to(torch.int64),), TypeError),
        "state of another batch size": ((other_batch, state), ValueError),
    }


@pytest.mark.parametrize("case", ["T=0", "integer input", "state of another batch size"])
@pytest.mark.parametrize("name", ["LIFRefrac", "SequentialState"])
def test_bad_input_gets_the_eager_error_under_compile(name: str, case: str) -> None:
    model = build(name)
    compiled = lifexport.compile(model)
    compiled(drive(name))  # compiled once, as a user's later bad call finds it
    args, error = bad_calls(name)[case]
    with pytest.raises(error) as eager:
        model(*args)
    with pytest.raises(error, match=re.escape(str(eager.value))):
        compiled(*args)
    # the compiled model still serves good input without recompiling
    with torch._dynamo.config.patch(error_on_recompile=True):
        out, _ = compiled(drive(name, seed=7))
    assert torch.equal(out, model(drive(name, seed=7))[0])


# -- 4. CUDA graphs (reduce-overhead) ---------------------------------------------------------

CUDA_GRAPHS_WARNING = "CUDA graphs cannot capture the time loop"
# torch 2.11 on an H200: inductor suggests TF32 for the Linear layers; the comparison with
# eager wants float32 matmuls, the default, so the hint is expected.
TF32_HINT = "ignore:TensorFloat32 tensor cores:UserWarning"


def test_reduce_overhead_skips_cuda_graphs_for_the_time_loop_and_says_so() -> None:
    # Runs anywhere: the mode's other options reach torch.compile, the loop's graphs are
    # kept out of CUDA graphs, and the result is eager's.
    model = build("LIFRefrac")
    with pytest.warns(UserWarning, match=CUDA_GRAPHS_WARNING):
        compiled = lifexport.compile(model, mode="reduce-overhead")
    assert_same_forward_and_backward(model, compiled, drive("LIFRefrac"))


def test_reduce_overhead_on_a_cell_keeps_cuda_graphs(recwarn) -> None:
    model = lifexport.LIFRefracCell(P)
    compiled = lifexport.compile(model, mode="reduce-overhead")
    assert not [w for w in recwarn if CUDA_GRAPHS_WARNING in str(w.message)]
    x = 20.0 * torch.rand(B, N)
    assert torch.equal(compiled(x)[0], model(x)[0])


def test_reduce_overhead_keeps_cuda_graphs_where_every_loop_is_a_kernel(recwarn) -> None:
    # backend="triton" runs the loop on the device, so nothing stops CUDA graphs; a stack with
    # one scan-backed layer still has a host loop.
    fused = lifexport.SequentialState(
        torch.nn.Linear(F, N), lifexport.LIFRefrac(P, backend="triton")
    )
    lifexport.compile(fused, mode="reduce-overhead")
    assert not [w for w in recwarn if CUDA_GRAPHS_WARNING in str(w.message)]
    mixed = lifexport.SequentialState(
        lifexport.LIFRefrac(P, backend="triton"), lifexport.LI(backend="scan")
    )
    with pytest.warns(UserWarning, match=CUDA_GRAPHS_WARNING):
        lifexport.compile(mixed, mode="reduce-overhead")


#: On CUDA with Triton, backend="auto" makes all their loops fused kernels: no warning there.
FUSED_ON_CUDA = ("LIF", "LIFRefrac", "LI", "SequentialState")


@pytest.mark.cuda
@pytest.mark.filterwarnings(TF32_HINT)
@pytest.mark.parametrize("name", list(SEQUENCE_MODELS))
def test_reduce_overhead_on_cuda_equals_eager(name: str, recwarn) -> None:
    model = build(name).cuda()
    compiled = lifexport.compile(model, mode="reduce-overhead")
    warned = [w for w in recwarn if CUDA_GRAPHS_WARNING in str(w.message)]
    assert bool(warned) == (name not in FUSED_ON_CUDA)
    for steps in (T, T, T, T + 3, T + 3):  # warm-up, recording, replays, another length
        x = drive(name, steps=steps).detach().cuda().requires_grad_()
        out, final = compiled(x)
        ref, ref_final = model(x)
        assert torch.equal(out, ref)
        for a, b in zip(tensors(final), tensors(ref_final)):
            torch.testing.assert_close(a, b)
        (grad,) = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(grad, torch.autograd.grad(ref.sum(), x)[0])


@pytest.mark.cuda
@pytest.mark.filterwarnings(TF32_HINT)
@pytest.mark.parametrize("name", ["LIFRefrac", "SequentialState"])
def test_plain_torch_compile_on_cuda_equals_eager(name: str) -> None:
    model = build(name).cuda()
    x = drive(name).detach().cuda().requires_grad_()
    assert_same_forward_and_backward(model, torch.compile(model), x)


def test_compiled_state_dict_holds_each_tensor_once():
    # The compiled wrapper's state_dict is the model's, under "module.", once: it loads into
    # another compiled copy of the same model.
    model = SEQUENCE_MODELS["SequentialState"]()
    compiled = lifexport.compile(model)
    assert list(compiled.state_dict()) == [f"module.{k}" for k in model.state_dict()]
    other = lifexport.compile(SEQUENCE_MODELS["SequentialState"]())
    other.load_state_dict(compiled.state_dict())
    for a, b in zip(other.module.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)

"""Short eager training runs: surrogate gradients through the modules teach a small network.

The task: two input channels of Bernoulli ("Poisson-like") spike trains, T=20 steps; one
channel fires with probability 0.5 per step, the other 0.2; the label is the busier channel.
A spiking layer of 16 neurons feeds a linear readout of its spike counts. Measured with
seeds 0-2, 100 Adam steps of batch 32, both layers, v_th fixed or trained: the held-out loss
falls to 0.06-0.16 of its initial value, held-out accuracy goes from about chance to
0.95-0.99, and trained thresholds move by 0.2 on average. The asserts (loss ratio < 0.6,
accuracy > 0.85) leave a wide margin. One run takes under a second on an idle CPU.
"""

from __future__ import annotations

import pytest
import torch

import lifexport as lx
from lifexport.functional import LIFParameters, LIFRefracParameters

T, BATCH, HIDDEN, STEPS = 20, 32, 16, 100


pytestmark = pytest.mark.usefixtures("one_thread")


def spike_data(n, gen):
    """``(T, n, 2)`` spikes and labels ``(n,)``: the index of the busier channel."""
    labels = torch.randint(0, 2, (n,), generator=gen)
    rates = torch.where(torch.nn.functional.one_hot(labels, 2).bool(), 0.5, 0.2)  # (n, 2)
    return (torch.rand(T, n, 2, generator=gen) < rates).float(), labels


def make_net(kind, trainable, seed):
    """The spiking layer (as a SequentialState), its readout, all of it seeded."""
    torch.manual_seed(seed)
    # alpha=10: a surrogate wide enough for a layer that starts near silence (alpha=100,
    # the default, learns too, but slower). v_th per neuron, so each neuron can learn its own.
    p = LIFRefracParameters(LIFParameters(v_th=torch.ones(HIDDEN), alpha=10.0))
    if kind == "feed_forward":
        linear = torch.nn.Linear(2, HIDDEN)
        with torch.no_grad():
            linear.weight.mul_(5.0)  # input spikes strong enough to make neurons fire
        net = lx.SequentialState(linear, lx.LIFRefrac(p, trainable=trainable))
    else:
        layer = lx.LIFRefracRecurrent(2, HIDDEN, p, trainable=trainable)
        with torch.no_grad():
            layer.input_weights.mul_(5.0)
        net = lx.SequentialState(layer)
    return net, torch.nn.Linear(HIDDEN, 2)


def train(kind, trainable=(), seed=0):
    """Train; return held-out (loss, accuracy) before and after, and the network."""
    net, readout = make_net(kind, trainable, seed)
    gen = torch.Generator().manual_seed(seed)
    x_test, y_test = spike_data(512, torch.Generator().manual_seed(1000 + seed))

    def logits(x):
        zs, _ = net(x)  # (T, B, HIDDEN)
        return readout(zs.sum(0))  # spike counts -> (B, 2)

    def evaluate():
        with torch.no_grad():
            out = logits(x_test)
        loss = torch.nn.functional.cross_entropy(out, y_test).item()
        return loss, (out.argmax(1) == y_test).float().mean().item()

    before = evaluate()
    optimizer = torch.optim.Adam([*net.parameters(), *readout.parameters()], lr=1e-2)
    for _ in range(STEPS):
        x, y = spike_data(BATCH, gen)
        loss = torch.nn.functional.cross_entropy(logits(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, evaluate(), net


@pytest.mark.parametrize("kind", ["feed_forward", "recurrent"])
def test_training_lowers_the_loss(kind):
    (loss0, acc0), (loss1, acc1), net = train(kind)
    assert loss1 < 0.6 * loss0, (loss0, loss1)
    assert acc1 > 0.85, (acc0, acc1)


def test_trainable_threshold_is_learned():
    """With v_th trainable, v_th moves (per neuron) and the loss still falls; parameters
    left out of ``trainable`` stay put."""
    net, _ = make_net("feed_forward", ("v_th",), seed=0)
    v_th0, tau0 = net[1].v_th.detach().clone(), net[1].tau_mem_inv.clone()
    (loss0, _), (loss1, acc1), net = train("feed_forward", trainable=("v_th",))
    layer = net[1]
    assert isinstance(layer.v_th, torch.nn.Parameter)
    assert loss1 < 0.6 * loss0, (loss0, loss1)
    assert acc1 > 0.85
    change = (layer.v_th.detach() - v_th0).abs()
    assert (change > 1e-3).sum() >= HIDDEN // 2, f"v_th barely moved: {change}"
    assert torch.equal(layer.tau_mem_inv, tau0)

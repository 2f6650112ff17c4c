"""A ``SequentialState`` fed an input of the wrong feature size names the layer, what it takes
and what it got (not torch's ``mat1 and mat2 shapes cannot be multiplied``)."""

from __future__ import annotations

import re

import pytest
import torch

from lifexport.modules import (
    LIFRefrac,
    LIFRefracCell,
    LIFRefracRecurrentCell,
    SequentialState,
    TimeLoop,
)


def _error(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_cell_stack_names_the_first_layer_and_both_sizes() -> None:
    net = SequentialState(torch.nn.Linear(4, 3), LIFRefracCell())
    message = "layer 0 (Linear) takes 4 input features (last dimension), got 5: the input has "
    with pytest.raises(ValueError, match=_error(message + "shape (2, 5)")):
        net(torch.ones(2, 5))
    with pytest.raises(ValueError, match=_error(message + "shape (2, 5)")):
        net.initial_state(torch.ones(2, 5))


def test_sequence_stack_names_the_layer_with_the_time_axis_in_the_shape() -> None:
    net = SequentialState(torch.nn.Linear(4, 3), LIFRefrac())
    message = "layer 0 (Linear) takes 4 input features (last dimension), got 5: the input has "
    with pytest.raises(ValueError, match=_error(message + "shape (7, 2, 5)")):
        net(torch.ones(7, 2, 5))


def test_a_later_layer_names_the_layer_whose_output_does_not_fit() -> None:
    net = SequentialState(torch.nn.Linear(4, 3), LIFRefrac(), torch.nn.Linear(5, 2), LIFRefrac())
    with pytest.raises(
        ValueError,
        match=_error(
            "layer 2 (Linear) takes 5 input features (last dimension), got 3: the output of "
            "layer 1 (LIFRefrac) has shape (7, 2, 3)"
        ),
    ):
        net(torch.ones(7, 2, 4))


def test_a_recurrent_cell_names_its_input_size() -> None:
    net = SequentialState(torch.nn.Linear(4, 3), LIFRefracRecurrentCell(4, 2))
    with pytest.raises(ValueError, match=r"^layer 1 \(LIFRefracRecurrentCell\) takes 4 input "):
        net(torch.ones(2, 4))


def test_a_conv_names_its_channels() -> None:
    net = SequentialState(torch.nn.Conv2d(2, 3, 3), LIFRefrac())
    with pytest.raises(
        ValueError,
        match=_error(
            "layer 0 (Conv2d) takes 2 input channels (dimension -3, before the 2 spatial ones), "
            "got 4: the input has shape (5, 1, 4, 6, 6)"
        ),
    ):
        net(torch.ones(5, 1, 4, 6, 6))


def test_a_time_loop_over_a_cell_stack_names_the_layer() -> None:
    loop = TimeLoop(SequentialState(torch.nn.Linear(4, 3), LIFRefracCell()))
    with pytest.raises(ValueError, match=r"^layer 0 \(Linear\) takes 4 input features"):
        loop(torch.ones(6, 2, 5))


def test_inputs_that_fit_give_the_layers_own_results() -> None:
    # The checks read sizes only: a stack still computes its layers one after the other,
    # with an unbatched input too (Linear and the cell accept one).
    torch.manual_seed(0)
    linear, conv = torch.nn.Linear(4, 3), torch.nn.Conv1d(2, 3, 3)
    x = torch.rand(2, 4) * 40
    y, _ = SequentialState(linear, LIFRefracCell())(x)
    expected, _ = LIFRefracCell()(linear(x))
    assert torch.equal(y, expected) and 0 < y.sum() < y.numel()
    y, _ = SequentialState(linear, LIFRefracCell())(x[0])
    assert torch.equal(y, expected[0])
    xs = torch.rand(5, 2, 2, 8) * 40  # (T, B, C, L)
    ys, _ = SequentialState(conv, LIFRefrac())(xs)
    expected, _ = LIFRefrac()(conv(xs.flatten(0, 1)).unflatten(0, (5, 2)))
    assert torch.equal(ys, expected) and ys.sum() > 0

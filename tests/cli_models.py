"""Model factories that the CLI tests name as ``tests.cli_models:<function>``."""

from __future__ import annotations

import torch

from lifexport.digits import trained_model


def perturbed_digits():
    """The shipped digits network with its first layer's weights changed: a different model."""
    model = trained_model()
    with torch.no_grad():
        model[0].weight.mul_(1.5)
    return model


def small_lif_stack():
    """Linear -> LIF -> Linear -> LI over sequences: what NIR files carry both ways."""
    import lifexport

    torch.manual_seed(3)
    return lifexport.SequentialState(
        torch.nn.Linear(6, 8), lifexport.LIF(), torch.nn.Linear(8, 3), lifexport.LI()
    )

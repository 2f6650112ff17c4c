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

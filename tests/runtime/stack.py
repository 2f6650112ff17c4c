"""The model the runtime tests run: a LIF-refrac, LIF and LI stack whose leak potentials are
not zero (one per neuron in the LIF), so that the state at rest matters: starting from zeros
instead gives other outputs within a few steps."""

from __future__ import annotations

import torch

import lifexport
from lifexport.functional import LIFParameters, LIFRefracParameters, LIParameters

#: Time steps, batch rows, input features and LIF-refrac neurons of the tests' drive.
T, B, F, N = 30, 3, 4, 6


def stack_model() -> lifexport.SequentialState:
    torch.manual_seed(0)
    return lifexport.SequentialState(
        torch.nn.Linear(F, N),
        lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(v_leak=0.3), rho_reset=2.0)),
        torch.nn.Linear(N, 5),
        lifexport.LIF(LIFParameters(v_leak=torch.linspace(-0.2, 0.4, 5), v_th=0.5)),
        lifexport.LI(LIParameters(v_leak=0.1)),
    ).eval()

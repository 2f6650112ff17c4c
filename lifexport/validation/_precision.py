"""The precision a graph is checked in: provider settings (TF32 on CUDA), tolerances, and the
strict float32 torch reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from lifexport.graph import GraphFile
from lifexport.validation._compare import default_tolerances
from lifexport.validation._runtime import CUDA

#: ``"strict"``: the graph checked as it is, TF32 off; ``"deployment"``: a deployment setting
#: (TF32 on, a float16 export) against a strict float32 reference, on a spike flip budget.
PRECISIONS = ("strict", "deployment")


@dataclass(frozen=True)
class Tolerances:
    """The tolerances of one validation: ``rtol``, ``atol`` of every non-spike value, and the
    ``numerical_margin`` within which a spike flip is numerical."""

    rtol: float
    atol: float
    numerical_margin: float


def resolve_precision(info: GraphFile, precision: str | None) -> str:
    """``precision``, or for ``None`` the file's own: deployment for a quantized file (a
    deployment setting of its float graph), else strict."""
    if precision is not None:
        return precision
    return "deployment" if info.contract.quantize else "strict"


def provider_settings(
    providers: Iterable[str],
    precision: str,
    overrides: Mapping[str, Mapping[str, str]] | None,
) -> dict[str, dict[str, str]]:
    """The session options of each provider: validation's (TF32 off on CUDA in strict
    precision, on in deployment), then the caller's.

    Raises:
        ValueError: options for a provider not among ``providers``, or not a mapping.
    """
    providers = list(providers)
    tf32 = "0" if precision == "strict" else "1"
    settings = {p: ({"use_tf32": tf32} if p == CUDA else {}) for p in providers}
    for provider, options in (overrides or {}).items():
        if provider not in settings:
            raise ValueError(
                f"provider_options: {provider!r} is not among the providers to run {providers}"
            )
        if not isinstance(options, Mapping):
            raise ValueError(
                f"provider_options[{provider!r}] must map option names to strings, got {options!r}"
            )
        settings[provider].update({str(k): str(v) for k, v in options.items()})
    return settings


def tolerances(
    info: GraphFile,
    precision: str,
    rtol: float | None,
    atol: float | None,
    margin: float | None,
) -> Tolerances:
    """The caller's tolerances; where ``None``, the graph dtype's defaults, or in deployment
    precision those of a 10-bit mantissa (TF32, float16)."""
    dtype = torch.float16 if precision == "deployment" else info.dtype
    defaults = default_tolerances(dtype)
    return Tolerances(
        defaults[0] if rtol is None else float(rtol),
        defaults[1] if atol is None else float(atol),
        defaults[2] if margin is None else float(margin),
    )


@contextmanager
def strict_float32():
    """Torch's float32 matrix products and convolutions in full float32 (TF32 off), then as
    before."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.set_float32_matmul_precision(precision)

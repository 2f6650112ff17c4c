"""What an exported graph may contain, per mode."""

from __future__ import annotations

import onnx

from lifexport.errors import ExportError
from lifexport.export._functions import LIFEXPORT, OP_TYPES
from lifexport.export._graph import op_types
from lifexport.export._ops import Mode, check_mode


def check_op_set(model: onnx.ModelProto, mode: Mode) -> None:
    """Check the ops of ``model``'s graph and subgraphs against ``mode``.

    ``inference`` allows standard ONNX ops only. ``training`` allows, besides, the
    ``lifexport`` ops, each with its function in ``model.functions``.

    Raises:
        ExportError: an op outside the allowed set, or a ``lifexport`` op without function.
        ValueError: an unknown ``mode``.
    """
    check_mode(mode)
    used = op_types(model)
    domains = {"", LIFEXPORT.domain} if mode == "training" else {""}
    custom = {t for d, t in used if d == LIFEXPORT.domain and d in domains}
    bad = [f"{d}.{t}" for d, t in used if d not in domains]
    bad += [f"{LIFEXPORT.domain}.{t}" for t in custom - OP_TYPES]
    if bad:
        allowed = "standard ONNX ops" + (
            f" and the lifexport ops {', '.join(sorted(OP_TYPES))}" if mode == "training" else ""
        )
        raise ExportError(f"a {mode} graph may hold only {allowed}; found {', '.join(sorted(bad))}")
    missing = sorted(custom - {f.name for f in model.functions if f.domain == LIFEXPORT.domain})
    if missing:
        raise ExportError(
            f"lifexport ops {', '.join(missing)} have no function in model.functions; "
            "call attach_functions(model)"
        )

"""ONNX export: spike op translations, training graphs, checks and atomic files.

Two modes: ``inference`` graphs hold standard ONNX ops only; ``training`` graphs hold each
spike as ``lifexport.<Name>`` (``SuperSpike``, ...) and each surrogate gradient as
``lifexport.<Name>Grad``, with an ONNX function per op in the model, so onnxruntime runs them.

Time loops export as one ONNX ``Scan`` (and a training graph's backward as a second one) when
written with ``torch._higher_order_ops.scan.scan(combine_fn, init, xs)``, whose tracing asks
of ``combine_fn(carry, x) -> (carry, y)`` (torch 2.13, pinned in
``tests/export/test_exporter_quirks.py``):

- the carry is a flat tuple or list of tensors, not a NamedTuple state;
- a per-step output that is also carried (``z`` of a recurrent step) is returned
  ``.clone()``-d, else "Encountered aliasing during higher order op tracing";
- the initial carries are distinct tensors, not one zero tensor passed three times, else
  "scan might be aliasing the input or the output".

Typical use::

    model = export_program(module, (xs, *state), "seq.onnx", mode="inference",
                           dynamic_shapes=..., input_names=..., output_names=...)
    step = trace_training_step(module, (xs,), dynamic_shapes=..., output_names=["spikes"])
    model = export_program(step.module, step.args, "train.onnx", mode="training",
                           dynamic_shapes=step.dynamic_shapes, input_names=step.input_names,
                           output_names=step.output_names)
"""

from lifexport.export._api import ExportedModel, state_names, to_onnx
from lifexport.export._domain import (
    DOMAIN_OPS,
    LIFEXPORT,
    MODES,
    OP_TYPES,
    OPSET,
    DomainOp,
    Mode,
    attach_functions,
    check_op_set,
    domain_op_types,
    function_proto,
    translation_table,
)
from lifexport.export._files import atomic_write, save_model
from lifexport.export._graph import op_types
from lifexport.export._program import export_program
from lifexport.export._training import TrainingStep, trace_training_step

__all__ = [
    "ExportedModel",
    "state_names",
    "to_onnx",
    "DOMAIN_OPS",
    "DomainOp",
    "LIFEXPORT",
    "MODES",
    "OPSET",
    "OP_TYPES",
    "Mode",
    "TrainingStep",
    "atomic_write",
    "attach_functions",
    "check_op_set",
    "domain_op_types",
    "export_program",
    "function_proto",
    "op_types",
    "save_model",
    "trace_training_step",
    "translation_table",
]

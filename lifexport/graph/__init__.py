"""The contract of an exported file, defined once: export writes it, validation reads it.

An exported graph's interface (its kind and mode, input and output names in order, the state
layout, the trainable parameters) is a :class:`GraphContract`. ``lifexport.to_onnx`` builds it
from the model, names the graph's inputs and outputs by it and stores it in the file's
``metadata_props`` (:data:`METADATA` lists every key with its writer and reader);
:func:`read_graph` reads it back and checks it against the graph. A model's state tensors and
their names come from one walk over its state pytree (:class:`StateLayout`).

A file is data: :func:`read_graph` checks every metadata value and holds the contract to what
the graph itself shows (the type and shape of ``x``, its time loops, int8 weights where the
file claims them: :func:`weight_types`), naming the metadata key or input that disagrees.

Modules, one concern each: ``_metadata`` (the keys and checked reading of their values),
``_initial`` (the state at rest a file records), ``_slot`` (a state's names),
``_contract`` (the interface and its names), ``_layout`` (a model's state as slots),
``_structure`` (what the graph itself holds), ``_file`` (:func:`read_graph`).

Only :class:`StateLayout` needs torch, and it is imported on first use: the contract and its
metadata read with the standard library alone (``lifexport.runtime`` runs without torch).

Names (``<k>``: the layer's index in its stack, 0 for a single layer; ``<field>``: ``z``,
``v``, ``i``, ``rho``):

============  ========================================  ======================================
graph         inputs                                    outputs
============  ========================================  ======================================
``step``      ``x`` (B, ...), ``state.<k>.<field>``     ``y``, ``next_state.<k>.<field>``
``sequence``  ``x`` (T, B, ...) [, ``state.*``]         ``y`` (T, B, ...) [, ``next_state.*``]
training      parameters first, ``target`` after ``x``  ``loss`` first, ``grad.<p>`` last
============  ========================================  ======================================
"""

from lifexport.graph._contract import GRAD_PREFIX, LOSS, TARGET, GraphContract, X, Y
from lifexport.graph._file import GraphFile, read_graph
from lifexport.graph._initial import INITIAL_STATE_KEY, InitialValue
from lifexport.graph._metadata import (
    GRAPHS,
    METADATA,
    MODES,
    QUANTIZE_KEY,
    SOURCE_KEY,
    MetadataKey,
)
from lifexport.graph._slot import StateSlot
from lifexport.graph._structure import QUANTIZED_OPS, WeightTypes, weight_types


def __getattr__(name: str):
    if name == "StateLayout":  # torch: imported on first use
        from lifexport.graph._layout import StateLayout

        return StateLayout
    raise AttributeError(f"module 'lifexport.graph' has no attribute {name!r}")


__all__ = [
    "GRAD_PREFIX",
    "GRAPHS",
    "INITIAL_STATE_KEY",
    "LOSS",
    "METADATA",
    "MODES",
    "QUANTIZED_OPS",
    "QUANTIZE_KEY",
    "SOURCE_KEY",
    "TARGET",
    "X",
    "Y",
    "GraphContract",
    "GraphFile",
    "InitialValue",
    "MetadataKey",
    "StateLayout",
    "StateSlot",
    "WeightTypes",
    "read_graph",
    "weight_types",
]

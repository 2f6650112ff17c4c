"""The contract of an exported file, defined once: export writes it, validation reads it.

An exported graph's interface (its kind and mode, input and output names in order, the state
layout, the trainable parameters) is a :class:`GraphContract`. ``lifexport.to_onnx`` builds it
from the model, names the graph's inputs and outputs by it and stores it in the file's
``metadata_props`` (:data:`METADATA` lists every key with its writer and reader);
:func:`read_graph` reads it back and checks it against the graph. A model's state tensors and
their names come from one walk over its state pytree (:class:`StateLayout`).

Names (``<k>``: the layer's index in its stack, 0 for a single layer; ``<field>``: ``z``,
``v``, ``i``, ``rho``):

=============  =================================================  ==============================
graph          inputs                                             outputs
=============  =================================================  ==============================
``step``       ``x`` (B, ...), ``state.<k>.<field>``              ``y``, ``next_state.<k>.<field>``
``sequence``   ``x`` (T, B, ...) [, ``state.*``]                  ``y`` (T, B, ...) [, ``next_state.*``]
training       parameters first, ``target`` after ``x``           ``loss`` first, ``grad.<p>`` last
=============  =================================================  ==============================
"""

from lifexport.graph._contract import (
    GRAD_PREFIX,
    GRAPHS,
    LOSS,
    METADATA,
    MODES,
    QUANTIZE_KEY,
    SOURCE_KEY,
    TARGET,
    X,
    Y,
    GraphContract,
    GraphFile,
    MetadataKey,
    read_graph,
)
from lifexport.graph._layout import StateLayout, StateSlot

__all__ = [
    "GRAD_PREFIX",
    "GRAPHS",
    "LOSS",
    "METADATA",
    "MODES",
    "QUANTIZE_KEY",
    "SOURCE_KEY",
    "TARGET",
    "X",
    "Y",
    "GraphContract",
    "GraphFile",
    "MetadataKey",
    "StateLayout",
    "StateSlot",
    "read_graph",
]

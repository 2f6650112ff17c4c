"""NIR in and out: lifexport models as graphs of the Neuromorphic Intermediate Representation.

:func:`to_nir` writes a model, :func:`from_nir` reads a graph back into a
:class:`~lifexport.modules.SequentialState`. Both need the optional ``nir`` package
(``pip install nir``), imported on first use. Files: ``nir.write(path, graph)``, and
:func:`read_nir`, which reads a file as ``nir.read`` does once its sizes are checked against
:mod:`lifexport.limits` (a file from elsewhere is data: it may declare any size).
"""

from lifexport.nir._export import to_nir
from lifexport.nir._import import from_nir
from lifexport.nir._read import read_nir

__all__ = ["from_nir", "read_nir", "to_nir"]

"""NIR in and out: lifexport models as graphs of the Neuromorphic Intermediate Representation.

:func:`to_nir` writes a model, :func:`from_nir` reads a graph back into a
:class:`~lifexport.modules.SequentialState`. Both need the optional ``nir`` package
(``pip install nir``), imported on first use. Files: ``nir.write(path, graph)`` and
``nir.read(path)``.
"""

from lifexport.nir._export import to_nir
from lifexport.nir._import import from_nir

__all__ = ["from_nir", "to_nir"]

"""``read_nir``: a NIR file read into a ``nir.NIRGraph`` after its sizes are checked.

``nir.read`` reads every dataset of a file at once, so a small file can make it allocate far
more than its size: a compressed dataset, or one never written (HDF5 then returns its fill
value), may declare any shape. :func:`read_nir` walks the file's structure first, reading
only shapes and types, and checks them against :mod:`lifexport.limits`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from lifexport.limits import LIMITS, check_elements
from lifexport.nir._common import require_nir

__all__ = ["read_nir"]

#: What one element of a variable-length (string) dataset takes in memory once read, at
#: least: a Python object and its header.
OBJECT_BYTES = 64


def read_nir(path: str | os.PathLike) -> Any:
    """The NIR graph in the file at ``path`` (as ``nir.read``), read only when every dataset
    fits :mod:`lifexport.limits`.

    The file is opened once; its tree under ``/node`` (what ``nir.read`` reads) is walked
    before any data is read: each dataset's size must be within ``max_elements``, all of them
    together within ``max_file_bytes``, and the tree must be a tree (no object linked twice,
    no link to another file).

    Args:
        path: a ``.nir`` file (HDF5), as ``nir.write`` writes it.

    Returns:
        The ``nir.NIRGraph``; :func:`~lifexport.nir.from_nir` turns it into layers.

    Raises:
        TypeError: ``path`` is not a str or path.
        FileNotFoundError: there is no file at ``path``.
        ValueError: a file that is not HDF5, not a NIR graph, or over the limits; the message
            names the file and the dataset.
        ImportError: the ``nir`` package is not installed.

    Examples:
        >>> import lifexport, nir
        >>> net = lifexport.SequentialState(torch.nn.Linear(4, 3), lifexport.LIF())
        >>> nir.write("/tmp/net.nir", lifexport.to_nir(net))
        >>> sorted(read_nir("/tmp/net.nir").nodes)
        ['0', '1', 'input', 'output']
    """
    nir = require_nir()
    import h5py  # a dependency of nir

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    where = f"nir file {os.fspath(path)!r}"
    if not Path(path).is_file():
        raise FileNotFoundError(f"{where} does not exist (or is not a file)")
    with open(path, "rb") as stream:  # one open file: what is checked is what is read
        try:
            with h5py.File(stream, "r") as file:
                _check_tree(file, where, h5py, os.fstat(stream.fileno()).st_size)
        except (OSError, KeyError, RuntimeError) as error:  # h5py's errors for non-HDF5 data
            raise ValueError(f"{where} is not a readable HDF5 file: {error}") from None
        stream.seek(0)
        try:
            return nir.read(stream)
        except Exception as error:  # nir's errors for an HDF5 file that is not a NIR graph
            raise ValueError(
                f"{where} is not a NIR graph nir can read: {type(error).__name__}: {error}"
            ) from None


def _check_tree(file: Any, where: str, h5py: Any, file_bytes: int) -> None:
    """Raise ``ValueError`` unless the tree under ``/node`` is a tree of datasets within the
    limits; reads names, shapes and types only (variable-length strings: one at a time)."""
    if not isinstance(file.get("node", getlink=True), h5py.HardLink) or not isinstance(
        file.get("node"), h5py.Group
    ):
        raise ValueError(f"{where} has no group 'node': not a NIR graph")
    seen: dict[Any, str] = {}
    total = 0
    groups = [file["node"]]
    while groups:
        group = groups.pop()
        for name in group:
            path = f"{group.name}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ValueError(
                    f"{where}: {path!r} links to another file ({link.filename!r}); a NIR file "
                    "holds its data itself"
                )
            item = group.get(name)
            if item is None:
                raise ValueError(f"{where}: {path!r} is a link to nothing")
            if item.id in seen:
                raise ValueError(
                    f"{where}: {path!r} is the object at {seen[item.id]!r} again; in a NIR file "
                    "each node and dataset has one place"
                )
            seen[item.id] = path
            if isinstance(item, h5py.Group):
                groups.append(item)
            elif isinstance(item, h5py.Dataset):
                total += _dataset_bytes(item, f"{where}: dataset {path!r}", file_bytes)
                _check_numbers(item, f"{where}: dataset {path!r}")
                if total > LIMITS.max_file_bytes:
                    raise ValueError(
                        f"{where}: its datasets up to {path!r} take {total} bytes in memory, "
                        f"over the limit of {LIMITS.max_file_bytes} "
                        "(lifexport.limits.LIMITS.max_file_bytes; raise it if a real use "
                        "needs more)"
                    )


#: Datasets of a node that hold text: its type, a graph's edges, a Conv's padding ("same"),
#: and everything under its ``metadata`` group. All others are numbers.
TEXT = ("type", "edges", "padding")


def _check_numbers(dataset: Any, what: str) -> None:
    """A node's parameter (any dataset outside :data:`TEXT` and metadata) holds numbers:
    checked here, where the message can name it, before ``nir.read`` builds nodes of it."""
    parts = dataset.name.split("/")
    if parts[-1] in TEXT or "metadata" in parts or dataset.dtype.kind in "biuf":
        return
    got = "text" if dataset.dtype.kind in "OSU" else f"data of type {dataset.dtype}"
    raise ValueError(f"{what} must hold numbers, got {got}")


def _dataset_bytes(dataset: Any, what: str, file_bytes: int) -> int:
    """The bytes that reading ``dataset`` takes; its element count checked first."""
    if dataset.shape is None:  # an empty dataspace
        return 0
    check_elements(what, dataset.shape)
    count = math.prod(dataset.shape)
    if dataset.dtype.kind != "O":
        return count * dataset.dtype.itemsize
    # Variable-length data: an element's length is known only once read. Each is stored
    # whole in the file (no compression), so a block of limit / file-size elements at a time
    # stays within the limit while the lengths add up.
    size = count * OBJECT_BYTES
    if size > LIMITS.max_file_bytes or dataset.shape == ():
        return size + (_length(dataset[()]) if dataset.shape == () else 0)
    row = math.prod(dataset.shape[1:])
    rows = max(1, LIMITS.max_file_bytes // max(file_bytes, 1) // max(row, 1))
    for start in range(0, dataset.shape[0], rows):
        size += sum(_length(e) for e in np.asarray(dataset[start : start + rows]).reshape(-1))
        if size > LIMITS.max_file_bytes:
            break
    return size


def _length(element: Any) -> int:
    """Bytes of one variable-length element (a string, bytes or an array)."""
    if isinstance(element, np.ndarray):
        return element.nbytes
    return len(element) if isinstance(element, (bytes, str)) else 0

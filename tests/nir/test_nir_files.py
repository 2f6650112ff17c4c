"""NIR files are data: ``read_nir`` bounds what a file can make it read, and ``from_nir``
names the node and field of any value that is not a number it can use."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

import lifexport
from lifexport.limits import LIMITS
from lifexport.nir import from_nir, read_nir
from tests.nets import altered_nir

REFRAC_WARNING = pytest.mark.filterwarnings("ignore:layers .* are LIF-refrac:UserWarning")


def small_net() -> lifexport.SequentialState:
    torch.manual_seed(5)
    return lifexport.SequentialState(
        torch.nn.Linear(6, 8), lifexport.LIFRefrac(), torch.nn.Linear(8, 3), lifexport.LI()
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """``small_net`` as a NIR file: Affine '0', CubaLIF '1' (with rho_reset), Affine '2',
    CubaLI '3'."""
    path = tmp_path_factory.mktemp("nir") / "net.nir"
    with pytest.warns(UserWarning, match="LIF-refrac"):
        nir.write(path, lifexport.to_nir(small_net()))
    return path



def test_read_nir_reads_what_nir_read_reads(written) -> None:
    xs = torch.rand(30, 2, 6) * 3
    with torch.no_grad():
        expected, _ = small_net()(xs)
        ours, _ = from_nir(read_nir(written))(xs)
        theirs, _ = from_nir(nir.read(written))(xs)
    assert torch.equal(ours, expected) and torch.equal(theirs, expected)
    assert expected.abs().sum() > 0


def test_a_huge_compressed_dataset_is_refused_before_it_is_read(written, tmp_path) -> None:
    # 10**9 float64 (8 GB) declared, nothing written: a gzip-chunked dataset of fill values.
    huge = dict(shape=(10**9,), dtype="f8", compression="gzip", chunks=(2**20,))
    path = altered_nir(written, tmp_path, "nodes/1/tau_mem", **huge)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(
            ValueError,
            match=rf"^nir file '{path}': dataset '/node/nodes/1/tau_mem' of shape "
            rf"\(1000000000,\) has 1000000000 elements, over the limit of {LIMITS.max_elements} "
            r"\(lifexport\.limits\.LIMITS\.max_elements",
        ):
            read_nir(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # read nothing of it


def test_a_long_string_never_written_counts_its_bytes(written, tmp_path) -> None:
    # One element, so under max_elements, of 2**31 bytes: over max_file_bytes (1 GiB).
    key = "nodes/1/metadata/lifexport.method"
    path = altered_nir(written, tmp_path, key, shape=(), dtype="S2147483647")
    with pytest.raises(
        ValueError,
        match=rf"^nir file '{path}': its datasets up to "
        r"'/node/nodes/1/metadata/lifexport\.method' take \d+ bytes in memory, over the limit "
        rf"of {LIMITS.max_file_bytes} \(lifexport\.limits\.LIMITS\.max_file_bytes",
    ):
        read_nir(path)


def test_the_byte_limit_counts_every_dataset(written, monkeypatch) -> None:
    monkeypatch.setattr(LIMITS, "max_file_bytes", 500)  # the file's weights take more
    with pytest.raises(ValueError, match=r"take \d+ bytes in memory, over the limit of 500 "):
        read_nir(written)
    monkeypatch.setattr(LIMITS, "max_file_bytes", 10**6)
    assert set(read_nir(written).nodes) == {"input", "0", "1", "2", "3", "output"}


@pytest.mark.parametrize(
    "link, message",
    [
        ("hard", r"'/node/nodes/1/tau_syn' is the object at '/node/nodes/1/r' again"),
        ("external", r"'/node/nodes/1/tau_syn' links to another file \('other\.h5'\)"),
    ],
)
def test_links_are_refused(written, tmp_path, link, message) -> None:
    # A tree with shared objects can make a reader visit one dataset again and again.
    path = tmp_path / "linked.nir"
    shutil.copy(written, path)
    with h5py.File(path, "a") as f:
        node = f["node/nodes/1"]
        del node["tau_syn"]
        node["tau_syn"] = node["r"] if link == "hard" else h5py.ExternalLink("other.h5", "/x")
    with pytest.raises(ValueError, match=message):
        read_nir(path)


def test_files_that_are_not_nir_graphs(tmp_path) -> None:
    text = tmp_path / "notes.nir"
    text.write_text("not HDF5")
    with pytest.raises(ValueError, match=r"notes\.nir' is not a readable HDF5 file"):
        read_nir(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["weights"] = np.ones(3)
    with pytest.raises(ValueError, match=r"other\.h5' has no group 'node': not a NIR graph"):
        read_nir(other)
    with pytest.raises(FileNotFoundError, match=r"missing\.nir' does not exist"):
        read_nir(tmp_path / "missing.nir")
    with pytest.raises(TypeError, match=r"^path must be a str or os\.PathLike, got bytes$"):
        read_nir(b"net.nir")


# Each replaced dataset, its new value, and the error: node and field named.
BAD_VALUES = [
    (
        "nodes/1/tau_mem",
        dict(data="fast", dtype=h5py.string_dtype()),
        r"^nir file '.*': dataset '/node/nodes/1/tau_mem' must hold numbers, got text$",
    ),
    (
        "nodes/0/weight",
        dict(data=np.ones((8, 6), dtype=complex)),
        r"dataset '/node/nodes/0/weight' must hold numbers, got data of type complex128$",
    ),
    (
        "nodes/1/tau_mem",
        dict(data=np.array([0.01] * 7 + [0.0])),
        r"^node '1' \(CubaLIF\): tau_mem must be positive and finite, got an array of shape "
        r"\(8,\) \(min 0\.0, max 0\.01, 0 not finite\)$",
    ),
    (
        "nodes/3/tau_syn",
        dict(data=np.full(3, -0.005)),
        r"^node '3' \(CubaLI\): tau_syn must be positive and finite, got \[-0\.005, ",
    ),
    (
        "nodes/1/v_threshold",
        dict(data=np.full(8, np.nan)),
        r"^node '1' \(CubaLIF\): v_threshold must be finite, got an array of shape \(8,\) "
        r"\(8 not finite\)$",
    ),
    (
        "nodes/1/metadata/lifexport.rho_reset",
        dict(data="five", dtype=h5py.string_dtype()),
        r"^node '1' \(CubaLIF\): metadata 'lifexport\.rho_reset' must be a number or an array "
        r"of numbers, got str 'five'$",
    ),
    (
        "nodes/1/metadata/lifexport.rho_reset",
        dict(data=-1.0),
        r"^node '1' \(CubaLIF\): metadata 'lifexport\.rho_reset' must be >= 0 and finite, "
        r"got -1\.0$",
    ),
    (
        "nodes/1/metadata/lifexport.alpha",
        dict(data=np.ones(2)),
        r"^node '1' \(CubaLIF\): metadata 'lifexport\.alpha' must be one number, got an array "
        r"of shape \(2,\)$",
    ),
    (
        "nodes/1/metadata/lifexport.method",
        dict(data=3),
        r"^node '1' \(CubaLIF\): metadata 'lifexport\.method' must be a string, got 3$",
    ),
    (
        "metadata/lifexport.sequence",
        dict(data=2),
        r"^graph metadata 'lifexport\.sequence' must be 1 \(sequence layers\) or 0 \(cells\), "
        r"got 2\.0$",
    ),
    (
        "nodes/0/bias",
        dict(data=np.zeros(5)),
        r"^node '0' \(Affine\): bias must hold 8 values, one per output, got 5$",
    ),
]


BAD_IDS = [f"{index}-{key}" for index, (key, *_) in enumerate(BAD_VALUES)]


@pytest.mark.parametrize(("key", "dataset", "message"), BAD_VALUES, ids=BAD_IDS)
def test_a_value_that_is_not_a_usable_number_names_its_node_and_field(
    written, tmp_path, key, dataset, message
) -> None:
    path = altered_nir(written, tmp_path, key, **dataset)
    with pytest.raises(ValueError, match=message):
        from_nir(read_nir(path))


@REFRAC_WARNING
def test_a_bad_value_inside_a_recurrent_subgraph_names_both() -> None:
    net = lifexport.SequentialState(lifexport.LIFRefracRecurrent(3, 4))
    graph = lifexport.to_nir(net)
    (sub,) = [name for name, node in graph.nodes.items() if isinstance(node, nir.NIRGraph)]
    (lif,) = [n for n, node in graph.nodes[sub].nodes.items() if isinstance(node, nir.CubaLIF)]
    graph.nodes[sub].nodes[lif].tau_syn = np.zeros(4)
    with pytest.raises(
        ValueError,
        match=rf"^subgraph '{sub}', node '{lif}' \(CubaLIF\): tau_syn must be positive and "
        r"finite, got \[0\.0, 0\.0, 0\.0, 0\.0\]$",
    ):
        from_nir(graph)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("stride", np.array([0, 1]), r"stride must be integers >= 1, got \[0\.0, 1\.0\]"),
        ("stride", np.array([1, 2, 3]), r"stride must be one or 2 integers, got an array of "),
        ("dilation", np.array([1.5, 1.0]), r"dilation must be integers >= 1, got \[1\.5, 1\.0\]"),
        ("padding", np.array([-1, 0]), r"padding must be integers >= 0, got \[-1\.0, 0\.0\]"),
        ("padding", b"full", r"padding must be integers >= 0, 'same' or 'valid', got 'full'"),
        ("groups", np.array(0), r"groups must be integers >= 1, got \[0\.0\]"),
    ],
)
def test_conv_sizes_must_be_integers_in_range(field, value, message) -> None:
    net = lifexport.SequentialState(torch.nn.Conv2d(2, 4, 3), lifexport.LIF())
    graph = lifexport.to_nir(net, input_shape=(2, 6, 6))
    (conv,) = [n for n, node in graph.nodes.items() if isinstance(node, nir.Conv2d)]
    setattr(graph.nodes[conv], field, value)
    with pytest.raises(ValueError, match=rf"^node '{conv}' \(Conv2d\): {message}"):
        from_nir(graph)

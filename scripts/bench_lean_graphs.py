"""Inference sequence graphs on an onnxruntime provider, three ways, in one run: the
exporter's graph, the graph `to_onnx` writes (exact rewrites: the spike comparison), and the
graph with every mask as a selection (`to_onnx(..., masks="select")`, fewer nodes). Outputs are
checked bit-equal; times are medians of interleaved runs (on one thread for the CPU provider).

    .venv/bin/python scripts/bench_lean_graphs.py [--t 100 --b 32 --n 512 --repeats 21]
        [--provider CUDAExecutionProvider]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

import lifexport
import lifexport.export._program as program


def variants(layer: torch.nn.Module, x: torch.Tensor, folder: Path) -> dict[str, onnx.ModelProto]:
    lifexport.to_onnx(layer, x, folder / "lean.onnx", with_state=False)
    lifexport.to_onnx(layer, x, folder / "select.onnx", with_state=False, masks="select")
    keep = program.lean_graph
    program.lean_graph = lambda model, select: model  # the exporter's graph, as it comes
    try:
        lifexport.to_onnx(layer, x, folder / "plain.onnx", with_state=False)
    finally:
        program.lean_graph = keep
    plain = onnx.load(folder / "plain.onnx")
    return {
        "exporter": plain,
        "to_onnx": onnx.load(folder / "lean.onnx"),
        "select": onnx.load(folder / "select.onnx"),
    }


def body_nodes(model: onnx.ModelProto) -> int:
    scan = next(n for n in model.graph.node if n.op_type == "Scan")
    return len(next(a.g for a in scan.attribute if a.name == "body").node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in (("t", 100), ("b", 32), ("n", 512), ("repeats", 21)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--provider", default="CPUExecutionProvider")
    args = parser.parse_args()
    if args.provider not in ort.get_available_providers():
        parser.error(
            f"--provider {args.provider} is not available here: {ort.get_available_providers()}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    x = 3.0 * torch.rand(args.t, args.b, args.n, generator=torch.Generator().manual_seed(0))
    threads = ", 1 thread" if args.provider == "CPUExecutionProvider" else ""
    print(
        f"(T, B, N) = {(args.t, args.b, args.n)}, onnxruntime {ort.__version__}, "
        f"{args.provider}{threads}"
    )
    print("| layer | graph | Scan body nodes | ms (median) |\n|---|---|---:|---:|")
    for name, layer in (("LIFRefrac", lifexport.LIFRefrac()), ("LIF", lifexport.LIF())):
        with tempfile.TemporaryDirectory() as folder:
            models = variants(layer, x, Path(folder))
        sessions = {
            k: ort.InferenceSession(m.SerializeToString(), options, [args.provider])
            for k, m in models.items()
        }
        feeds = {"x": x.numpy()}
        outputs = {k: s.run(None, feeds)[0] for k, s in sessions.items()}
        for k, y in outputs.items():  # the rewrites are exact
            assert np.array_equal(y.view(np.uint32), outputs["exporter"].view(np.uint32)), k
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(args.repeats):  # interleaved, so drift hits every variant alike
            for k, session in sessions.items():
                start = time.perf_counter()
                session.run(None, feeds)
                times[k].append(1e3 * (time.perf_counter() - start))
        for k in sessions:
            median = statistics.median(times[k])
            print(f"| {name} | {k} | {body_nodes(models[k])} | {median:.3f} |")


if __name__ == "__main__":
    main()

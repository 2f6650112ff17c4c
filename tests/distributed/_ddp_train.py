"""Train a small lifexport network under DistributedDataParallel, one rank per process.

Run by ``tests/distributed/test_ddp.py`` through torchrun, which sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``::

    python -m torch.distributed.run --standalone --nproc-per-node 2 \\
        tests/distributed/_ddp_train.py OUT_DIR

Each rank trains on its share of one batch, twice: the eager model wrapped in DDP, then
``DistributedDataParallel(lifexport.compile(model))``. It writes its final parameters to
``OUT_DIR/<variant>-rank<r>.pt``. The test imports :func:`build`, :func:`batch` and
:func:`train` to train the same network in one process on the whole batch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import lifexport

FEATURES, HIDDEN, OUTPUTS = 5, 8, 3  # tiny: each rank compiles its own graphs
BATCH = 4  # the whole batch; each of the 2 ranks trains on half of it
LENGTHS = (6, 4, 6)  # T of each optimizer step: one compiled graph serves every T
LR = 0.5  # large enough that three steps move every weight


def build() -> torch.nn.Module:
    """The same initial network in every process."""
    torch.manual_seed(0)
    return lifexport.SequentialState(
        torch.nn.Linear(FEATURES, HIDDEN),
        lifexport.LIFRefrac(),
        torch.nn.Linear(HIDDEN, OUTPUTS),
        lifexport.LI(),
    )


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch: input ``(max T, BATCH, FEATURES)`` and targets ``(BATCH, OUTPUTS)``."""
    gen = torch.Generator().manual_seed(1)
    x = 10.0 * torch.rand(max(LENGTHS), BATCH, FEATURES, generator=gen)  # (T, B, F)
    y = torch.rand(BATCH, OUTPUTS, generator=gen)  # (B, O)
    return x, y


def train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """A few SGD steps on a mean loss, one step per entry of ``LENGTHS``.

    The loss is a mean over the batch, so the gradient of the whole batch is the average of
    its halves' gradients: what DDP computes when it averages the ranks' gradients.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step, steps in enumerate(LENGTHS):
        with torch._dynamo.config.patch(error_on_recompile=step > 0):
            out, _ = model(x[:steps])  # (T, B, O)
            loss = ((out.mean(0) - y) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)  # two ranks share the machine's cores
    dist.init_process_group("gloo")  # from the environment torchrun sets
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = batch()
    share = BATCH // world
    x, y = x[:, rank * share : (rank + 1) * share], y[rank * share : (rank + 1) * share]
    variants = {
        "eager": lambda model: DistributedDataParallel(model),
        "compiled": lambda model: DistributedDataParallel(lifexport.compile(model)),
    }
    for name, wrap in variants.items():
        model = build()
        train(wrap(model), x, y)
        torch.save(model.state_dict(), out_dir / f"{name}-rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""The table of the model's parts printed when a fit starts (``callbacks.model_summary``).

Lightning's own summary lists the LightningModule's metric objects (0 parameters each) next to the
network and a FLOPs column of zeros unless the module sets ``example_input_array``. This one lists
the network's parts to ``max_depth``, says which are frozen or in eval mode only when some are,
and ends with one line of totals.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelSummary
from pytorch_lightning.utilities.model_summary import get_human_readable_count
from torch import nn
from torchmetrics import Metric

from glassworks.validation import ConfigError


@dataclass(frozen=True)
class ModelRow:
    name: str        # dotted path from the LightningModule: model.blocks
    kind: str        # class name
    params: int
    trainable: int
    training: bool   # train() or eval() mode


def model_rows(module: nn.Module, max_depth: int) -> list[ModelRow]:
    """`module`'s submodules down to `max_depth` dots, in definition order; metric objects (and
    whatever they hold) are left out. A row's counts include its children's."""
    metrics = tuple(f"{name}." for name, child in module.named_modules() if name and isinstance(child, Metric))
    rows: list[ModelRow] = []
    for name, child in module.named_modules():
        if not name or name.count(".") >= max_depth or f"{name}.".startswith(metrics):
            continue
        params = list(child.parameters())
        rows.append(ModelRow(name, type(child).__name__, sum(p.numel() for p in params),
                             sum(p.numel() for p in params if p.requires_grad), child.training))
    return rows


def _count(n: int) -> str:
    return get_human_readable_count(n).strip()  # Lightning pads "0" to "0  " for its columns


def totals_line(module: nn.Module) -> str:
    """`Params: 94.5 K trainable, 0 frozen, 94.5 K in all (0.38 MB)`."""
    params = list(module.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    megabytes = sum(p.numel() * p.element_size() for p in params) / 1e6
    return (f"Params: {_count(trainable)} trainable, {_count(total - trainable)} frozen, "
            f"{_count(total)} in all ({megabytes:.2f} MB)")


class ModelTable(ModelSummary):
    """Prints :func:`model_rows` as a table and :func:`totals_line` when a fit starts, on rank 0."""

    def __init__(self, max_depth: int = 2) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
            raise ConfigError("max_depth", f"must be an integer >= 0, got {max_depth!r}")
        super().__init__(max_depth=max_depth)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        from rich import get_console
        from rich.table import Table

        rows = model_rows(pl_module, self._max_depth)
        frozen = any(r.trainable < r.params for r in rows)
        in_eval = any(not r.training for r in rows)
        table = Table(header_style="bold magenta")
        table.add_column("Name", no_wrap=True)
        table.add_column("Type")
        table.add_column("Params", justify="right")
        if frozen:
            table.add_column("Trainable", justify="right")
        if in_eval:
            table.add_column("Mode")
        for row in rows:
            cells = [row.name, row.kind, _count(row.params)]
            cells += [_count(row.trainable)] if frozen else []
            cells += ["train" if row.training else "eval"] if in_eval else []
            table.add_row(*cells)
        console = get_console()
        console.print(table)
        console.print(totals_line(pl_module))

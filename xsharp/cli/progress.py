"""Training progress for people: a rich bar per phase on a terminal, a line per epoch elsewhere."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars

from xsharp.algos.training import Progress


def _info(e: Progress) -> str:
    loss = "recon" if e.phase == "pretrain" else "loss"
    parts = [f"epoch {e.epoch}/{e.epochs}", f"{loss} {e.loss:.4f}", f"{e.samples_per_second:,.0f} samples/s"]
    if e.val_accuracy is not None:
        parts.append(f"val acc {100 * e.val_accuracy:.2f}%")
    return " · ".join(parts)


class TrainingProgress:
    """Callable reporter: pass it as ``report=``; use as a context manager around training."""

    def __init__(self, console: Console):
        self.console = console
        self.live = console.is_terminal
        self.bars = Bars(
            SpinnerColumn(),
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self.tasks: dict[tuple, int] = {}

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        self.bars.__exit__(*exc)

    def status(self, message: str) -> None:
        self.console.print(f"[dim]· {escape(message)}[/]")

    def __call__(self, e: Progress) -> None:
        key = (e.phase, e.layer)
        if key not in self.tasks:
            if e.phase == "pretrain":
                desc = f"pretrain layer {e.layer + 1} ({e.layer_kind})"
            else:
                desc = "fine-tune"
            self.tasks[key] = self.bars.add_task(desc, total=e.steps, info="")
        task = self.tasks[key]
        self.bars.update(task, completed=e.step, info=_info(e))
        if not self.live and e.epoch_end:
            label = f"pretrain layer {e.layer + 1} ({e.layer_kind})" if e.phase == "pretrain" else "fine-tune"
            self.console.print(f"{label}: {_info(e)}", highlight=False, markup=False)

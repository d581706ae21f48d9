"""`xsharp data`: import a source once into a dataset, list datasets, look at one, remove one.

These work on this machine's catalog (``$XSHARP_DATASETS``, default
``~/.local/share/xsharp/datasets``); a spec then says ``data: {dataset: NAME}``. The job
service keeps its own catalog: ``POST /v1/datasets`` and the console's Datasets page.
"""

from __future__ import annotations

import contextlib
import json
import time
from enum import Enum
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from xsharp.algos import datasets
from xsharp.cluster import runtime
from xsharp.data import samples
from xsharp.data.catalog import Catalog, DatasetRef, local_owner
from xsharp.data.importer import ImportOptions, import_dataset, infer_format, needs_ray

from .common import EXIT_FAILED, Output, err, fail, out, unclipped
from .user_errors import user_errors

app = typer.Typer(help="Import your own data once (image or audio folders, tables, text), then name it in a spec: data: {dataset: NAME}.", no_args_is_help=True)


class Resize(str, Enum):
    squash = "squash"
    crop = "crop"
    fill = "fill"


def _catalog(root: Path | None):
    return Catalog(root) if root is not None else Catalog.local()


CatalogOption = typer.Option(None, "--catalog", envvar="XSHARP_DATASETS", help="The catalog folder (default ~/.local/share/xsharp/datasets).")


@app.command("import")
def import_(
    source: str = typer.Argument(
        ...,
        metavar="SRC",
        help="A folder of class folders (images or audio; train/ val/ test/ inside are its split), a table (.csv[.gz|.bz2], .parquet), a text file (.csv, .jsonl, .parquet), any file `xsharp run` reads, or a bundled dataset's name.",
    ),
    name: str = typer.Option(..., "--name", "-n", help="The dataset's name (letters, digits, . _ -); importing a name again makes its next version."),
    fmt: str | None = typer.Option(None, "--format", "-f", help="images, audio, table or text (or a `data.format` name); default: from SRC."),
    size: str | None = typer.Option(None, "--size", help="Images: resize every image to HxW, e.g. 32x32 (default: all images must share one size)."),
    resize: Resize = typer.Option(Resize.squash, "--resize", help="Images: squash (ignore the aspect), crop (centre) or fill (pad)."),
    channels: int = typer.Option(3, "--channels", min=1, max=3, help="Images: 1 (grey) or 3 (RGB)."),
    sample_rate: int | None = typer.Option(None, "--sample-rate", min=1000, max=384000, help="Audio: resample to this rate (default 16000)."),
    duration: float | None = typer.Option(None, "--duration", min=0.001, max=3600, help="Audio: cut or pad to this many seconds (default 1)."),
    label_column: str | None = typer.Option(None, "--label-column", help="Tables and text: the label column (default 'label')."),
    text_column: str | None = typer.Option(None, "--text-column", help="Text: the text column (default 'text')."),
    feature_columns: list[str] | None = typer.Option(None, "--feature-column", help="Tables: a feature column (repeat; default: every column but the label)."),
    shard_mb: float = typer.Option(
        16.0, "--shard-mb", min=0.001, max=4096, help="Target shard size in MiB: a worker holds about four shards while it streams."
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable files and count them in the manifest (default: fail on the first)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", min=0, max=0.99, help="Share held out for test when SRC has no test/ split."),
    validation_fraction: float = typer.Option(
        0.1, "--validation-fraction", min=0, max=0.99, help="Share of the training rows held out for validation when SRC has no val/ split."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of the row order in the shards."),
    catalog: Path | None = CatalogOption,
    address: str | None = typer.Option(None, "--address", envvar="XSHARP_RAY_ADDRESS", help="Ray cluster to decode on (default: an embedded local Ray)."),
    output: Output = typer.Option(Output.text, "--output", "-o", help="text, or json: the manifest's summary."),
) -> None:
    """Convert SRC once into a dataset: decoded, resized rows in checksummed shards, and a manifest
    (classes, counts per class and split, shapes, the source's content hash).

    Folders are decoded in parallel in Ray tasks (every core, or every node with --address), with a
    progress bar. A bad file stops the import, naming it, unless --skip-bad.

    Example: xsharp data import photos/ --name photos --size 64x64 --resize crop
    """
    hw = None
    if size is not None:
        try:
            hw = tuple(int(v) for v in size.lower().split("x"))
            if len(hw) != 2 or not all(1 <= v <= 4096 for v in hw):
                raise ValueError
        except ValueError:
            raise fail(f"--size: expected HxW with each side in 1..4096, e.g. 32x32, got {size!r}") from None
    options = ImportOptions(
        fmt,
        hw,
        resize.value,
        channels if channels in (1, 3) else 3,
        sample_rate,
        duration,
        label_column,
        text_column,
        feature_columns or None,
        shard_mb,
        skip_bad,
        test_fraction,
        validation_fraction,
        seed,
    )
    if channels not in (1, 3):
        raise fail("--channels: 1 or 3")
    cat = _catalog(catalog)
    started = time.time()
    bars = Progress(
        SpinnerColumn(),
        TextColumn("importing {task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    task = bars.add_task("import", total=None, name=name, unit="")
    last = {"at": 0.0}

    def progress(p) -> None:
        bars.update(task, completed=p.done, total=p.total or None, unit=p.unit)
        now = time.time()
        if not err.is_terminal and now - last["at"] >= 5:
            last["at"] = now
            err.print(f"· {p.done:,}{f' of {p.total:,}' if p.total else ''} {p.unit}", highlight=False)

    with user_errors():
        if options.format is None and not Path(source).exists() and source not in datasets.NAMED:
            raise fail(f"{source}: no such file or folder, nor a bundled dataset ({', '.join(sorted(datasets.NAMED))})")
        if options.format is None and source not in datasets.NAMED:
            options.format = infer_format(Path(source))  # once: it says whether the import needs Ray, and the importer uses it
        try:
            with runtime.connect(address) if needs_ray(options.format) else contextlib.nullcontext(), bars:
                m = import_dataset(source, name, local_owner(), cat, options, progress=progress)
        except runtime.RuntimeConnectError as e:
            raise fail(str(e), EXIT_FAILED) from None
    seconds = time.time() - started
    if output is Output.json:
        out.print_json(json.dumps({**m.summary(), "seconds": seconds}))
        return
    _print_summary(m, cat)
    out.print(f"imported in {seconds:.1f} s; train on it with  data: {{dataset: {m.name}}}")


def _print_summary(m, cat) -> None:
    rows = {s: m.rows(s) for s in ("train", "val", "test")}
    out.print(
        f"[bold]{m.ref}[/] ({m.kind}): {rows['train']:,} train, {rows['val']:,} val, {rows['test']:,} test rows of shape {tuple(m.shape)} {m.dtype}; "
        f"{len(m.shards)} shards, {m.bytes / 2**20:.1f} MiB; {m.n_classes} classes"
    )
    if m.skipped:
        out.print(f"[yellow]{m.skipped} bad file(s) skipped[/], e.g. {', '.join(m.skipped_files[:3])}")
    out.print(
        f"source {m.source.get('path')} (sha256 {m.source.get('sha256', '')[:16]}…), created {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m.created))}"
    )
    out.print(f"folder {cat.path_of(m)}", markup=False)


@app.command("list")
def list_(catalog: Path | None = CatalogOption, output: Output = typer.Option(Output.text, "--output", "-o", help="text or json.")) -> None:
    """The datasets in the catalog, every version, with their rows and classes."""
    cat = _catalog(catalog)
    manifests = cat.manifests(local_owner())
    if output is Output.json:
        out.print_json(json.dumps([m.summary() for m in manifests]))
        return
    if not manifests:
        out.print(f"no datasets in {cat.root}; make one with: xsharp data import SRC --name NAME", markup=False)
        return
    table = Table("dataset", "kind", "train", "val", "test", "shape", "classes", "size", "created", title_justify="left")
    for m in manifests:
        table.add_row(
            f"{m.name}@{m.version}",
            m.kind,
            f"{m.rows('train'):,}",
            f"{m.rows('val'):,}",
            f"{m.rows('test'):,}",
            "x".join(map(str, m.shape)) or "text",
            str(m.n_classes),
            f"{m.bytes / 2**20:.1f} MiB",
            time.strftime("%Y-%m-%d", time.localtime(m.created)),
        )
    out.print(unclipped(table, keep=24))


@app.command("show")
def show(
    name: str = typer.Argument(..., metavar="NAME[@VERSION]", help="The dataset (default: its newest version)."),
    samples_out: Path | None = typer.Option(
        None, "--samples", help="Write the sample thumbnails here (a PNG; default NAME-vN-samples.png in the current folder, images only)."
    ),
    per_class: int = typer.Option(4, "--per-class", min=1, max=16, help="Samples of each class."),
    catalog: Path | None = CatalogOption,
    output: Output = typer.Option(Output.text, "--output", "-o", help="text, or json (the manifest's summary)."),
) -> None:
    """Counts per class and split, the source and its hash, and a few samples: a PNG of thumbnails for images, the first values of other rows."""
    cat = _catalog(catalog)
    with user_errors():
        m = cat.find(name, local_owner())
        if output is Output.json:
            out.print_json(json.dumps(m.summary()))
            return
        _print_summary(m, cat)
        table = Table("class", "train", "val", "test", title_justify="left")
        for i, c in enumerate(m.classes[:200]):
            table.add_row(c, *(f"{m.counts.get(s, [0] * m.n_classes)[i]:,}" for s in ("train", "val", "test")))
        out.print(unclipped(table))
        if m.n_classes > 200:
            out.print(f"… and {m.n_classes - 200} more classes (-o json lists them all)")
        picked = samples.pick(cat.path_of(m), m, "train", min(samples.MAX_SAMPLES, per_class * max(1, m.n_classes)))
        if picked and samples.is_image(m, picked[0].x):
            path = samples_out or Path(f"{m.name}-v{m.version}-samples.png")
            path.write_bytes(samples.contact_sheet(picked))
            out.print(f"samples: {path} ({len(picked)} thumbnails, a row per class)", markup=False)
        else:
            for s in picked[: 4 * per_class]:
                out.print(f"  [{s.cls}] {json.dumps(samples.json_row(s.x), ensure_ascii=False)[:160]}", markup=False)


@app.command("delete")
def delete(
    name: str = typer.Argument(..., metavar="NAME[@VERSION]", help="The dataset; without @VERSION every version goes."),
    catalog: Path | None = CatalogOption,
) -> None:
    """Remove a dataset (one version, or all). Jobs that trained on it keep their models."""
    cat = _catalog(catalog)
    with user_errors():
        ref = DatasetRef.parse(name, "NAME")
        gone = cat.delete(ref.owner or local_owner(), ref.name, ref.version)
    if not gone:
        raise fail(f"no dataset {name} in {cat.root}")
    out.print(f"deleted {ref.name} version(s) {', '.join(map(str, gone))}")

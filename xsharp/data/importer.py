"""A source converted once into a dataset: decoded rows in checksummed shards and a manifest.

Folders of images or audio are decoded on the cluster: one Ray task a shard decodes, resizes
and writes its files where it runs (every core of every node, nothing funnelled through the
caller). Ray Data's ``map`` over the same shard jobs was measured 1.8-2.9x slower on 2 cores
(bench/data.py import), so the import uses Ray tasks directly. Tables and text files are read in a
single pass of row chunks here (one file is one sequential read) and cut into shards. Any other
format (``.npz``, IDX, the bundled sets) is loaded whole, then cut.

Rows are shuffled within each split before they are cut (seeded), so any window of shards holds
every class in its share. The source's content hash is the SHA-256 of every file's relative
path and SHA-256, in path order: the same files give the same hash wherever they sit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xsharp.algos import datasets
from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .catalog import Catalog, DatasetRef
from .manifest import SPLITS, Manifest, ShardInfo
from .shards import write_shard

MiB = 1 << 20
MAX_SKIPPED_NAMED = 20  # skipped files the manifest names (it counts all of them)


@dataclass
class ImportOptions:
    format: str | None = None  # images | audio | table | text | any datasets.FORMATS name; None: from the path
    size: tuple[int, int] | None = None  # images: (H, W)
    resize: str = "squash"  # images: squash | crop | fill
    channels: int = 3  # images: 1 or 3
    sample_rate: int | None = None  # audio
    duration: float | None = None  # audio
    label_column: str | None = None  # tables, text
    text_column: str | None = None  # text
    feature_columns: list[str] | None = None  # tables
    shard_mb: float = 16.0
    skip_bad: bool = False
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    seed: int = 0

    def reader_options(self) -> dict:
        keys = {"images": ("size", "resize", "channels"), "audio": ("sample_rate", "duration"),
                "table": ("label_column", "feature_columns"), "text": ("label_column", "text_column")}
        return {k: getattr(self, k) for k in keys.get(self.format or "", ()) if getattr(self, k) is not None}


@dataclass
class ImportProgress:
    done: int
    total: int  # 0: not known yet (a table read as a stream)
    unit: str  # "files" or "rows"


@dataclass
class _Built:
    """What the readers of one kind hand to the manifest."""

    kind: str
    classes: list[str]
    counts: dict[str, list[int]]
    shape: list[int]
    dtype: str
    shards: list[ShardInfo]
    source_sha256: str
    files: int
    skipped: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def infer_format(path: Path, guard: FileGuard = ANYWHERE) -> str | None:
    """The import format a path's name or contents say (folders of class folders: images or
    audio; a ``.csv`` is text unless ``format: table`` says otherwise)."""
    fmt = datasets.format_of(path, guard)
    return "text" if fmt == "csv" else fmt


def needs_ray(fmt: str | None) -> bool:
    """Whether importing this format runs on the cluster (folders are decoded in Ray tasks)."""
    return fmt in ("images", "audio")


def import_dataset(
    source: str | Path,
    name: str,
    owner: str,
    catalog: Catalog,
    options: ImportOptions,
    *,
    guard: FileGuard = ANYWHERE,
    progress: Callable[[ImportProgress], None] | None = None,
) -> Manifest:
    """Import ``source`` as the next version of ``owner/name`` in ``catalog``.

    ``source`` is a path (read through ``guard``) or a bundled dataset's name. Folder imports
    run in Ray tasks: Ray must be initialised. Raises DataError (its words are safe to show)."""
    DatasetRef.parse(f"{owner}/{name}", "name")
    if not 0 < options.shard_mb <= 4096:
        raise DataError(f"shard_mb: must lie in (0, 4096], got {options.shard_mb}")
    report = progress or (lambda p: None)
    bundled = isinstance(source, str) and source in datasets.NAMED
    if bundled:
        src, fmt = None, "bundled"
    else:
        src = guard.as_given(source, "path")
        fmt = options.format or infer_format(src, guard)
        if fmt is None:
            raise DataError(f"{source}: cannot tell the format; set format to one of images, audio, table, text, {', '.join(sorted(datasets.FORMATS))}")
    options = dataclasses.replace(options, format=fmt)
    staging = catalog.staging(owner, name)

    def say(p: ImportProgress) -> None:
        Catalog.touch(staging)  # alive: a sweep of stale staging folders passes this one by
        report(p)

    try:
        if fmt in ("images", "audio"):
            built = _import_folder(src, fmt, options, staging, guard, say)
        elif fmt in ("table", "text"):
            built = _import_rows(src, fmt, options, staging, guard, say)
        else:
            built = _import_arrays(source if bundled else src, None if bundled else fmt, options, staging, guard, say)
        manifest = Manifest(
            name=name, owner=owner, version=0, kind=built.kind, classes=built.classes, counts=built.counts, shape=built.shape,
            dtype=built.dtype, shards=built.shards, source={"path": str(source) if bundled else str(src.absolute()), "sha256": built.source_sha256, "files": built.files},
            options={k: list(v) if isinstance(v, tuple) else v for k, v in options.reader_options().items()}, shard_bytes=int(options.shard_mb * MiB),
            skipped=len(built.skipped), skipped_files=built.skipped[:MAX_SKIPPED_NAMED], columns=built.columns,
        )
        if sum(manifest.rows(s) for s in SPLITS) == 0:
            raise DataError(f"{source}: no rows to import")
        return catalog.commit(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- splits
def _assign_splits(labels: np.ndarray, given: np.ndarray | None, options: ImportOptions) -> dict[str, np.ndarray]:
    """Row indices of each split: the source's own (val taken from train when it has none), or
    a seeded stratified split, the one ``datasets.load`` makes for the same rows and seed."""
    idx = np.arange(len(labels))
    if given is not None:
        parts = {s: idx[given == s] for s in SPLITS}
    else:
        idx = np.random.default_rng(options.seed).permutation(len(labels))  # as datasets.load orders rows before it splits
        train, _, test, _ = datasets._split(idx, labels[idx], options.test_fraction, options.seed)
        parts = {"train": train, "val": idx[:0], "test": test}
    if len(parts["val"]) == 0 and options.validation_fraction > 0 and len(parts["train"]) > 1:
        train, _, val, _ = datasets._split(parts["train"], labels[parts["train"]], options.validation_fraction, options.seed + 1)
        parts["train"], parts["val"] = train, val
    rng = np.random.default_rng(options.seed)
    return {s: rows[rng.permutation(len(rows))] for s, rows in parts.items()}  # shards mix the classes


def _shard_rows(row_bytes: int, shard_mb: float) -> int:
    return max(1, int(shard_mb * MiB // max(row_bytes, 1)))


# --------------------------------------------------------------------------- folders, on the cluster
def shard_jobs(parts: dict[str, np.ndarray], files: list[str], labels: np.ndarray, per_shard: int, cpus: int) -> list[dict]:
    """The shards of each split as jobs of files: at most ``per_shard`` rows each, their count
    rounded up to a multiple of the cluster's cores (rows spread evenly) so that no core idles
    while a last shard decodes alone."""
    jobs = []
    for split in SPLITS:
        rows = parts[split]
        if not len(rows):
            continue
        k = math.ceil(len(rows) / per_shard)
        if len(rows) >= cpus * 64:  # a few rows are not worth spreading
            k = -(-k // cpus) * cpus
        for i, chosen in enumerate(np.array_split(rows, k)):
            jobs.append({"split": split, "index": i, "files": [files[r] for r in chosen], "labels": labels[chosen].tolist()})
    return jobs


def run_shard_jobs(jobs: list[dict], kwargs: dict, cpus: int):
    """Each job's result as it finishes: one Ray task a shard (one core each, anywhere in the
    cluster), at most two a core in flight. A task whose worker died is retried."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=3)(write_folder_shard)
    waiting, pending = list(jobs), []
    while waiting or pending:
        while waiting and len(pending) < 2 * cpus:
            pending.append(task.remote(waiting.pop(0), **kwargs))
        finished, pending = ray.wait(pending, num_returns=1)
        try:
            yield ray.get(finished[0])
        except ray.exceptions.RayError as e:
            for ref in pending:
                ray.cancel(ref)
            raise DataError(f"the import's shard task failed ({type(e).__name__}); the server's log has the details") from None

@dataclass
class _Decoded:
    x: np.ndarray
    sha256: str  # of the file's bytes


def _decoder(kind: str, options: ImportOptions) -> Callable[[Path, FileGuard], _Decoded]:
    """One file of a folder decoded, with its content hash. An image is read once: its hash and
    its pixels come from the same bytes."""
    if kind == "images":
        from .images import ImageOptions, decode_image_bytes

        o = ImageOptions(tuple(options.size) if options.size else None, options.resize, options.channels)

        def image(path: Path, guard: FileGuard) -> _Decoded:
            try:
                with guard.open(path) as f:
                    data = f.read()
            except OSError as e:
                raise DataError(f"{path}: not a readable image ({datasets._why(e)})") from None
            return _Decoded(decode_image_bytes(data, o, path), hashlib.sha256(data).hexdigest())

        return image
    from .audio_folder import DEFAULT_DURATION, DEFAULT_RATE, decode_audio

    rate, duration = options.sample_rate or DEFAULT_RATE, options.duration or DEFAULT_DURATION
    return lambda path, guard: _Decoded(decode_audio(path, rate, duration, guard), _file_hash(path, guard))


def _file_hash(path: Path, guard: FileGuard) -> str:
    h = hashlib.sha256()
    with guard.open(path) as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def write_folder_shard(job: dict, kind: str, options: ImportOptions, staging: str, guard: FileGuard, root: str, shape: list[int], n_classes: int) -> dict:
    """One shard of a folder import (runs in a Ray task): decode, write, report. A failure
    comes back as the result's ``error`` (words safe to show), never as a task's traceback."""
    try:
        return _folder_shard(job, kind, options, staging, guard, root, shape, n_classes)
    except DataError as e:
        return {"error": str(e)}
    except Exception as e:  # a full disk, a decoder's own bug: its words may quote the file
        where = f"shard {job['split']}-{job['index']:05d} of the import"
        return {"error": f"{where}: {type(e).__name__}" + (f" ({e.strerror})" if isinstance(e, OSError) and e.strerror else "")}


def _relative(path: str, root: str) -> str:
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root))


def _folder_shard(job: dict, kind: str, options: ImportOptions, staging: str, guard: FileGuard, root: str, shape: list[int], n_classes: int) -> dict:
    decode = _decoder(kind, options)
    rows, labels, skipped, hashes = [], [], [], []
    for path, label in zip(job["files"], job["labels"]):
        try:
            decoded = decode(Path(path), guard)
            a = decoded.x
            if list(a.shape) != shape:
                raise DataError(f"{path}: decodes to shape {list(a.shape)}, the other files to {shape}; set size to resize every image")
            hashes.append([_relative(path, root), decoded.sha256])
        except DataError as e:
            if not options.skip_bad:
                return {"error": str(e)}
            skipped.append(_relative(path, root))
            continue
        rows.append(a)
        labels.append(label)
    dtype = np.uint8 if kind == "images" else np.float32
    x = np.stack(rows).astype(dtype, copy=False) if rows else np.zeros((0, *shape), dtype)
    y = np.asarray(labels, np.int64)
    info = write_shard(Path(staging), job["split"], job["index"], x, y) if len(y) else None
    return {"split": job["split"], "index": job["index"], "info": info, "counts": np.bincount(y, minlength=n_classes).tolist(),
            "skipped": skipped, "hashes": hashes, "files": len(job["files"])}


def _import_folder(root: Path, kind: str, options: ImportOptions, staging: Path, guard: FileGuard, say) -> _Built:
    import ray

    from .audio_folder import DEFAULT_DURATION, DEFAULT_RATE
    from .folders import check_row_bytes

    size = tuple(options.size) if options.size else None
    check_row_bytes(kind, size, options.channels, options.sample_rate or DEFAULT_RATE, options.duration or DEFAULT_DURATION)  # before any file is read
    if kind == "images":
        from .images import list_image_folder as lister
    else:
        from .audio_folder import list_audio_folder as lister
    listing = lister(root, guard)
    files = [str(f) for f in listing.files]
    labels = np.asarray(listing.labels, np.int64)
    parts = _assign_splits(labels, listing.splits, options)
    decode = _decoder(kind, options)
    shape = None
    for path in files:  # one row's shape (and so a shard's row count) from the first readable file
        try:
            shape = list(decode(Path(path), guard).x.shape)
            break
        except DataError:
            if not options.skip_bad:
                raise
    if shape is None:
        raise DataError(f"{root}: no readable {kind} files")
    if not ray.is_initialized():
        raise RuntimeError("import_dataset needs Ray: call it inside xsharp.cluster.runtime.connect()")
    itemsize = 1 if kind == "images" else 4
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    jobs = shard_jobs(parts, files, labels, _shard_rows(int(np.prod(shape)) * itemsize, options.shard_mb), cpus)
    say(ImportProgress(0, len(files), "files"))
    results, done = [], 0
    for r in run_shard_jobs(jobs, dict(kind=kind, options=options, staging=str(staging), guard=guard, root=str(root), shape=shape,
                                       n_classes=len(listing.classes)), cpus):
        if "error" in r:
            raise DataError(r["error"])
        results.append(r)
        done += r["files"]
        say(ImportProgress(done, len(files), "files"))
    results.sort(key=lambda r: (SPLITS.index(r["split"]), r["index"]))
    counts = {s: np.zeros(len(listing.classes), np.int64) for s in SPLITS}
    shards, skipped, hashes = [], [], []
    for r in results:
        counts[r["split"]] += r["counts"]
        skipped += r["skipped"]
        hashes += r["hashes"]
        if r["info"] is not None:
            shards.append(r["info"])
    hashes.sort()
    source = hashlib.sha256("\n".join(f"{p}\t{h}" for p, h in hashes).encode()).hexdigest()
    return _Built(kind, list(listing.classes), {s: c.tolist() for s, c in counts.items()}, shape,
                  "uint8" if kind == "images" else "float32", shards, source, len(files), sorted(skipped))


# --------------------------------------------------------------------------- tables and text, one pass
class _LabelIndex:
    """Label values to class indices as rows stream by: non-negative integers are their own
    index; other values are numbered in order of first appearance."""

    def __init__(self, where: str):
        self.where, self.names, self.index, self.integers = where, [], {}, None

    def __call__(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        integers = np.issubdtype(values.dtype, np.integer) and (values.size == 0 or values.min() >= 0)
        if self.integers is None and values.size:
            self.integers = bool(integers)
        if self.integers:
            if not integers:
                raise DataError(f"{self.where}: the label column mixes integer and other values")
            top = int(values.max()) + 1 if values.size else 0
            if top > datasets.MAX_CLASSES:
                raise DataError(f"{self.where}: a label of {top - 1}, over the cap of {datasets.MAX_CLASSES} classes (is the label column the right column?)")
            self.names += [str(i) for i in range(len(self.names), top)]
            return values.astype(np.int64)
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values.tolist()):
            key = "" if v is None else str(v)
            if key not in self.index:
                if len(self.index) >= datasets.MAX_CLASSES:
                    raise DataError(f"{self.where}: over {datasets.MAX_CLASSES} distinct labels (is the label column the right column?)")
                if len(key) > datasets.MAX_CLASS_NAME:
                    raise DataError(f"{self.where}: a label of {len(key)} characters, over the cap of {datasets.MAX_CLASS_NAME}")
                self.index[key] = len(self.names)
                self.names.append(key)
            out[i] = self.index[key]
        return out


def _import_rows(path: Path, kind: str, options: ImportOptions, staging: Path, guard: FileGuard, say) -> _Built:
    chunk_rows = 8192
    reader = None
    if kind == "table":
        from .tables import _TableReader

        reader = _TableReader(path, options.label_column, options.feature_columns, guard, chunk_rows)  # .columns: the feature columns' names
        chunks = iter(reader)
    else:
        from .text import iter_text

        chunks = iter_text(path, None, options.label_column, options.text_column, guard, chunk_rows)
    labels = _LabelIndex(str(path))
    pending: dict[str, list] = {s: [] for s in SPLITS}  # (x, y, bytes of each row) not yet in a shard
    shards: list[ShardInfo] = []
    index = {s: 0 for s in SPLITS}
    counts: dict[str, dict[int, int]] = {s: {} for s in SPLITS}
    shape, dtype, done = None, None, 0
    shard_bytes = int(options.shard_mb * MiB)

    def flush(split: str, final: bool) -> None:
        """Write whole shards (by bytes: rows of text vary) while enough rows wait, or all at the end."""
        while pending[split] and (final or sum(int(b.sum()) for _, _, b in pending[split]) >= shard_bytes):
            x = np.concatenate([x for x, _, _ in pending[split]])
            y = np.concatenate([y for _, y, _ in pending[split]])
            sizes = np.concatenate([b for _, _, b in pending[split]])
            take = max(1, int(np.searchsorted(np.cumsum(sizes), shard_bytes, side="right")))
            shards.append(write_shard(staging, split, index[split], x[:take], y[:take]))
            index[split] += 1
            pending[split] = [(x[take:], y[take:], sizes[take:])] if take < len(y) else []

    for chunk in chunks:
        y = labels(chunk.y)
        x = chunk.x
        if shape is None:
            shape, dtype = list(x.shape[1:]), str(x.dtype)
        elif list(x.shape[1:]) != shape or str(x.dtype) != dtype:
            raise DataError(f"{path}: rows from row {chunk.first_row} on have shape {list(x.shape[1:])} {x.dtype}, earlier rows {shape} {dtype}")
        u = np.random.default_rng([options.seed, chunk.first_row]).random(len(y))  # a row's split: a seeded draw keyed by its place
        test = u < options.test_fraction
        val = ~test & (u < options.test_fraction + (1 - options.test_fraction) * options.validation_fraction)
        for split, mask in (("train", ~test & ~val), ("val", val), ("test", test)):
            if mask.any():
                pending[split].append((x[mask], y[mask], _row_bytes(x[mask])))
                for c, n in zip(*np.unique(y[mask], return_counts=True)):
                    counts[split][int(c)] = counts[split].get(int(c), 0) + int(n)
            flush(split, False)
        done += len(y)
        say(ImportProgress(done, 0, "rows"))
    for split in SPLITS:
        flush(split, True)
    if shape is None:
        raise DataError(f"{path}: no rows")
    n = len(labels.names)
    source = _file_hash(path, guard)
    return _Built(kind, labels.names, {s: [counts[s].get(c, 0) for c in range(n)] for s in SPLITS}, shape, dtype, shards, source, 1,
                  columns=list(reader.columns) if reader is not None else [])


def _row_bytes(x: np.ndarray) -> np.ndarray:
    """About what each row takes in a shard: its numbers, or its text's characters."""
    if x.dtype != object:
        return np.full(len(x), max(1, x[:1].nbytes), np.int64)
    rows = x.reshape(len(x), -1)
    return np.array([sum(len(v) if isinstance(v, str) else 8 for v in row) + 8 for row in rows.tolist()], np.int64)


# --------------------------------------------------------------------------- anything datasets.load reads
def _uint8_if_exact(x: np.ndarray) -> np.ndarray:
    """Grey levels read as float32 / 255 are stored as the bytes they came from (4x smaller),
    when that gives back exactly the same floats."""
    if x.dtype != np.float32 or x.size == 0 or x.min() < 0 or x.max() > 1:
        return x
    u = np.rint(x * 255.0).astype(np.uint8)
    return u if np.array_equal(u.astype(np.float32) / 255.0, x) else x


def _import_arrays(source: Any, fmt: str | None, options: ImportOptions, staging: Path, guard: FileGuard, say) -> _Built:
    extra: dict[str, Any] = {k: getattr(options, k) for k in ("sample_rate", "duration", "label_column", "text_column") if getattr(options, k) is not None}
    if fmt is None:
        data = datasets.load(source, test_fraction=options.test_fraction, validation_fraction=options.validation_fraction, seed=options.seed, **extra)
        source_hash = hashlib.sha256(f"bundled:{source}".encode()).hexdigest()
    else:
        data = datasets.load(path=source, format=fmt, test_fraction=options.test_fraction, validation_fraction=options.validation_fraction,
                             seed=options.seed, guard=guard, **extra)
        source_hash = _file_hash(source, guard) if Path(source).is_file() else hashlib.sha256(str(source).encode()).hexdigest()
    splits = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
    stored = {s: (_uint8_if_exact(x), y) for s, (x, y) in splits.items()}
    uint8 = all(x.dtype == np.uint8 or len(x) == 0 for x, _ in stored.values())
    if not uint8:
        stored = splits
    x0 = stored["train"][0]
    per_shard = _shard_rows(max(1, x0[:1].nbytes), options.shard_mb)
    shards, total, done = [], sum(len(y) for _, y in splits.values()), 0
    for split, (x, y) in stored.items():
        for k in range(math.ceil(len(y) / per_shard)):
            part = slice(k * per_shard, (k + 1) * per_shard)
            shards.append(write_shard(staging, split, k, x[part], y[part]))
            done += len(y[part])
            say(ImportProgress(done, total, "rows"))
    counts = {s: np.bincount(y, minlength=data.n_classes).tolist() for s, (_, y) in splits.items()}
    kind = "text" if x0.dtype == object else "arrays"
    return _Built(kind, list(data.classes), counts, list(x0.shape[1:]), "uint8" if uint8 else str(x0.dtype), shards, source_hash, 1)

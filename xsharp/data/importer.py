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
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from .array_import import import_arrays
from .audio_folder import DEFAULT_DURATION, DEFAULT_RATE, list_audio_folder
from .catalog import Catalog, DatasetRef
from .folder_shard import decoder, write_folder_shard
from .folders import check_row_bytes
from .formats import FORMATS, format_of
from .images import list_image_folder
from .import_plan import BuiltImport, ImportOptions, ImportProgress, MiB, assign_splits, shard_rows
from .manifest import SPLITS, Manifest
from .named import NAMED
from .row_import import import_rows

# the names bench/data.py reaches for (it swaps run_shard_jobs, and runs a shard's own function)
_assign_splits, _decoder, _shard_rows = assign_splits, decoder, shard_rows

__all__ = ["ImportOptions", "ImportProgress", "import_dataset", "infer_format", "needs_ray", "run_shard_jobs", "shard_jobs", "write_folder_shard"]

MAX_SKIPPED_NAMED = 20  # skipped files the manifest names (it counts all of them)


def infer_format(path: Path, guard: FileGuard = ANYWHERE) -> str | None:
    """The import format a path's name or contents say (folders of class folders: images or
    audio; a ``.csv`` is text unless ``format: table`` says otherwise)."""
    fmt = format_of(path, guard)
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
    bundled = isinstance(source, str) and source in NAMED
    if bundled:
        src, fmt = None, "bundled"
    else:
        src = guard.as_given(source, "path")
        fmt = options.format or infer_format(src, guard)
        if fmt is None:
            raise DataError(f"{source}: cannot tell the format; set format to one of images, audio, table, text, {', '.join(sorted(FORMATS))}")
    options = dataclasses.replace(options, format=fmt)
    staging = catalog.staging(owner, name)

    def say(p: ImportProgress) -> None:
        Catalog.touch(staging)  # alive: a sweep of stale staging folders passes this one by
        report(p)

    try:
        if fmt in ("images", "audio"):
            built = _import_folder(src, fmt, options, staging, guard, say)
        elif fmt in ("table", "text"):
            built = import_rows(src, fmt, options, staging, guard, say)
        else:
            built = import_arrays(source if bundled else src, None if bundled else fmt, options, staging, guard, say)
        manifest = Manifest(
            name=name,
            owner=owner,
            version=0,
            kind=built.kind,
            classes=built.classes,
            counts=built.counts,
            shape=built.shape,
            dtype=built.dtype,
            shards=built.shards,
            source={"path": str(source) if bundled else str(src.absolute()), "sha256": built.source_sha256, "files": built.files},
            options={k: list(v) if isinstance(v, tuple) else v for k, v in options.reader_options().items()},
            shard_bytes=int(options.shard_mb * MiB),
            skipped=len(built.skipped),
            skipped_files=built.skipped[:MAX_SKIPPED_NAMED],
            columns=built.columns,
        )
        if sum(manifest.rows(s) for s in SPLITS) == 0:
            raise DataError(f"{source}: no rows to import")
        return catalog.commit(staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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


def _import_folder(root: Path, kind: str, options: ImportOptions, staging: Path, guard: FileGuard, say: Callable[[ImportProgress], None]) -> BuiltImport:
    import ray  # only a folder import needs the cluster: local mode never imports ray

    size = tuple(options.size) if options.size else None
    check_row_bytes(kind, size, options.channels, options.sample_rate or DEFAULT_RATE, options.duration or DEFAULT_DURATION)  # before any file is read
    listing = (list_image_folder if kind == "images" else list_audio_folder)(root, guard)
    files = [str(f) for f in listing.files]
    labels = np.asarray(listing.labels, np.int64)
    parts = assign_splits(labels, listing.splits, options)
    decode = decoder(kind, options)
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
    jobs = shard_jobs(parts, files, labels, shard_rows(int(np.prod(shape)) * itemsize, options.shard_mb), cpus)
    say(ImportProgress(0, len(files), "files"))
    results, done = [], 0
    for r in run_shard_jobs(
        jobs, dict(kind=kind, options=options, staging=str(staging), guard=guard, root=str(root), shape=shape, n_classes=len(listing.classes)), cpus
    ):
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
    return BuiltImport(
        kind,
        list(listing.classes),
        {s: c.tolist() for s, c in counts.items()},
        shape,
        "uint8" if kind == "images" else "float32",
        shards,
        source,
        len(files),
        sorted(skipped),
    )

"""What an imported dataset holds: its manifest (``manifest.json`` beside its shards).

A dataset is made once by ``xsharp data import`` (or ``POST /v1/datasets``) and never changes;
importing the same name again makes a new version. The manifest lists the classes, the rows of
each class in each split, one row's shape and stored type, every shard with its row count and
SHA-256, where the rows came from (the source path and a hash of its content) and when.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from xsharp.fileguard import DataError
from xsharp.files import write_atomic

SPLITS = ("train", "val", "test")
KINDS = ("images", "audio", "table", "text", "arrays")
MANIFEST = "manifest.json"
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # an owner's or a dataset's name (the catalog's folder names)
MAX_DIMS = 8
_SHARD_FILE = re.compile(r"shards/(train|val|test)-[0-9]{5}\.npz")
_NAME = re.compile(NAME)


def _count(v) -> bool:
    """A non-negative int (a bool or a float is not one)."""
    return type(v) is int and v >= 0


def _problem(m: Manifest) -> str | None:
    """What makes a parsed manifest unusable (its fields come from a file: never trust their types)."""
    for key in ("name", "owner"):
        v = getattr(m, key)
        if not isinstance(v, str) or not _NAME.fullmatch(v) or v in (".", ".."):
            return f"its {key} is not a dataset name"
    if not _count(m.version) or m.version < 1:
        return "its version is not a whole number >= 1"
    if m.kind not in KINDS:
        return "unknown kind"
    if not isinstance(m.classes, list) or not all(isinstance(c, str) for c in m.classes):
        return "its classes are not a list of names"
    if not isinstance(m.shape, list) or len(m.shape) > MAX_DIMS or not all(_count(d) for d in m.shape):
        return f"its shape is not a list of at most {MAX_DIMS} non-negative whole numbers"
    if not isinstance(m.counts, dict):
        return "its counts are not a mapping of split to rows of each class"
    for split, per_class in m.counts.items():
        if split not in SPLITS:
            return f"its counts name an unknown split {split[:32]!r}" if isinstance(split, str) else "its counts name an unknown split"
        if not isinstance(per_class, list) or len(per_class) != len(m.classes) or not all(_count(n) for n in per_class):
            return f"its {split} counts are not {len(m.classes)} non-negative whole numbers (one per class)"
    for s in m.shards:
        if s.split not in SPLITS:
            return "unknown split"
        match = _SHARD_FILE.fullmatch(s.file) if isinstance(s.file, str) else None
        if match is None or match[1] != s.split:
            return f"a {s.split} shard's file is not shards/{s.split}-NNNNN.npz"
        if not _count(s.rows) or not _count(s.bytes) or not isinstance(s.sha256, str):
            return "a shard's rows, bytes or sha256 are malformed"
    return None


@dataclass(frozen=True)
class ShardInfo:
    split: str  # train | val | test
    file: str  # relative to the dataset's version folder, e.g. "shards/train-00003.npz"
    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    name: str
    owner: str
    version: int
    kind: str  # one of KINDS
    classes: list[str]
    counts: dict[str, list[int]]  # split -> rows of each class
    shape: list[int]  # one row's shape ([] for a text row)
    dtype: str  # the stored type of a row: uint8 (images, read as float32 / 255), float32, object (text, tables with strings)
    shards: list[ShardInfo]
    source: dict  # {"path": ..., "sha256": content hash of the source, "files": n}
    options: dict = field(default_factory=dict)  # the reader options it was made with (size, resize, channels ...)
    shard_bytes: int = 0  # the target size of a shard
    skipped: int = 0  # bad source files skipped (import --skip-bad)
    skipped_files: list[str] = field(default_factory=list)  # the first few of them
    created: float = field(default_factory=time.time)
    shared: bool = False  # an admin shared it with every user of the service
    columns: list[str] = field(default_factory=list)  # a table's feature columns, in order

    # ----------------------------------------------------------------- reading it
    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}@{self.version}"

    @property
    def scale(self) -> float | None:
        """Stored uint8 images are read as float32 in [0, 1]."""
        return 1.0 / 255.0 if self.dtype == "uint8" else None

    def rows(self, split: str) -> int:
        return sum(self.counts.get(split, []))

    def shards_of(self, split: str) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split]

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict:
        """What ``data list`` and ``GET /v1/datasets`` show: everything but the shard list."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "shards"}
        out.update(ref=self.ref, shard_count=len(self.shards), bytes=self.bytes, rows={s: self.rows(s) for s in SPLITS})
        return out

    # ----------------------------------------------------------------- on disk
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or not isinstance(raw.get("shards"), list):
                raise TypeError
            raw["shards"] = [ShardInfo(**s) for s in raw["shards"]]
            m = cls(**raw)
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(f"{where}: not a readable dataset manifest ({type(e).__name__})") from None
        problem = _problem(m)
        if problem is not None:
            raise DataError(f"{where}: not a readable dataset manifest ({problem})")
        for split in SPLITS:
            if sum(s.rows for s in m.shards_of(split)) != m.rows(split):
                raise DataError(f"{where}: its shards hold {sum(s.rows for s in m.shards_of(split))} {split} rows, its counts say {m.rows(split)}")
        return m

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST
        try:
            text = path.read_text()
        except OSError as e:
            raise DataError(f"{path}: cannot be read ({e.strerror})") from None
        return cls.from_json(text, str(path))

    def write(self, folder: Path) -> None:
        """Atomically: a temp file of its own (writers racing on one version never share one), then a rename."""
        write_atomic(Path(folder) / MANIFEST, self.to_json())

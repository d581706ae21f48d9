"""What an imported dataset holds: its manifest (``manifest.json`` beside its shards).

A dataset is made once by ``xsharp data import`` (or ``POST /v1/datasets``) and never changes;
importing the same name again makes a new version. The manifest lists the classes, the rows of
each class in each split, one row's shape and stored type, every shard with its row count and
SHA-256, where the rows came from (the source path and a hash of its content) and when.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from xsharp.fileguard import DataError

SPLITS = ("train", "val", "test")
KINDS = ("images", "audio", "table", "text", "arrays")
MANIFEST = "manifest.json"


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
    def from_json(cls, text: str, where: str = "manifest") -> "Manifest":
        try:
            raw = json.loads(text)
            raw["shards"] = [ShardInfo(**s) for s in raw["shards"]]
            m = cls(**raw)
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(f"{where}: not a readable dataset manifest ({type(e).__name__})") from None
        if m.kind not in KINDS or any(s.split not in SPLITS for s in m.shards):
            raise DataError(f"{where}: not a readable dataset manifest (unknown kind or split)")
        for split in SPLITS:
            if sum(s.rows for s in m.shards_of(split)) != m.rows(split):
                raise DataError(f"{where}: its shards hold {sum(s.rows for s in m.shards_of(split))} {split} rows, its counts say {m.rows(split)}")
        return m

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        try:
            text = path.read_text()
        except OSError as e:
            raise DataError(f"{path}: cannot be read ({e.strerror})") from None
        return cls.from_json(text, str(path))

    def write(self, folder: Path) -> None:
        tmp = Path(folder) / (MANIFEST + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(Path(folder) / MANIFEST)

"""The dataset catalog on disk: version numbers never come back after a delete, a commit that
cannot land gives up, staging folders of dead imports are swept (by a heartbeat, never under a
live import), manifests are written atomically and read strictly."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from xsharp.data.catalog import STALE_STAGING_SECONDS, Catalog
from xsharp.data.manifest import MANIFEST, Manifest
from xsharp.data.shards import write_shard
from xsharp.fileguard import DataError


def make(catalog: Catalog, owner: str = "bob", name: str = "x", rows: int = 4) -> Manifest:
    staging = catalog.staging(owner, name)
    x = np.arange(rows * 3, dtype=np.uint8).reshape(rows, 3)
    y = np.arange(rows) % 2
    info = write_shard(staging, "train", 0, x, y)
    m = Manifest(
        name=name,
        owner=owner,
        version=0,
        kind="arrays",
        classes=["a", "b"],
        counts={"train": np.bincount(y, minlength=2).tolist()},
        shape=[3],
        dtype="uint8",
        shards=[info],
        source={"path": "(test)"},
    )
    return catalog.commit(staging, m)


class _Looped(BaseException):
    """Raised by a patched rename that was called far more often than any bounded commit would."""


# --------------------------------------------------------------------------- 1. numbers are never reused
def test_a_deleted_version_number_is_never_given_again(tmp_path):
    cat = Catalog(tmp_path)
    assert [make(cat).version for _ in range(2)] == [1, 2]
    assert cat.delete("bob", "x", 2) == [2]
    assert make(cat).version == 3  # not 2 again
    assert cat.delete("bob", "x") == [1, 3]
    assert cat.versions("bob", "x") == [] and cat.manifests() == []
    again = make(cat)  # different data under the same name
    assert again.version == 4 and cat.versions("bob", "x") == [4]


def test_a_job_pinned_to_a_deleted_version_fails_and_never_reads_the_new_data(tmp_path):
    cat = Catalog(tmp_path)
    pinned = make(cat).ref  # a job pinned at submit: bob/x@1
    cat.delete("bob", "x")
    make(cat, rows=6)  # bob imports other (private) data as x
    with pytest.raises(DataError, match=r"bob/x has no version 1\b"):
        cat.find(pinned, "alice")
    assert cat.find("bob/x", "alice").version == 2


def test_a_commit_numbers_past_a_version_folder_without_a_manifest(tmp_path):
    cat = Catalog(tmp_path)
    (tmp_path / "bob" / "x" / "v1").mkdir(parents=True)
    (tmp_path / "bob" / "x" / "v1" / "junk").write_text("left by something else")
    calls = [0]
    real = Path.rename

    def rename(self, target):
        calls[0] += 1
        if calls[0] > 1000:
            raise _Looped
        return real(self, target)

    mp = pytest.MonkeyPatch()
    mp.setattr(Path, "rename", rename)
    try:
        assert make(cat).version == 2
    finally:
        mp.undo()


# --------------------------------------------------------------------------- 2. a commit that cannot land gives up
def test_a_commit_that_keeps_failing_gives_up_with_a_clear_error(tmp_path, monkeypatch):
    cat = Catalog(tmp_path)
    staging = cat.staging("bob", "x")
    calls = [0]

    def rename(self, target):
        calls[0] += 1
        if calls[0] > 1000:
            raise _Looped
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", rename)
    m = Manifest(name="x", owner="bob", version=0, kind="arrays", classes=["a"], counts={}, shape=[1], dtype="uint8", shards=[], source={})
    started = time.monotonic()
    with pytest.raises(DataError, match=r"bob/x: could not (commit|move).*after \d+ attempts.*Permission denied"):
        cat.commit(staging, m)
    assert calls[0] <= 200 and time.monotonic() - started < 20


# --------------------------------------------------------------------------- 3. staging folders
def test_sweep_staging_removes_every_staging_folder_and_nothing_else(tmp_path):
    cat = Catalog(tmp_path)
    kept = make(cat, "bob", "x")
    left = [cat.staging("bob", "x"), cat.staging("bob", "y"), cat.staging("alice", "z")]
    (tmp_path / "bob" / "x" / ".staging-deleted-0123abcd").mkdir()  # a delete killed before its rmtree
    (left[0] / "shards").mkdir()
    (left[0] / "shards" / "train-00000.npz").write_bytes(b"half")
    swept = cat.sweep_staging()
    assert swept == 4
    assert not list(tmp_path.glob("*/*/.staging-*"))
    assert cat.versions("bob", "x") == [kept.version] and cat.find("bob/x", "bob").version == 1
    assert Catalog(tmp_path / "missing").sweep_staging() == 0


def test_a_staging_folder_is_swept_by_its_heartbeat_not_its_own_mtime(tmp_path):
    cat = Catalog(tmp_path)
    live, dead = cat.staging("bob", "x"), cat.staging("bob", "x")
    for folder in (live, dead):
        (folder / "shards").mkdir()  # from here on the folder's own mtime stays put
    old = time.time() - STALE_STAGING_SECONDS - 3600
    for folder in (live, dead):
        for p in [folder, *folder.rglob("*")]:
            os.utime(p, (old, old))
        os.utime(folder / "shards", (old, old))
        os.utime(folder, (old, old))
    cat.touch(live)  # the importer reports progress: the import is alive
    cat.staging("bob", "x")  # another import of the name sweeps the stale ones
    assert live.is_dir() and not dead.exists()


def test_the_heartbeat_does_not_land_in_the_version(tmp_path):
    cat = Catalog(tmp_path)
    staging = cat.staging("bob", "x")
    cat.touch(staging)
    x, y = np.zeros((2, 1), np.uint8), np.array([0, 0])
    m = Manifest(
        name="x",
        owner="bob",
        version=0,
        kind="arrays",
        classes=["a"],
        counts={"train": [2]},
        shape=[1],
        dtype="uint8",
        shards=[write_shard(staging, "train", 0, x, y)],
        source={},
    )
    folder = cat.path_of(cat.commit(staging, m))
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "shards"]


# --------------------------------------------------------------------------- 4. manifests: written atomically, read strictly
def test_concurrent_manifest_writes_never_fail_or_tear(tmp_path):
    cat = Catalog(tmp_path)
    m = make(cat)
    folder = cat.path_of(m)
    errors: list[BaseException] = []

    def writer(shared: bool) -> None:
        mine = Manifest.read(folder)
        mine.shared = shared
        try:
            for _ in range(150):
                cat.update(mine)
        except BaseException as e:  # noqa: BLE001 - collected for the assert
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(300):
                Manifest.read(folder)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i % 2 == 0,)) for i in range(6)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Manifest.read(folder).ref == "bob/x@1"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "shards"]  # no temp file left behind


def _good() -> dict:
    return {
        "name": "x",
        "owner": "bob",
        "version": 1,
        "kind": "images",
        "classes": ["a", "b", "c"],
        "counts": {"train": [3, 2, 1], "val": [1, 0, 0], "test": [0, 1, 1]},
        "shape": [3, 8, 8],
        "dtype": "uint8",
        "shards": [
            {"split": "train", "file": "shards/train-00000.npz", "rows": 6, "bytes": 10, "sha256": "0" * 64},
            {"split": "val", "file": "shards/val-00000.npz", "rows": 1, "bytes": 10, "sha256": "0" * 64},
            {"split": "test", "file": "shards/test-00000.npz", "rows": 2, "bytes": 10, "sha256": "0" * 64},
        ],
        "source": {"path": "p"},
    }


def test_a_well_formed_manifest_reads():
    m = Manifest.from_json(json.dumps(_good()), "x/manifest.json")
    assert m.ref == "bob/x@1" and m.rows("train") == 6
    assert Manifest.from_json(m.to_json()).to_json() == m.to_json()


def _shard(i, **kw):
    def change(raw):
        raw["shards"][i].update(kw)

    return change


def _set(key, value):
    def change(raw):
        raw[key] = value

    return change


def _count(split, value):
    def change(raw):
        raw["counts"][split] = value

    return change


@pytest.mark.parametrize(
    "change",
    [
        _shard(0, file="../../../etc/passwd"),
        _shard(0, file="/etc/passwd"),
        _shard(0, file="shards/../../v2/shards/train-00000.npz"),
        _shard(0, file="shards/train-0.npz"),
        _shard(0, file="shards/val-00000.npz"),  # a val file listed as a train shard
        _count("train", [6]),  # fewer entries than classes
        _count("train", [3, 2, 1, 0]),  # more
        _count("train", [4, -1, 3]),
        _count("train", [3, 2, 1.0]),
        _count("train", [3, 2, True]),
        _count("train", [3, 2, "1"]),
        _count("all", [0, 0, 0]),
        _set("counts", [[3, 2, 1]]),
        _set("shape", [-3, 8, 8]),
        _set("shape", [1] * 9),
        _set("shape", [3, 8.5, 8]),
        _set("shape", "3x8x8"),
        _set("version", 0),
        _set("version", -1),
        _set("version", "1"),
        _set("version", True),
        _set("classes", "abc"),
        _set("owner", "../.."),
        _set("name", "a/b"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_it(change):
    raw = _good()
    change(raw)
    with pytest.raises(DataError, match=r"^somewhere/bob/x/v1/manifest\.json: "):
        Manifest.from_json(json.dumps(raw), "somewhere/bob/x/v1/manifest.json")


def test_manifest_read_names_the_file(tmp_path):
    raw = _good()
    raw["version"] = 0
    (tmp_path / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(DataError, match=rf"^{tmp_path / MANIFEST}: .*version"):
        Manifest.read(tmp_path)

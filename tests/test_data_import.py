"""`xsharp data import` and the importer: folders decoded on Ray Data into checksummed shards,
a manifest that counts what it holds, bad files named or skipped, nothing half-made."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from tests.helpers import run_cli
from xsharp.data.catalog import Catalog
from xsharp.data.imported import read_whole
from xsharp.data.importer import ImportOptions, import_dataset
from xsharp.fileguard import DataError, FileGuard


def _images(root, per_class=(7, 5, 6), size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(1)
    for c, n in zip(("ant", "bee", "cow"), per_class):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / c / (f"{i}.png" if i % 2 else f"{i}.jpg"), quality=95)
    return root


def test_an_image_folder_imports_into_verified_shards(ray_address, tmp_path):
    src = _images(tmp_path / "pics")
    cat = Catalog(tmp_path / "catalog")
    seen = []
    m = import_dataset(
        src, "pics", "me", cat, ImportOptions(size=(8, 8), channels=1, shard_mb=64 / 2**20, test_fraction=0.25, validation_fraction=0.25), progress=seen.append
    )
    assert m.ref == "me/pics@1" and m.kind == "images" and m.classes == ["ant", "bee", "cow"]
    assert m.shape == [8, 8] and m.dtype == "uint8"
    assert [sum(m.counts[s][i] for s in ("train", "val", "test")) for i in range(3)] == [7, 5, 6]
    assert all(m.counts["test"][i] >= 1 for i in range(3))  # stratified
    assert len(m.shards) >= 3 and all(s.rows <= 1 for s in m.shards)  # 64-byte shards: one 8x8 row each
    folder = cat.path_of(m)
    for s in m.shards:
        assert hashlib.sha256((folder / s.file).read_bytes()).hexdigest() == s.sha256
    assert seen[-1].done == seen[-1].total == 18 and seen[-1].unit == "files"
    data = read_whole(cat, m)
    assert data.x_train.shape[1:] == (8, 8) and data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    # the same files elsewhere have the same content hash; a second import is the next version
    shutil.copytree(src, tmp_path / "moved")
    again = import_dataset(tmp_path / "moved", "pics", "me", cat, ImportOptions(size=(8, 8), channels=1, validation_fraction=0.25))
    assert again.version == 2 and again.source["sha256"] == m.source["sha256"] and again.source["path"] != m.source["path"]


def test_a_bad_file_stops_the_import_naming_it_and_leaves_nothing(ray_address, tmp_path):
    src = _images(tmp_path / "pics")
    (src / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    cat = Catalog(tmp_path / "catalog")
    with pytest.raises(DataError, match=r"bee/broken\.png: not a readable image"):
        import_dataset(src, "pics", "me", cat, ImportOptions(size=(8, 8), validation_fraction=0.25))
    assert cat.versions("me", "pics") == [] and not list((tmp_path / "catalog" / "me" / "pics").iterdir())
    m = import_dataset(src, "pics", "me", cat, ImportOptions(size=(8, 8), skip_bad=True, validation_fraction=0.25))
    assert m.skipped == 1 and m.skipped_files == ["bee/broken.png"]
    assert sum(m.counts[s][1] for s in m.counts) == 5


def test_an_import_reads_only_what_its_guard_allows(tmp_path):
    src = _images(tmp_path / "outside" / "pics")
    guard = FileGuard(roots=(tmp_path / "roots",), denied=())
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "link").symlink_to(src)
    with pytest.raises(DataError, match="not under a data root"):
        import_dataset(tmp_path / "roots" / "link", "pics", "me", Catalog(tmp_path / "catalog"), ImportOptions(), guard=guard)


def test_the_cli_imports_a_table_lists_and_shows_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 3))
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "kind": np.where(x[:, 0] > 0, "up", "down")}), tmp_path / "t.parquet")
    env = {"XSHARP_DATASETS": str(tmp_path / "catalog")}
    r = run_cli("data", "import", str(tmp_path / "t.parquet"), "--name", "tab", "--label-column", "kind", "-o", "json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["kind"] == "table" and summary["shape"] == [3] and sorted(summary["classes"]) == ["down", "up"]
    assert sum(summary["rows"].values()) == n and summary["columns"] == ["a", "b", "c"]
    listed = run_cli("data", "list", env=env)
    assert listed.returncode == 0 and "tab@1" in listed.stdout
    shown = run_cli("data", "show", "tab", env=env)
    assert shown.returncode == 0 and "up" in shown.stdout and "down" in shown.stdout
    missing = run_cli("data", "show", "nope", env=env)
    assert missing.returncode == 2 and "no dataset nope" in missing.stderr
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ndata: {dataset: tab, features: [standardize]}\nmodel: [softmax]\ntrain: {epochs: 5, batch_size: 16}\nmode: local\n")
    ran = run_cli("run", str(spec), "--out", str(tmp_path / "run"), "-o", "json", env=env)
    assert ran.returncode == 0, ran.stderr
    metrics = json.loads(ran.stdout)
    assert metrics["data"].endswith("/tab@1") and metrics["test_accuracy"] > 0.9
    assert f"dataset: {metrics['data']}" in (tmp_path / "run" / "spec.yaml").read_text()


def test_the_format_is_not_told_by_what_lies_behind_a_symlink_out_of_the_roots(tmp_path):
    """A folder under a data root whose class folders are symlinks out of it: the answer is the
    same whether the outside folders hold images or nothing."""
    answers = []
    for holds_images in (True, False):
        base = tmp_path / str(holds_images)
        outside = _images(base / "outside") if holds_images else (base / "outside" / "ant").parent
        outside.mkdir(parents=True, exist_ok=True)
        root = base / "root" / "pics"
        root.mkdir(parents=True)
        (root / "ant").symlink_to(outside / "ant", target_is_directory=True)
        guard = FileGuard(roots=(base / "root",), denied=())
        with pytest.raises(DataError) as e:
            import_dataset(root, "pics", "me", Catalog(base / "catalog"), ImportOptions(), guard=guard)
        answers.append(str(e.value).replace(str(base), "BASE"))
    assert answers[0] == answers[1] and "cannot tell the format" in answers[0]

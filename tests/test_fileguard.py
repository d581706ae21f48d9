"""The file guard a service job reads its data through: roots, symlinks, special files, sizes,
and a file swapped between the check and the open. No Ray, no server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from xsharp.algos import datasets
from xsharp.fileguard import ANYWHERE, DataError, FileGuard, Forbidden


@pytest.fixture
def tree(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "ok.csv").write_text("label,text\na,x\nb,y\n")
    (outside / "secret.csv").write_text("label,text\nSECRET,z\n")
    (root / "link-out.csv").symlink_to(outside / "secret.csv")
    (root / "link-in.csv").symlink_to(root / "ok.csv")
    os.mkfifo(root / "fifo.csv")
    return root, outside


def test_paths_outside_the_roots_get_one_answer_whether_or_not_they_exist(tree):
    root, outside = tree
    guard = FileGuard(roots=(root,))
    for path in [outside / "secret.csv", outside / "missing.csv", root / "link-out.csv", "/etc/passwd", "/proc/self/environ"]:
        with pytest.raises(Forbidden, match="^data.path: not under a data root"):
            guard.check(path)
    # '..' is refused outright: resolving it after a symlink outside the roots would tell that the symlink is there
    for path in [root / ".." / "outside" / "secret.csv", "../outside/secret.csv", f"/etc/localtime/../..{root}/ok.csv", f"/nope/..{root}/ok.csv"]:
        with pytest.raises(Forbidden, match="cannot hold '..'"):
            guard.check(path)
    assert ANYWHERE.check(root / ".." / "outside" / "secret.csv") == (outside / "secret.csv").resolve()  # a user's own run may
    assert guard.check(root / "link-in.csv") == (root / "ok.csv").resolve()
    assert guard.check("ok.csv") == (root / "ok.csv").resolve()  # relative: under the first root
    with pytest.raises(DataError, match="no such file"):
        guard.check(root / "missing.csv")


def test_no_roots_means_named_datasets_only(tree):
    with pytest.raises(Forbidden, match="no data roots"):
        FileGuard(roots=()).check(tree[0] / "ok.csv")


def test_denied_trees_stay_denied_under_a_root(tree):
    root, _ = tree
    (root / "store").mkdir()
    (root / "store" / "xsharp.db").write_text("tokens")
    guard = FileGuard(roots=(root,), denied=(root / "store",))
    with pytest.raises(Forbidden, match="the server's own files"):
        guard.open(root / "store" / "xsharp.db")
    with pytest.raises(Forbidden, match="the server's own files"):
        FileGuard(roots=(Path("/"),)).check("/proc/self/environ")


def test_special_files_are_refused_without_blocking_even_for_a_users_own_run(tree):
    root, _ = tree
    for guard in (FileGuard(roots=(root,)), ANYWHERE):
        t0 = time.time()
        with pytest.raises(Forbidden, match="not a regular file or folder"):
            guard.open(root / "fifo.csv")  # no writer: a blocking open would hang here
        assert time.time() - t0 < 2
    with pytest.raises(Forbidden, match="not a regular file or folder"):
        ANYWHERE.open("/dev/zero")


def test_the_size_cap_holds_at_check_and_at_open(tree):
    root, _ = tree
    guard = FileGuard(roots=(root,), max_file_bytes=10)
    for call in (guard.check, guard.open):
        with pytest.raises(Forbidden, match=r"ok.csv: 19 bytes, over this server's cap of 10 bytes"):
            call(root / "ok.csv")


def test_a_file_swapped_for_a_symlink_after_the_check_is_refused_at_open(tree):
    root, outside = tree
    guard = FileGuard(roots=(root,))
    guard.check(root / "ok.csv")
    (root / "ok.csv").unlink()
    (root / "ok.csv").symlink_to(outside / "secret.csv")
    with pytest.raises(Forbidden):
        guard.open(root / "ok.csv")


def test_a_folder_of_wavs_with_a_link_out_of_the_root_is_refused_file_by_file(tree):
    import wave

    root, outside = tree
    folder = root / "wavs"
    folder.mkdir()
    for i, where in enumerate([folder, folder, outside]):
        with wave.open(str(where / f"1_s{i}_0.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
            w.writeframes(np.zeros(800, np.int16).tobytes())
    (folder / "1_s2_0.wav").symlink_to(outside / "1_s2_0.wav")
    with pytest.raises(Forbidden, match="not under a data root"):
        datasets.load(path=folder, format="wav", sample_rate=8000, guard=FileGuard(roots=(root,)))
    assert datasets.load(path=folder, format="wav", sample_rate=8000, test_fraction=0.34, validation_fraction=0).x_test.shape == (2, 8000)


def test_errors_name_the_problem_never_the_content(tmp_path):
    secret = "s3cr3t-line"
    (tmp_path / "head.csv").write_text(f"{secret},{secret}2\nx,y\n")
    with pytest.raises(DataError) as e:
        datasets.load(path=tmp_path / "head.csv")
    assert "missing column 'label' (2 columns" in str(e.value) and secret not in str(e.value)
    (tmp_path / "bad.csv").write_bytes(b"label,text\n" + secret.encode() + b"\xff\xfe,x\n")
    with pytest.raises(DataError, match="not UTF-8 text") as e:
        datasets.load(path=tmp_path / "bad.csv")
    assert secret not in str(e.value) and "xff" not in str(e.value)
    (tmp_path / "x.idx").write_bytes(secret.encode())
    with pytest.raises(DataError, match="not an IDX file") as e:
        datasets.read_idx(tmp_path / "x.idx")
    assert secret.encode().hex()[:8] not in str(e.value)
    np.savez(tmp_path / "a.npz", **{secret: np.zeros(3)})
    with pytest.raises(DataError, match="found 1 other array") as e:
        datasets.load(path=tmp_path / "a.npz")
    assert secret not in str(e.value)
    np.savez(tmp_path / "c.npz", x=np.zeros((4, 2)), y=np.array([secret, "b", "b", "b"]), classes=np.array(["b"]))
    with pytest.raises(DataError, match="1 label value") as e:
        datasets.load(path=tmp_path / "c.npz")
    assert secret not in str(e.value)


def test_class_names_are_capped_in_count_and_length(tmp_path):
    rows = "\n".join(f"label-{i},t" for i in range(datasets.MAX_CLASSES + 1))
    (tmp_path / "many.csv").write_text("label,text\n" + rows + "\n")
    with pytest.raises(DataError, match=f"{datasets.MAX_CLASSES + 1} distinct labels, over the cap"):
        datasets.load(path=tmp_path / "many.csv")
    (tmp_path / "long.csv").write_text("label,text\n" + "\n".join(["x" * 500 + ",t", "a,t", "a,t", "b,t", "b,t"]) + "\n")
    with pytest.raises(DataError, match="a label of 500 characters, over the cap of 128") as e:
        datasets.load(path=tmp_path / "long.csv")
    assert "xxxx" not in str(e.value)


def test_reading_under_the_guard_gives_the_same_data(tree):
    root, _ = tree
    (root / "t.csv").write_text("label,text\n" + "\n".join(f"{'ab'[i % 2]},row {i}" for i in range(20)) + "\n")
    guarded = datasets.load(path=root / "t.csv", guard=FileGuard(roots=(root,)), validation_fraction=0)
    plain = datasets.load(path=root / "t.csv", validation_fraction=0)
    assert list(guarded.x_train) == list(plain.x_train) and guarded.classes == plain.classes == ["a", "b"]


def test_a_guarded_gz_file_is_closed_after_reading(tmp_path):
    import gzip

    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        f.write("label,text\n" + "\n".join(f"{'ab'[i % 2]},row {i}" for i in range(20)) + "\n")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        datasets.load(path=tmp_path / "t.csv.gz", guard=FileGuard(roots=(tmp_path,)), validation_fraction=0)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_refusal_crosses_process_boundaries_whole():
    import pickle

    e = pickle.loads(pickle.dumps(Forbidden("data.labels", "not under a data root")))
    assert isinstance(e, DataError) and (e.field, e.rule, str(e)) == ("data.labels", "not under a data root", "data.labels: not under a data root")


def test_a_folder_swapped_for_a_symlink_between_the_check_and_the_open_is_caught(tree):
    root, outside = tree
    (root / "sub").mkdir()
    (root / "sub" / "s.csv").write_text("label,text\na,b\n")
    (outside / "s.csv").write_text("label,text\nSECRET,z\n")

    class Racing(FileGuard):
        def resolve(self, path, field_path="data.path"):
            real = super().resolve(path, field_path)
            (root / "sub").rename(root / "sub-before")  # the race, made certain: right after the check
            (root / "sub").symlink_to(outside, target_is_directory=True)
            return real

    with pytest.raises(Forbidden, match="not under a data root"):
        Racing(roots=(root,)).open(root / "sub" / "s.csv")


def test_a_path_that_is_not_text_is_refused_not_a_crash(tree):
    with pytest.raises(Forbidden, match="a path must be valid text"):
        FileGuard(roots=(tree[0],)).check("d/\ud800.csv")


def test_a_users_own_run_reads_a_symlinked_file_by_the_name_it_was_given(tmp_path):
    """DVC, git-annex and model caches link readable names to content-addressed blobs."""
    import gzip

    (tmp_path / "blobs").mkdir()
    with gzip.open(tmp_path / "blobs" / "cd34", "wt") as f:
        f.write("label,text\n" + "\n".join(f"{'ab'[i % 2]},row {i}" for i in range(20)) + "\n")
    (tmp_path / "train.csv.gz").symlink_to(tmp_path / "blobs" / "cd34")
    d = datasets.load(path=tmp_path / "train.csv.gz", validation_fraction=0)
    assert d.classes == ["a", "b"] and d.name == "train.csv.gz"


def test_a_feature_step_that_cannot_take_the_rows_says_so_without_quoting_them(tmp_path):
    from xsharp.algos import features

    (tmp_path / "t.csv").write_text("label,text\n" + "\n".join(f"{'ab'[i % 2]},TOPSECRET-{i}" for i in range(20)) + "\n")
    data = datasets.load(path=tmp_path / "t.csv", validation_fraction=0)
    data.x_train = data.x_train.astype(object)
    with pytest.raises(DataError, match="data.features") as e:
        features.prepare(data, [{"standardize": {}}], None, seed=0)
    assert "TOPSECRET" not in str(e.value)

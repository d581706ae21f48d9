"""Streaming an imported dataset: every row exactly once per epoch across workers, a bounded
number of windows in memory, bitwise-exact resume mid-epoch, a bad shard named."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from xsharp.algos.training import Stopped, TrainHooks, fit
from xsharp.cluster.runner import load_data, run_job
from xsharp.data.catalog import Catalog
from xsharp.data.imported import StreamedData
from xsharp.data.importer import ImportOptions, import_dataset
from xsharp.data.manifest import Manifest
from xsharp.data.shards import write_shard
from xsharp.data.stream import ShardedSplit, plan_epoch, share
from xsharp.fileguard import DataError
from xsharp.parallel.execution import build_model
from xsharp.spec import parse_spec


# --------------------------------------------------------------------------- the plan, pure
@pytest.mark.parametrize("shard_rows", [[10], [7, 7, 7, 3], [1, 2, 3, 4, 5, 6], [50] * 4 + [1]])
@pytest.mark.parametrize("batch_size", [1, 4, 7, 32])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_every_row_is_read_exactly_once_an_epoch_across_workers(shard_rows, batch_size, world):
    n = sum(shard_rows)
    for epoch in (0, 1):
        seen = []
        plans = [plan_epoch(shard_rows, batch_size, 6, 7, 1, epoch, r, world) for r in range(world)]
        steps = -(-n // batch_size)
        for r, p in enumerate(plans):
            used = 0
            for s in range(steps):
                size = min(batch_size, n - s * batch_size)
                lo, hi = p.positions(s, share(size, r, world))
                assert lo == used  # a worker's steps walk its range in order, without gaps
                used = hi
            assert used == p.rows
            for seg in p.segments:
                seen += [(seg.shard, i) for i in range(seg.lo, seg.hi)]
            # windows cover the range exactly, each a permutation of its rows
            covered = [i for k in range(-(-p.rows // p.window)) for i in range(*p.window_span(k))]
            assert covered == list(range(p.rows))
            for k in range(-(-p.rows // p.window)):
                assert sorted(p.window_order(k)) == list(range(len(range(*p.window_span(k)))))
        assert sorted(seen) == [(i, j) for i, rows in enumerate(shard_rows) for j in range(rows)]


def test_the_shard_order_changes_with_the_epoch_and_not_with_anything_else():
    rows = [5] * 12
    a = [plan_epoch(rows, 4, 10, 3, 1, e, 0, 1).segments for e in range(3)]
    assert len({tuple(s.shard for s in segs) for segs in a}) == 3
    assert plan_epoch(rows, 4, 10, 3, 1, 1, 0, 1) == plan_epoch(rows, 4, 10, 3, 1, 1, 0, 1)


# --------------------------------------------------------------------------- a real dataset on disk
def _ids_dataset(catalog: Catalog, n: int = 203, shard_rows: int = 17) -> Manifest:
    """Rows whose only value is their id (so a test can tell which rows it got)."""
    staging = catalog.staging("me", "ids")
    x = np.arange(n, dtype=np.float32).reshape(n, 1)
    y = (np.arange(n) % 3).astype(np.int64)
    infos = [write_shard(staging, "train", k, x[lo : lo + shard_rows], y[lo : lo + shard_rows]) for k, lo in enumerate(range(0, n, shard_rows))]
    infos.append(write_shard(staging, "val", 0, x[:5], y[:5]))
    infos.append(write_shard(staging, "test", 0, x[:5], y[:5]))
    counts = {"train": np.bincount(y, minlength=3).tolist(), "val": np.bincount(y[:5], minlength=3).tolist(), "test": np.bincount(y[:5], minlength=3).tolist()}
    m = Manifest(name="ids", owner="me", version=0, kind="arrays", classes=["a", "b", "c"], counts=counts, shape=[1], dtype="float32", shards=infos, source={})
    return catalog.commit(staging, m)


def test_workers_streams_read_disjoint_rows_and_all_of_them(tmp_path):
    cat = Catalog(tmp_path)
    m = _ids_dataset(cat)
    split = ShardedSplit(cat.path_of(m), m, "train", window_rows=40)
    n, bs, world = 203, 16, 3
    for epoch in (0, 1):
        got = []
        for rank in range(world):
            stream = split.stream(bs, seed=5, rank=rank, world=world)
            for s in range(-(-n // bs)):
                count = share(min(bs, n - s * bs), rank, world)
                rows = stream.batch(1, epoch, s, count)
                assert len(rows) == count
                assert len(stream._windows) <= 2  # the window in use and the one read ahead
                got += rows.x[:, 0].astype(int).tolist()
            stream.close()
        assert sorted(got) == list(range(n))
        assert got != sorted(got)  # shuffled


def test_a_stream_resumed_mid_epoch_gives_the_same_rows(tmp_path):
    cat = Catalog(tmp_path)
    m = _ids_dataset(cat)
    split = ShardedSplit(cat.path_of(m), m, "train", window_rows=30)
    whole = split.stream(10, seed=1)
    expected = [whole.batch(1, 2, s, 10).x[:, 0].tolist() for s in range(20)]
    later = split.stream(10, seed=1)
    assert [later.batch(1, 2, s, 10).x[:, 0].tolist() for s in range(13, 20)] == expected[13:]
    assert later.reads < whole.reads  # it started at step 13's window, not at the epoch's start


# --------------------------------------------------------------------------- training from it
@pytest.fixture(scope="module")
def digits_catalog(tmp_path_factory):
    cat = Catalog(tmp_path_factory.mktemp("catalog"))
    import_dataset("digits", "digits-small", "me", cat, ImportOptions(shard_mb=0.01, seed=3))  # ~40 rows a shard: many shards
    return cat


def _spec(stream=True, **extra) -> dict:
    from tests.helpers import TINY

    return TINY | {"data": {"dataset": "me/digits-small", "stream": stream}, "train": {"epochs": 4, "batch_size": 20, "learning_rate": 0.3}, **extra}


def test_streamed_training_learns_and_scores_shard_by_shard(digits_catalog):
    spec = parse_spec(_spec())
    data = load_data(spec, catalog=digits_catalog, user="me")
    assert isinstance(data, StreamedData) and data.x_train is None and data.n_train == 1293
    model = build_model(spec, data)
    history = fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)
    assert history.samples == (3 * 2 + 4) * 1293
    assert model.accuracy(data.x_test, data.y_test) > 0.8
    assert history.finetune[-1]["val_accuracy"] > 0.8


@pytest.mark.parametrize("stops", [[7], [70, 5], [200]])  # mid-pretraining, mid-epoch twice, mid fine-tuning
def test_streamed_training_stopped_and_resumed_ends_bitwise_equal(digits_catalog, stops):
    spec = parse_spec(_spec())
    data = load_data(spec, catalog=digits_catalog, user="me")
    model = build_model(spec, data)
    fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)
    expected = model.get_flat()
    state = None
    for at in stops:
        counter = itertools.count(1)
        with pytest.raises(Stopped) as e:
            fit(
                build_model(spec, data),
                data,
                pretrain=spec.pretrain,
                train=spec.train,
                seed=spec.seed,
                hooks=TrainHooks(resume=state, should_stop=lambda: next(counter) == at),
            )
        state = e.value.state
        assert state.step > 0  # mid-epoch
    model = build_model(spec, data)
    fit(model, data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed, hooks=TrainHooks(resume=state))
    np.testing.assert_array_equal(model.get_flat(), expected)


def test_a_small_dataset_is_read_whole_by_default_and_gives_the_bundled_rows(digits_catalog):
    spec = parse_spec(_spec(stream=None))
    data = load_data(spec, catalog=digits_catalog, user="me")
    assert not isinstance(data, StreamedData)
    bundled = load_data(parse_spec(_spec() | {"data": {"dataset": "digits"}}))  # the same seed (3) as the import: the same split

    def rows(x, y):
        return sorted(map(tuple, np.column_stack([x.reshape(len(x), -1), y]).tolist()))

    for split in ("train", "val", "test"):
        assert rows(getattr(data, f"x_{split}"), getattr(data, f"y_{split}")) == rows(getattr(bundled, f"x_{split}"), getattr(bundled, f"y_{split}"))


def test_a_shard_that_fails_its_checksum_stops_the_job_naming_it(tmp_path):
    cat = Catalog(tmp_path)
    import_dataset("digits", "d", "me", cat, ImportOptions(shard_mb=0.05))
    m = cat.find("d", "me")
    victim = m.shards_of("train")[2]
    path = cat.path_of(m) / victim.file
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    spec = parse_spec(_spec() | {"data": {"dataset": "d", "stream": True}})
    data = load_data(spec, catalog=cat, user="me")
    with pytest.raises(DataError, match=f"shard {victim.file} fails its checksum"):
        fit(build_model(spec, data), data, pretrain=spec.pretrain, train=spec.train, seed=spec.seed)


def test_streaming_in_a_mode_that_trains_from_memory_is_refused(digits_catalog):
    spec = parse_spec(_spec() | {"mode": "pipeline"})
    with pytest.raises(DataError, match="data.stream: streaming serves the local and data_parallel modes"):
        load_data(spec, catalog=digits_catalog, user="me")


def test_data_parallel_workers_stream_and_resume(ray_address, digits_catalog, monkeypatch):
    monkeypatch.setenv("XSHARP_DATASETS", str(digits_catalog.root))
    monkeypatch.setattr("xsharp.data.catalog.local_owner", lambda: "me")
    spec = parse_spec(_spec() | {"mode": "data_parallel", "resources": {"workers": 2, "cpus_per_worker": 1}})
    result = run_job(spec)
    assert result.metrics["workers"] == 2 and result.metrics["samples"] == (3 * 2 + 4) * 1293
    assert result.metrics["test_accuracy"] > 0.8
    assert "StreamedData" in result.metrics["dataset"]

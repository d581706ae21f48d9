"""Data by path and format: IDX files, folders of WAV files, CSV files with text; tiny files
written here, plus the real Fashion-MNIST files when Debian's package is installed."""

import bz2
import csv
import gzip
import struct
import wave

import numpy as np
import pytest

from xsharp.algos import datasets
from xsharp.spec import SpecError, parse_spec


def write_idx(path, array, code=0x08):
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4"}[code]
    head = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    data = head + np.asarray(array, dtype=dtype).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


def write_wav(path, samples, rate=8000, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        else:
            w.writeframes((np.clip(samples, -1, 1) * 127 + 128).astype(np.uint8).tobytes())


@pytest.fixture
def mnist_like(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 12)):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 5, 4)))
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 3)
    return tmp_path


def test_read_idx_any_type_and_shape(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", a, 0x0C)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "a.idx"), a)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    write_idx(tmp_path / "f.idx.gz", f, 0x0D)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "f.idx.gz"), f)
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(datasets.DataError, match="not an IDX file"):
        datasets.read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(struct.pack(">BBBBi", 0, 0, 8, 1, 100) + b"\x00" * 10)
    with pytest.raises(datasets.DataError, match="holds 10"):
        datasets.read_idx(tmp_path / "short.idx")


def test_idx_folder_keeps_its_own_test_split_and_scales_bytes(mnist_like):
    d = datasets.load(path=mnist_like, validation_fraction=0.25)
    assert datasets.format_of(mnist_like) == "idx"
    assert len(d.y_test) == 12 and len(d.y_train) + len(d.y_val) == 40 and d.in_shape == (5, 4)
    assert d.x_train.dtype == np.float32 and 0 <= d.x_train.min() and d.x_train.max() <= 1 and d.x_train.max() > 0.9
    np.testing.assert_array_equal(d.y_test, np.arange(12) % 3)


def test_idx_images_file_finds_its_labels_or_is_told_them(mnist_like, tmp_path):
    images = mnist_like / "train-images-idx3-ubyte.gz"
    assert datasets.format_of(images) == "idx"
    d = datasets.load(path=images, test_fraction=0.25, validation_fraction=0)
    assert len(d.y_train) == 30 and len(d.y_test) == 10
    lonely = tmp_path / "lonely.idx"
    write_idx(lonely, np.zeros((4, 2, 2)))
    with pytest.raises(datasets.DataError, match="no labels file"):
        datasets.load(path=lonely)
    write_idx(tmp_path / "few-labels.idx", np.arange(3))
    with pytest.raises(datasets.DataError, match="4 samples"):
        datasets.load(path=lonely, labels=str(tmp_path / "few-labels.idx"))


FASHION = datasets.FASHION_MNIST_DIR


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_headers_and_first_rows():
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
        assert struct.unpack(">BBBBi", f.read(8)) == (0, 0, 8, 1, 60000)
        first_labels = list(f.read(5))
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
        assert struct.unpack(">BBBBiii", f.read(16)) == (0, 0, 8, 3, 10000, 28, 28)
    labels = datasets.read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and list(labels[:5]) == first_labels == [9, 0, 0, 3, 0]
    assert np.bincount(labels).tolist() == [6000] * 10
    images = datasets.read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and images[0].max() > 200
    arrays = datasets.NAMED["fashion-mnist"]()
    assert arrays.x.shape == (60000, 28, 28) and arrays.x_test.shape == (10000, 28, 28)
    assert arrays.classes[9] == "Ankle boot" and float(arrays.x.max()) == 1.0


@pytest.fixture
def wav_folder(tmp_path):
    """3 speakers x 2 digits x 2 takes; digit d is a tone of 300 (d + 1) Hz."""
    folder = tmp_path / "wavs"
    folder.mkdir()
    t = np.arange(4000) / 8000
    for speaker in ("ann", "bob_x", "cy"):
        for label in (0, 1):
            for take in (0, 1):
                write_wav(folder / f"{label}_{speaker}_{take}.wav", 0.5 * np.sin(2 * np.pi * 300 * (label + 1) * t) * (1 + take) / 2)
    return folder


def test_wav_folder_reads_labels_speakers_and_fixes_length(wav_folder):
    arrays = datasets.FORMATS["wav"](wav_folder, sample_rate=16000, duration=0.75)
    assert arrays.x.shape == (12, 12000) and arrays.x.dtype == np.float32
    assert np.abs(arrays.x[:, :8000]).max() > 0.4 and np.abs(arrays.x[:, 8000:]).max() == 0  # 0.5 s resampled, then zeros
    assert sorted(set(arrays.speakers)) == ["ann", "bob_x", "cy"] and sorted(set(arrays.y.tolist())) == [0, 1]
    assert datasets.parse_wav_name("7_en-us.m3_12.wav") == ("7", "en-us.m3", "12")
    assert datasets.parse_wav_name("noise.wav") is None


def test_wav_8_bit_and_rate_are_read(tmp_path):
    write_wav(tmp_path / "x.wav", np.full(100, 0.5), rate=11025, width=1)
    a, rate = datasets.read_wav(tmp_path / "x.wav")
    assert rate == 11025 and a.shape == (100,) and abs(float(a.mean()) - 0.5) < 0.01


def test_whole_speakers_are_held_out_for_test(wav_folder):
    d = datasets.load(path=wav_folder, test_speakers=["cy"], validation_fraction=0, sample_rate=8000, duration=0.5)
    assert d.test_speakers == ["cy"] and len(d.y_test) == 4 and len(d.y_train) == 8
    by_pattern = datasets.load(path=wav_folder, test_speakers=["b*"], validation_fraction=0, sample_rate=8000)
    assert by_pattern.test_speakers == ["bob_x"]
    share = datasets.load(path=wav_folder, test_speakers=0.34, validation_fraction=0, seed=3, sample_rate=8000)
    assert len(share.test_speakers) == 1 and len(share.y_test) == 4
    again = datasets.load(path=wav_folder, test_speakers=0.34, validation_fraction=0, seed=3, sample_rate=8000)
    assert again.test_speakers == share.test_speakers
    with pytest.raises(datasets.DataError, match="match none"):
        datasets.load(path=wav_folder, test_speakers=["zed"])
    with pytest.raises(datasets.DataError, match="nothing to train on"):
        datasets.load(path=wav_folder, test_speakers=["*"])
    with pytest.raises(datasets.DataError, match="needs rows with speakers"):
        datasets.load("digits", test_speakers=["a"])


def test_wav_folder_refuses_badly_named_files(wav_folder):
    (wav_folder / "stray.wav").write_bytes(b"")
    with pytest.raises(datasets.DataError, match="not named"):
        datasets.load(path=wav_folder)


def write_csv(path, rows, header=("label", "text")):
    opener = bz2.open if str(path).endswith(".bz2") else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.mark.parametrize("name", ["t.csv", "t.csv.bz2"])
def test_csv_with_label_and_text_columns(tmp_path, name):
    rows = [("good" if i % 2 else "bad", f'text, "quoted" {i}\nline two') for i in range(20)]
    write_csv(tmp_path / name, [(lab, "x", txt) for lab, txt in rows], header=("category", "other", "body"))
    assert datasets.format_of(tmp_path / name) == "csv"
    d = datasets.load(path=tmp_path / name, label_column="category", text_column="body", test_fraction=0.2, validation_fraction=0)
    assert d.classes == ["bad", "good"] and len(d.y_test) == 4 and d.x_train.dtype == object
    assert all(isinstance(t, str) and "line two" in t for t in d.x_train)
    with pytest.raises(datasets.DataError, match=r"missing column 'text' \(3 columns"):
        datasets.load(path=tmp_path / name, label_column="category")


def test_data_spec_fields_name_their_path():
    def problems(data):
        try:
            parse_spec({"data": data, "model": ["softmax"]})
        except SpecError as e:
            return e.problems
        return []

    assert problems({"path": "x", "format": "wav", "test_speakers": ["a", "b*"], "sample_rate": 8000, "duration": 0.5}) == []
    assert problems({"path": "x", "format": "csv", "label_column": "category", "text_column": "text"}) == []
    assert problems({"path": "x", "test_speakers": 1.5})[0].startswith("data.test_speakers: must be a non-empty list")
    assert problems({"path": "x", "sample_rate": 10}) == ["data.sample_rate: must be >= 1000, got 10"]
    assert problems({"path": "x", "format": "wave"})[0].startswith("data.format: unknown format; known: audio, csv, idx, images, npz, table, text, wav")
    assert problems({"path": "x", "features": [{"tfidf": {"ngrams": 5}}]}) == ["data.features[0].tfidf.ngrams: must be <= 3, got 5"]
    assert problems({"path": "x", "features": [{"logmel": {"n_mel": 3}}]}) == ["data.features[0].logmel.n_mel: unknown field; did you mean 'n_mels'?"]
    assert problems({"path": "x", "features": ["fft"]})[0].startswith("data.features[0]: must be one step as {name: options}")
    assert problems({"dataset": "fashion-mnist", "augment": {"copies": 0}}) == ["data.augment.copies: must be >= 1, got 0"]


def test_digits_match_scikit_learns_loader():
    from sklearn.datasets import load_digits

    d, ours = load_digits(), datasets._digits()
    np.testing.assert_array_equal(ours.x, (d.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(ours.y, d.target)
    assert ours.classes == [str(c) for c in d.target_names]


@pytest.mark.parametrize("n, classes, fraction", [(1797, 10, 0.2), (1437, 10, 0.1), (50, 3, 0.3), (23, 4, 0.5), (40, 7, 0.25)])
@pytest.mark.parametrize("seed", [0, 1, 17])
def test_split_picks_the_rows_scikit_learn_picks(n, classes, fraction, seed):
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    y[:classes] = np.arange(classes)  # every class at least ...
    y[classes : 2 * classes] = np.arange(classes)  # ... twice, so the split stratifies
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    want = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
    got = datasets._split(x, y, fraction, seed)
    for a, b in zip(got, [want[0], want[2], want[1], want[3]]):
        np.testing.assert_array_equal(a, b)
    y[0] = classes  # a class with one row: no stratification
    want = train_test_split(x, y, test_size=fraction, random_state=seed)
    for a, b in zip(datasets._split(x, y, fraction, seed), [want[0], want[2], want[1], want[3]]):
        np.testing.assert_array_equal(a, b)


def test_split_names_what_cannot_be_held_out():
    y = np.repeat(np.arange(5), 2)
    with pytest.raises(datasets.DataError, match="cannot hold out 0.2 of 10 rows.*5 classes"):
        datasets._split(np.zeros((10, 1)), y, 0.2, 0)
    with pytest.raises(datasets.DataError, match="none would be left"):
        datasets._split(np.zeros((10, 1)), y, 1.0, 0)


# --------------------------------------------------------------------------- small files that would exhaust memory
def test_npz_arrays_are_sized_from_their_headers_before_any_is_read(tmp_path):
    import tracemalloc

    from xsharp.fileguard import DataError, FileGuard

    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((1000, 1000), np.float32), y=np.zeros(1000, np.int64))  # 4 MB of zeros, ~4 KB
    assert path.stat().st_size < 50_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"zeros.npz: its arrays come to 4008000 bytes once decompressed, over this server's cap of 100000"):
            datasets._npz(path, guard=FileGuard(max_file_bytes=100_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert datasets._npz(path).x.shape == (1000, 1000)  # no cap: read
    assert datasets._npz(path, guard=FileGuard(max_file_bytes=5_000_000)).y.shape == (1000,)
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.array([{}, {}], dtype=object), y=np.zeros(2))
    with pytest.raises(DataError, match=r"objects.npz: array 'x' holds Python objects \(pickles\), which are never read"):
        datasets._npz(pickled)


def test_wav_headers_claiming_more_than_the_file_or_an_odd_rate_are_refused(tmp_path):
    from xsharp.fileguard import DataError

    path = tmp_path / "liar.wav"
    write_wav(path, np.zeros(100))
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", 64 << 20)  # says 64 MiB of samples in a 244-byte file
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"liar.wav: its header says 67108864 bytes of samples, but the file holds 244 bytes"):
        datasets.read_wav(path)
    folder = tmp_path / "slow"
    folder.mkdir()
    write_wav(folder / "a_s1_0.wav", np.zeros(400), rate=500)  # the header's rate, however low, sized the resampling
    with pytest.raises(DataError, match=r"a_s1_0.wav: a sample rate of 500 Hz \(readable: 1000 to 384000 Hz\)"):
        datasets.load(path=folder, format="wav")

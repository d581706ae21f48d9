"""Readers of users' own data (xsharp.data): image and audio class folders, tables, text files;
the onehot and impute steps; datasets.load over them. Tiny files written here."""

import bz2
import gzip
import json
import os
import wave

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
from PIL import Image

from xsharp.algos import datasets, features
from xsharp.data import audio_folder, images, tables, text
from xsharp.data.images import ImageOptions, decode_image
from xsharp.fileguard import DataError, FileGuard, Forbidden
from xsharp.spec import SpecError, parse_spec

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def save(path, pixels, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path, **kw)
    return path


def columns_image(colours):
    """A 2-row image whose columns are ``colours``, left to right."""
    return np.array([colours, colours], dtype=np.uint8)


def rows_of(a):
    """(3, H, W) -> nested lists of (r, g, b), row by row."""
    return [[tuple(px) for px in row] for row in np.asarray(a).transpose(1, 2, 0).tolist()]


# --------------------------------------------------------------------------- images: one file
def test_resize_modes_give_the_pixels_digits_would(tmp_path):
    four = save(tmp_path / "four.png", columns_image([RED, GREEN, BLUE, YELLOW]))  # 4 wide, 2 high
    # crop to 2x2: the short side (2) already fits, the centre two columns are kept
    assert rows_of(decode_image(four, ImageOptions((2, 2), "crop"))) == [[GREEN, BLUE], [GREEN, BLUE]]
    # fill 4x4: the long side (4) fits, the 4x2 image is centred with a black row above and below
    black = (0, 0, 0)
    assert rows_of(decode_image(four, ImageOptions((4, 4), "fill"))) == [[black] * 4, [RED, GREEN, BLUE, YELLOW], [RED, GREEN, BLUE, YELLOW], [black] * 4]
    solid = save(tmp_path / "solid.png", np.full((2, 4, 3), 200))
    # fill 2x2: scaled by 1/2 to 2x1, placed at the top (the odd row of padding goes below)
    assert rows_of(decode_image(solid, ImageOptions((2, 2), "fill"))) == [[(200,) * 3] * 2, [black] * 2]
    # squash to 2x8: each row (one colour) stretched sideways, the aspect ratio ignored
    stripes = save(tmp_path / "stripes.png", np.array([[RED] * 4, [BLUE] * 4]))
    assert rows_of(decode_image(stripes, ImageOptions((2, 8), "squash"))) == [[RED] * 8, [BLUE] * 8]
    assert decode_image(four, ImageOptions((5, 3), "crop")).shape == (3, 5, 3)
    assert decode_image(four, ImageOptions((5, 3), "fill")).shape == (3, 5, 3)


def test_grey_or_rgb_channels_first(tmp_path):
    f = save(tmp_path / "c.png", columns_image([RED, GREEN, BLUE, (10, 20, 30)]))
    rgb = decode_image(f)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 2, 4)
    assert rows_of(rgb)[0] == [RED, GREEN, BLUE, (10, 20, 30)]
    grey = decode_image(f, ImageOptions(channels=1))
    assert grey.shape == (2, 4)
    luma = [round((299 * r + 587 * g + 114 * b) / 1000) for r, g, b in (RED, GREEN, BLUE, (10, 20, 30))]  # ITU-R 601-2
    assert np.abs(grey[0].astype(int) - luma).max() <= 1


def test_modes_are_converted(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, :, 0] = 200
    rgba[0, :, 3] = [255, 0, 51]  # opaque, transparent, a fifth
    f = save(tmp_path / "alpha.png", rgba)
    assert decode_image(f)[0, 0].tolist() == [200, 0, 40]  # over black
    grey16 = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 65535, 257 * 100]], dtype=np.uint16)).save(grey16)
    assert decode_image(grey16, ImageOptions(channels=1)).tolist() == [[0, 255, 100]]
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 4), (0, 0, 0, 0)).save(cmyk)  # no ink: white
    assert decode_image(cmyk).min() >= 250
    palette = tmp_path / "p.bmp"
    Image.fromarray(columns_image([RED, BLUE])).convert("P").save(palette)
    assert rows_of(decode_image(palette))[0] == [RED, BLUE]


def test_a_large_jpeg_is_drafted_down_and_keeps_its_colour(tmp_path):
    f = save(tmp_path / "big.jpg", np.full((800, 1200, 3), (40, 120, 200)), quality=95)
    a = decode_image(f, ImageOptions((30, 40), "crop"))
    assert a.shape == (3, 30, 40)
    assert np.abs(a.reshape(3, -1).mean(axis=1) - [40, 120, 200]).max() < 4


def test_unreadable_and_oversized_images_are_named(tmp_path, monkeypatch):
    bad = tmp_path / "bad.png"
    bad.write_bytes(os.urandom(200))
    with pytest.raises(DataError, match=r"bad\.png: not a readable image") as e:
        decode_image(bad)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(save(tmp_path / "whole.png", np.random.default_rng(0).integers(0, 256, (50, 50, 3))).read_bytes()[:2000])
    with pytest.raises(DataError, match=r"cut\.png: not a readable image"):
        decode_image(truncated)
    monkeypatch.setattr(images, "MAX_PIXELS", 99)
    with pytest.raises(DataError, match=r"whole\.png: 50 x 50 pixels, over the cap of 99"):
        decode_image(tmp_path / "whole.png")


# --------------------------------------------------------------------------- images: folders
@pytest.fixture
def image_folder(tmp_path):
    """cat: 3 images, dog: 2, of three suffixes (any case); a hidden file and a note, ignored."""
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("cat/b.png", "cat/a.PNG", "cat/c.bmp", "dog/x.webp", "dog/y.png"):
        a = rng.integers(0, 256, (3, 5, 3))
        pixels[name] = a
        save(root / name, a, **({"lossless": True} if name.endswith("webp") else {}))
    (root / "cat" / ".hidden.png").write_bytes(b"not an image")
    (root / "dog" / "notes.txt").write_text("ignored")
    return root, pixels


def test_image_folder_lists_sorted_classes_and_files(image_folder):
    root, _ = image_folder
    listing = images.list_image_folder(root)
    assert listing.classes == ["cat", "dog"]
    assert [f"{f.parent.name}/{f.name}" for f in listing.files] == ["cat/a.PNG", "cat/b.png", "cat/c.bmp", "dog/x.webp", "dog/y.png"]
    assert listing.labels.tolist() == [0, 0, 0, 1, 1] and listing.labels.dtype == np.int64
    assert listing.splits is None


def test_read_image_folder_scales_to_unit_floats(image_folder):
    root, pixels = image_folder
    arrays = images.read_image_folder(root)
    assert arrays.x.shape == (5, 3, 3, 5) and arrays.x.dtype == np.float32
    assert arrays.classes == ["cat", "dog"] and arrays.y.tolist() == [0, 0, 0, 1, 1] and arrays.x_test is None
    np.testing.assert_array_equal(arrays.x[0], pixels["cat/a.PNG"].transpose(2, 0, 1).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(arrays.x[3], pixels["dog/x.webp"].transpose(2, 0, 1).astype(np.float32) / 255.0)
    grey = images.read_image_folder(root, size=[4, 6], channels=1)
    assert grey.x.shape == (5, 4, 6) and 0 <= grey.x.min() and grey.x.max() <= 1


def test_images_of_different_sizes_need_a_size(image_folder):
    root, _ = image_folder
    save(root / "dog" / "z.png", np.zeros((4, 4, 3)))
    with pytest.raises(DataError, match=r"dog/z\.png: decodes to shape \[3, 4, 4\], the files before it to \[3, 3, 5\]; set data\.size"):
        images.read_image_folder(root)
    assert images.read_image_folder(root, size=(3, 5), resize="fill").x.shape == (6, 3, 3, 5)


def test_bad_image_stops_the_read_or_is_skipped_and_counted(image_folder):
    root, _ = image_folder
    (root / "cat" / "broken.png").write_bytes(os.urandom(100))
    with pytest.raises(DataError, match=r"cat/broken\.png: not a readable image"):
        images.read_image_folder(root)
    arrays = images.read_image_folder(root, skip_bad=True)
    assert arrays.skipped == 1 and arrays.x.shape[0] == 5 and arrays.y.tolist() == [0, 0, 0, 1, 1]
    data = datasets.load(path=root, skip_bad=True, test_fraction=0, validation_fraction=0)
    assert data.skipped == 1 and len(data.y_train) == 5 and "1 unreadable files skipped" in repr(data)


def test_empty_class_folder_and_no_class_folders_are_named(tmp_path, image_folder):
    root, _ = image_folder
    (root / "bird").mkdir()
    (root / "bird" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match=r"pets/bird: a class folder with no image files"):
        images.list_image_folder(root)
    flat = tmp_path / "flat"
    save(flat / "a.png", np.zeros((2, 2, 3)))
    with pytest.raises(DataError, match=r"flat: no class folders"):
        images.list_image_folder(flat)


@pytest.fixture
def split_folder(tmp_path):
    root = tmp_path / "split"
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for c, colour in (("a", RED), ("b", BLUE)):
            for i in range(n):
                save(root / split / c / f"{i}.png", np.full((2, 2, 3), colour))
    return root


def test_train_test_val_folders_are_the_folders_own_split(split_folder):
    listing = images.list_image_folder(split_folder)
    assert listing.classes == ["a", "b"]
    assert listing.splits.tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    arrays = images.read_image_folder(split_folder)
    assert len(arrays.y) == 8 and len(arrays.y_test) == 4  # val joins train
    assert arrays.x_test[arrays.y_test == 1][:, 2].min() == 1.0 and arrays.x_test[arrays.y_test == 1][:, 0].max() == 0.0  # b: blue
    data = datasets.load(path=split_folder, validation_fraction=0.25)
    assert datasets.format_of(split_folder) == "images"
    assert len(data.y_test) == 4 and len(data.y_train) + len(data.y_val) == 8 and data.in_shape == (3, 2, 2)


def test_a_test_class_that_train_lacks_is_refused(split_folder):
    save(split_folder / "test" / "c" / "0.png", np.zeros((2, 2, 3)))
    with pytest.raises(DataError, match=r"test/ has a class folder 'c' that train/ lacks"):
        images.list_image_folder(split_folder)


def test_load_reads_an_image_folder_end_to_end(image_folder):
    root, pixels = image_folder
    assert datasets.format_of(root) == "images"
    data = datasets.load(path=root, size=[3, 5], test_fraction=0.4, validation_fraction=0)
    assert data.classes == ["cat", "dog"] and data.in_shape == (3, 3, 5)
    assert len(data.y_train) == 3 and len(data.y_test) == 2
    every = np.concatenate([data.x_train, data.x_test])
    expected = sorted(p.transpose(2, 0, 1).astype(np.float32).sum() / 255 for p in pixels.values())
    np.testing.assert_allclose(sorted(every.reshape(5, -1).sum(axis=1)), expected, rtol=1e-5)


def test_a_confined_guard_refuses_a_folder_linked_from_outside(tmp_path, image_folder):
    root, _ = image_folder
    allowed = tmp_path / "root"
    allowed.mkdir()
    guard = FileGuard(roots=(allowed,), denied=())
    (allowed / "pets").symlink_to(root, target_is_directory=True)
    with pytest.raises(Forbidden, match="not under a data root"):
        datasets.load(path=allowed / "pets", guard=guard)
    inside = allowed / "mine"
    save(inside / "a" / "0.png", np.zeros((2, 2, 3)))
    save(inside / "b" / "0.png", np.zeros((2, 2, 3)))
    (inside / "b" / "1.png").symlink_to(root / "cat" / "a.PNG")  # one file of a folder inside points out
    with pytest.raises(Forbidden, match="not under a data root"):
        images.read_image_folder(inside, guard=guard, skip_bad=True)  # skipping is for unreadable files, not forbidden ones
    (inside / "b" / "1.png").unlink()
    assert images.read_image_folder(inside, guard=guard).x.shape == (2, 3, 2, 2)


# --------------------------------------------------------------------------- audio folders
def write_wav(path, samples, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def write_flac(path, samples, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, format="FLAC", subtype="PCM_16")


def test_audio_class_folder_of_wav_and_flac(tmp_path):
    root = tmp_path / "speech"
    ramp = np.linspace(-0.5, 0.5, 4000)
    write_flac(root / "no" / "1.flac", ramp, 8000)  # 0.5 s at 8 kHz
    write_wav(root / "no" / "2.WAV", np.full(3000, 0.25), 8000)
    stereo = np.stack([np.full(16000, 0.5), np.full(16000, -0.1)], axis=1)  # 1 s at 16 kHz, two channels
    write_flac(root / "yes" / "1.flac", stereo, 16000)
    listing = audio_folder.list_audio_folder(root)
    assert listing.classes == ["no", "yes"] and [f.name for f in listing.files] == ["1.flac", "2.WAV", "1.flac"]
    assert datasets.format_of(root) == "audio"
    arrays = audio_folder.read_audio_folder(root, sample_rate=8000, duration=0.75)
    assert arrays.x.shape == (3, 6000) and arrays.x.dtype == np.float32 and arrays.y.tolist() == [0, 0, 1]
    np.testing.assert_allclose(arrays.x[0, :4000], ramp, atol=1e-4)  # FLAC read back
    assert not arrays.x[0, 4000:].any()  # zero-padded
    np.testing.assert_allclose(arrays.x[1, :3000], 0.25, atol=1e-4)
    np.testing.assert_allclose(arrays.x[2], 0.2, atol=1e-3)  # channels averaged, resampled, cut
    one = audio_folder.decode_audio(root / "yes" / "1.flac", 16000, 0.5)
    assert one.shape == (8000,)


def test_audio_split_folders_and_bad_flac(tmp_path):
    root = tmp_path / "split"
    for split in ("train", "test"):
        for c in ("a", "b"):
            write_wav(root / split / c / "0.wav", np.zeros(100), 8000)
    arrays = audio_folder.read_audio_folder(root)
    assert arrays.x.shape == (4 - 2, 16000) and arrays.x_test.shape == (2, 16000)
    (root / "train" / "a" / "1.flac").write_bytes(b"fLaC" + os.urandom(50))
    with pytest.raises(DataError, match=r"a/1\.flac: not a readable FLAC file"):
        audio_folder.read_audio_folder(root)
    assert audio_folder.read_audio_folder(root, skip_bad=True).skipped == 1


# --------------------------------------------------------------------------- tables
TABLE = "x1,colour,label,x2\n1,red,cat,0.5\n2,blue,dog,\n3,red,cat,1.5\n4,green,dog,2\n"


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.csv.bz2"])
def test_csv_tables_plain_and_compressed(tmp_path, name):
    opener = gzip.open if name.endswith(".gz") else bz2.open if name.endswith(".bz2") else open
    with opener(tmp_path / name, "wt") as f:
        f.write("a,b,label\n1,2.5,0\n3,,1\n-1,0,2\n")
    arrays = tables.read_table(tmp_path / name)
    assert arrays.x.dtype == np.float32 and arrays.x.shape == (3, 2)
    np.testing.assert_array_equal(arrays.x, [[1, 2.5], [3, np.nan], [-1, 0]])
    assert arrays.y.tolist() == [0, 1, 2] and arrays.y.dtype == np.int64
    assert arrays.columns == ["a", "b"] and arrays.first_missing == {"b": 2}
    assert datasets.format_of(tmp_path / name) == "csv"  # the text CSV reader stays the default for .csv


def test_a_text_column_makes_an_object_table(tmp_path):
    (tmp_path / "t.csv").write_text(TABLE)
    arrays = tables.read_table(tmp_path / "t.csv")
    assert arrays.x.dtype == object and arrays.x.shape == (4, 3) and arrays.columns == ["x1", "colour", "x2"]
    assert arrays.x[:, 1].tolist() == ["red", "blue", "red", "green"]
    assert arrays.x[0, 0] == 1.0 and np.isnan(arrays.x[1, 2]) and arrays.y.tolist() == ["cat", "dog", "cat", "dog"]
    chosen = tables.read_table(tmp_path / "t.csv", feature_columns=["x2", "x1"])
    assert chosen.x.dtype == np.float32 and chosen.x[:, 1].tolist() == [1, 2, 3, 4]


def test_parquet_tables(tmp_path):
    t = pa.table({"f": [1.0, None, 3.0], "n": pa.array([1, 2, 3], pa.int16()), "c": pa.array(["a", None, "b"]).dictionary_encode(), "y": [2, 0, 2]})
    pq.write_table(t, tmp_path / "t.parquet")
    assert datasets.format_of(tmp_path / "t.parquet") == "table"
    arrays = tables.read_table(tmp_path / "t.parquet", label_column="y")
    assert arrays.x.dtype == object and arrays.x[:, 2].tolist() == ["a", None, "b"] and arrays.y.tolist() == [2, 0, 2]
    assert arrays.x[:, 1].tolist() == [1.0, 2.0, 3.0] and arrays.first_missing == {"f": 2}
    numbers = tables.read_table(tmp_path / "t.parquet", label_column="y", feature_columns=["n"])
    assert numbers.x.dtype == np.float32 and numbers.x.ravel().tolist() == [1, 2, 3]


def test_missing_columns_are_named_and_the_header_is_not_shown(tmp_path):
    (tmp_path / "t.csv").write_text("secret_a,secret_b,label\n1,2,0\n")
    with pytest.raises(DataError) as e:
        tables.read_table(tmp_path / "t.csv", feature_columns=["x"])
    assert str(e.value) == f"{tmp_path / 't.csv'}: no column 'x' (3 columns in its header; set data.feature_columns)"
    with pytest.raises(DataError, match=r"no column 'y' \(3 columns in its header; set data.label_column\)"):
        tables.read_table(tmp_path / "t.csv", label_column="y")


def test_table_errors_never_quote_a_cell(tmp_path):
    rows = "".join(f"{i},{i % 3}\n" for i in range(600_000))  # over 4 MiB: more than the first block
    (tmp_path / "t.csv").write_text("a,label\n" + rows + "hunter2,1\n")  # a number column turns to text past the first block
    with pytest.raises(DataError) as e:
        tables.read_table(tmp_path / "t.csv")
    assert "hunter2" not in str(e.value) and "column 1 of its header" in str(e.value)
    (tmp_path / "u.csv").write_text("a,label\n1,0\n2,3,hunter2\n")
    with pytest.raises(DataError, match="different number of fields") as e:
        tables.read_table(tmp_path / "u.csv")
    assert "hunter2" not in str(e.value)
    (tmp_path / "v.csv").write_text("a,label\n1,\n")
    with pytest.raises(DataError, match=r"column 'label' has no label in data row 1"):
        tables.read_table(tmp_path / "v.csv")


def test_iter_table_chunks_are_bounded_and_numbered(tmp_path):
    (tmp_path / "t.csv").write_text("a,label\n" + "".join(f"{i},{i % 3}\n" for i in range(25)))
    chunks = list(tables.iter_table(tmp_path / "t.csv", None, None, chunk_rows=10))
    assert [len(c.y) for c in chunks] == [10, 10, 5] and [c.first_row for c in chunks] == [1, 11, 21]
    assert np.concatenate([c.x for c in chunks]).ravel().tolist() == list(range(25))
    pq.write_table(pa.table({"a": list(range(25)), "label": ["x"] * 25}), tmp_path / "t.parquet", row_group_size=7)
    chunks = list(tables.iter_table(tmp_path / "t.parquet", None, None, chunk_rows=5))
    assert max(len(c.y) for c in chunks) <= 5 and sum(len(c.y) for c in chunks) == 25
    assert [c.first_row for c in chunks] == list(np.cumsum([0] + [len(c.y) for c in chunks[:-1]]) + 1)


# --------------------------------------------------------------------------- onehot and impute
def test_missing_numbers_without_impute_name_the_column_and_row(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{i},{'' if i == 6 else i},{i % 2}\n" for i in range(10)))
    data = datasets.load(path=tmp_path / "t.csv", format="table", test_fraction=0.2, validation_fraction=0)
    with pytest.raises(DataError, match=r"column 'b' has no value in data row 7; add impute to data.features"):
        features.prepare(data, [])
    with pytest.raises(DataError, match=r"column 'b' has no value in data row 7"):
        features.prepare(data, [{"standardize": {}}])
    done = features.prepare(data, [{"impute": {"strategy": "mean"}}])
    assert not np.isnan(done.x_train).any() and not np.isnan(done.x_test).any()


def test_impute_strategies_fill_from_the_training_rows():
    train = np.array([[1, np.nan], [3, 5], [np.nan, 5], [8, 2]], dtype=np.float32)
    rows = np.array([[np.nan, np.nan]], dtype=np.float32)
    expected = {"mean": [4, 4], "median": [3, 5], "most_frequent": [1, 5], "constant": [-7, -7]}
    for strategy, want in expected.items():
        step = features.Impute({"strategy": strategy, "value": -7})
        step.fit(train, 0, "cpu")
        np.testing.assert_allclose(step.transform(rows), [want])
        np.testing.assert_array_equal(step.transform(train)[[0, 1, 3], 0], [1, 3, 8])  # present values kept
    empty = features.Impute({"value": 9})
    empty.fit(np.full((3, 1), np.nan, np.float32), 0, "cpu")
    assert empty.transform(np.array([[np.nan]], np.float32)).tolist() == [[9]]


def test_onehot_is_fitted_on_the_training_rows():
    train = np.array([[1.0, "red", 0.5], [2.0, "blue", 1.5], [3.0, "red", 2.5]], dtype=object)
    step = features.OneHot()
    step.fit(train, 0, "cpu")
    later = np.array([[4.0, "green", 3.0], [5.0, "red", 4.0], [6.0, None, 5.0], [7.0, "blue", 6.0]], dtype=object)
    # columns: x1, blue, red, x2 (categories sorted); green was never seen, None is missing: all zeros
    np.testing.assert_array_equal(step.transform(later), [[4, 0, 0, 3], [5, 0, 1, 4], [6, 0, 0, 5], [7, 1, 0, 6]])
    capped = features.OneHot({"max_categories": 1})
    capped.fit(train, 0, "cpu")
    np.testing.assert_array_equal(capped.transform(later)[:, 1], [0, 1, 0, 0])  # red, the most frequent, kept
    with pytest.raises(ValueError):  # pydantic's ValidationError: the option's bound
        features.OneHot({"max_categories": 70000})


def test_text_columns_get_onehot_first_and_the_pipeline_saves_and_restores(tmp_path):
    (tmp_path / "t.csv").write_text(
        "x1,colour,label,x2\n" + "".join(f"{i},{['red', 'blue', 'green'][i % 3]},{['cat', 'dog'][i % 2]},{'' if i % 5 == 0 else i / 2}\n" for i in range(30))
    )
    data = datasets.load(path=tmp_path / "t.csv", format="table", test_fraction=0.2, validation_fraction=0.1)
    assert data.x_train.dtype == object
    done = features.prepare(data, [{"impute": {"strategy": "median"}}, {"standardize": {}}])
    assert [next(iter(d)) for d in done.pipeline.describe()] == ["onehot", "impute", "standardize"]
    assert done.x_train.dtype == np.float32 and done.x_train.shape[1] == 5 and not np.isnan(done.x_train).any()
    np.testing.assert_allclose(done.x_train.mean(axis=0), 0, atol=1e-5)
    saved = tmp_path / "model.npz"
    np.savez(saved, **done.pipeline.arrays())
    with np.load(saved, allow_pickle=False) as f:
        restored = features.Pipeline.restore(done.pipeline.describe(), {k: f[k] for k in f.files})
    np.testing.assert_array_equal(restored.transform(data.x_test), done.x_test)
    np.testing.assert_array_equal(restored.transform(data.x_train), done.x_train)
    assert restored.transform(data.x_test[:0]).shape == (0, 5)


def test_load_reads_a_table_end_to_end_through_a_spec(tmp_path):
    from xsharp.cluster.runner import load_data

    pq.write_table(pa.table({"a": np.arange(40.0), "b": np.arange(40.0) % 4, "c": ["u", "v"] * 20, "kind": ["p", "q"] * 20}), tmp_path / "t.parquet")
    spec = parse_spec({"data": {"path": str(tmp_path / "t.parquet"), "label_column": "kind", "feature_columns": ["b", "c"]}, "model": ["softmax"]})
    data = load_data(spec)
    assert data.classes == ["p", "q"] and data.in_shape == (3,) and data.x_train.dtype == np.float32
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 40


# --------------------------------------------------------------------------- text
def test_text_csv_jsonl_and_parquet(tmp_path):
    (tmp_path / "t.csv").write_text('\ufefflabel,text\npos,"good, fine"\nneg,bad\n', encoding="utf-8")
    with gzip.open(tmp_path / "t.jsonl.gz", "wt") as f:
        f.write(json.dumps({"label": "pos", "text": "good, fine"}) + "\n\n" + json.dumps({"label": "neg", "text": "bad"}) + "\n")
    pq.write_table(pa.table({"label": ["pos", "neg"], "text": ["good, fine", "bad"]}), tmp_path / "t.parquet")
    for name in ("t.csv", "t.jsonl.gz", "t.parquet"):
        arrays = text.read_text(tmp_path / name)
        assert arrays.x.dtype == object and arrays.x.tolist() == ["good, fine", "bad"] and arrays.y.tolist() == ["pos", "neg"], name
    assert datasets.format_of(tmp_path / "t.jsonl.gz") == "text"
    data = datasets.load(path=tmp_path / "t.jsonl.gz", test_fraction=0, validation_fraction=0)
    assert sorted(data.x_train.tolist()) == ["bad", "good, fine"] and data.classes == ["neg", "pos"]


def test_text_that_is_not_utf8_names_the_line(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"label,text\na,fine\nb,fine\nc,caf\xe9 secret\n")
    with pytest.raises(DataError) as e:
        text.read_text(tmp_path / "t.csv")
    assert str(e.value) == f"{tmp_path / 't.csv'}: not UTF-8 text (line 4)"
    (tmp_path / "t.jsonl").write_bytes(b'{"label": "a", "text": "x"}\n{"label": "b", "text": "\xff"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl: not UTF-8 text \(line 2\)"):
        text.read_text(tmp_path / "t.jsonl")


def test_bad_jsonl_lines_are_named(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_text('{"label": "a", "text": "x"}\n{"label": "b", "text": secret}\n')
    with pytest.raises(DataError) as e:
        text.read_text(f)
    assert str(e.value) == f"{f}: line 2 is not valid JSON"
    f.write_text('{"label": "a", "text": "x"}\n["a", "x"]\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        text.read_text(f)
    f.write_text('{"label": "a", "text": "x"}\n{"text": "y"}\n')
    with pytest.raises(DataError, match=r"no label in line 2 \(field 'label'"):
        text.read_text(f)
    f.write_text('{"label": 1, "text": "x"}\n{"label": "b", "text": "y"}\n')
    with pytest.raises(DataError, match="line 2: field 'label' is text here, a number in the lines before"):
        text.read_text(f)
    f.write_text('{"y": 3, "body": "x"}\n{"y": 1, "body": "y"}\n')
    arrays = text.read_text(f, label_column="y", text_column="body")
    assert arrays.y.dtype == np.int64 and arrays.y.tolist() == [3, 1]


def test_iter_text_chunks(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\n" + "".join(f'"line\n{i}",{i % 2}\n' for i in range(7)))
    chunks = list(text.iter_text(tmp_path / "t.csv", None, None, None, chunk_rows=3))
    assert [len(c.x) for c in chunks] == [3, 3, 1] and [c.first_row for c in chunks] == [1, 4, 7]
    assert chunks[1].x[0] == "line\n3" and chunks[2].y.tolist() == ["0"]


# --------------------------------------------------------------------------- the spec
def test_spec_takes_the_reader_options_within_bounds():
    ok = parse_spec(
        {"data": {"path": "x", "size": [32, 48], "resize": "crop", "channels": 1, "feature_columns": ["a"], "skip_bad": True}, "model": ["softmax"]}
    )
    assert ok.data.size == [32, 48] and ok.data.resize == "crop" and ok.data.channels == 1 and ok.data.skip_bad is True
    for bad in ({"size": [0, 4]}, {"size": [4, 5000]}, {"size": [4]}, {"resize": "stretch"}, {"channels": 2}, {"feature_columns": []}, {"skip_bad": "yes"}):
        with pytest.raises(SpecError):
            parse_spec({"data": {"path": "x", **bad}, "model": ["softmax"]})


# --------------------------------------------------------------------------- small files that would exhaust memory
def peak_bytes(fn, *args, **kw):
    """(what fn returned or raised, the peak of Python and numpy allocations while it ran)."""
    import tracemalloc

    tracemalloc.start()
    try:
        try:
            out = fn(*args, **kw)
        except DataError as e:
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def gzip_with_long_line(path, before, after, mib=16):
    """A .gz whose line after ``before`` holds ``mib`` MiB (written 1 MiB at a time: ~16 KB on disk)."""
    with gzip.open(path, "wb") as f:
        f.write(before)
        chunk = b"a" * (1 << 20)
        for _ in range(mib):
            f.write(chunk)
        f.write(after)
    return path


def test_a_text_line_or_row_over_the_cap_is_refused_without_reading_it_whole(tmp_path):
    jsonl = gzip_with_long_line(tmp_path / "t.jsonl.gz", b'{"label": "a", "text": "ok"}\n{"label": "b", "text": "', b'"}\n')
    assert jsonl.stat().st_size < 100_000
    err, peak = peak_bytes(text.read_text, jsonl)
    assert isinstance(err, DataError) and "t.jsonl.gz: line 2 is longer than 1048576 bytes" in str(err) and "aaaa" not in str(err)
    assert peak < 6 << 20, peak
    csv_file = gzip_with_long_line(tmp_path / "t.csv.gz", b"label,text\na,ok\nb,", b"\n")
    err, peak = peak_bytes(text.read_text, csv_file)
    assert isinstance(err, DataError) and "t.csv.gz: line 3 is longer" in str(err)
    assert peak < 6 << 20, peak
    with pytest.raises(DataError, match=r"t.csv.gz: line 3 is longer"):  # the csv format of datasets.load too
        datasets._csv(csv_file)
    # a quoted field of many short lines: each line fits, the row does not
    many = tmp_path / "many.csv"
    many.write_bytes(b'label,text\na,ok\nb,"' + b"x" * 1000 + b"\n" * 1 + (b"y" * 1000 + b"\n") * 1100 + b'"\n')
    with pytest.raises(DataError, match=r"many.csv: the row ending at line \d+ is longer than 1048576 bytes"):
        text.read_text(many)
    with pytest.raises(DataError, match=r"many.csv: the row ending at line \d+ is longer"):
        datasets._csv(many)
    fine = tmp_path / "fine.csv"
    fine.write_text('label,text\na,"two\nlines"\nb,' + "z" * 500_000 + "\n")
    assert [len(t) for t in text.read_text(fine).x] == [9, 500_000]
    assert text.MAX_TEXT_BYTES == datasets.MAX_TEXT_BYTES == 1 << 20


def test_compressed_text_and_tables_are_capped_once_decompressed(tmp_path):
    rows = "".join(f'{{"label": {i % 2}, "text": "row {i}"}}\n' for i in range(5000))
    jsonl = tmp_path / "t.jsonl.gz"
    jsonl.write_bytes(gzip.compress(rows.encode()))
    table = tmp_path / "t.csv.bz2"
    table.write_bytes(bz2.compress(("label,a\n" + "".join(f"{i % 2},{i}\n" for i in range(20000))).encode()))
    small, big = FileGuard(max_file_bytes=50_000), FileGuard(max_file_bytes=1 << 20)
    assert jsonl.stat().st_size < 50_000 and table.stat().st_size < 50_000  # the compressed files fit the cap
    for read, path in ((text.read_text, jsonl), (tables.read_table, table), (datasets.read_idx, table)):
        with pytest.raises(DataError, match=rf"{path.name}: over 50000 bytes once decompressed") as e:
            read(path, guard=small)
        assert "row 1" not in str(e.value)
    assert len(text.read_text(jsonl, guard=big).y) == 5000
    assert tables.read_table(table, guard=big).x.shape == (20000, 1)  # pyarrow reads through the capped stream


def test_audio_source_rate_is_bounded_and_only_the_duration_is_resampled(tmp_path):
    t = np.arange(8000 * 5) / 8000
    write_wav(tmp_path / "long.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000)  # 5 s, 80 KB
    a, peak = peak_bytes(audio_folder.decode_audio, tmp_path / "long.wav", 384_000, 0.01)
    assert a.shape == (3840,) and peak < 2 << 20, peak  # the whole file resampled would be 1.9 M samples
    src, _ = datasets.read_wav(tmp_path / "long.wav")
    assert np.allclose(a, datasets._resample(src, 8000, 384_000)[:3840])  # the same samples as before
    for rate in (999, 400_000, 1):  # 1 Hz last: before the bound it would take 1.2 GB
        write_wav(tmp_path / f"r{rate}.wav", np.zeros(400), rate)
        with pytest.raises(DataError, match=rf"r{rate}.wav: a sample rate of {rate} Hz"):
            audio_folder.decode_audio(tmp_path / f"r{rate}.wav", 384_000, 1.0)


def test_sixteen_bit_and_transparent_images_convert_without_wide_copies(tmp_path, monkeypatch):
    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((2000, 2000), 40000, dtype=np.uint16)).save(grey)  # I;16, a few KB
    assert grey.stat().st_size < 100_000
    a, peak = peak_bytes(decode_image, grey, ImageOptions(channels=1))
    assert a.shape == (2000, 2000) and (a == 156).all()  # round(40000 / 257)
    assert peak < 20 << 20, peak  # float64 copies of it: 32 MB each
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((2000, 2000, 4), (200, 100, 50, 128), dtype=np.uint8), "RGBA").save(rgba)
    a, peak = peak_bytes(decode_image, rgba, ImageOptions())
    assert a.shape == (3, 2000, 2000) and a[:, 0, 0].tolist() == [100, 50, 25]
    assert peak < 36 << 20, peak  # a uint16 copy of the whole image: 32 MB
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 10_000)
    small = save(tmp_path / "l.png", np.zeros((100, 100)))
    assert decode_image(small, ImageOptions(channels=1)).shape == (100, 100)  # 10,000 bytes: at the cap
    Image.fromarray(np.zeros((100, 100), dtype=np.uint16)).save(tmp_path / "i16.png")
    with pytest.raises(DataError, match=r"i16.png: 100 x 100 pixels of mode I;16, 20000 bytes once decoded, over the cap of 10000"):
        decode_image(tmp_path / "i16.png")


def test_folder_options_making_a_row_over_the_cap_are_refused_before_decoding(tmp_path, monkeypatch):
    from xsharp.data import folders

    nowhere = tmp_path / "no-such-folder"  # refused before the folder is even listed
    with pytest.raises(DataError, match=r"^data.duration 3600 s x data.sample_rate 384000 Hz x 4 bytes: 5529600000 bytes a row, over the cap"):
        audio_folder.read_audio_folder(nowhere, sample_rate=384_000, duration=3600)
    assert folders.MAX_ROW_BYTES == 64 << 20
    assert folders.row_bytes("images", (4096, 4096), 3) == 48 << 20
    assert folders.row_bytes("images", None, 3) == 0
    assert folders.row_bytes("audio", sample_rate=384_000, duration=3600) == 5_529_600_000
    assert folders.row_bytes("audio", None, 3, 16000, 1.0) == 64000
    monkeypatch.setattr(folders, "MAX_ROW_BYTES", 1000)
    with pytest.raises(DataError, match=r"^data.size \[20, 20\] x 3 channels: 1200 bytes a row"):
        images.read_image_folder(nowhere, size=[20, 20])

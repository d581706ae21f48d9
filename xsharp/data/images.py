"""Image folders: ``ROOT/CLASS/*.{jpg,jpeg,png,bmp,webp}`` (suffixes in any case), one folder per
class; ``ROOT/train/CLASS/...`` beside ``ROOT/test/...`` and/or ``ROOT/val/...`` is the folder's
own split (see :mod:`xsharp.data.folders`). Other files in a class folder are ignored.

An image becomes uint8 pixels, ``(H, W)`` grey or ``(3, H, W)`` RGB (channels first, as the
conv modules take them). With a ``size`` every image is brought to it, as NVIDIA DIGITS did:

- ``squash``: resized to H x W, the aspect ratio ignored;
- ``crop``: scaled so the short side fits, then the centre cut out;
- ``fill``: scaled so the long side fits, then padded with zeros around it, centred.

Without a size every image must already have the same size. Transparent pixels are composited
over black (the padding's colour); 16-bit grey is brought to 8 bits; CMYK and palettes become
RGB. Pixels are used as stored: an EXIF orientation tag is not applied.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from xsharp.fileguard import ANYWHERE, DataError, FileGuard

from . import source_files
from .arrays import Arrays
from .folders import FolderListing, check_row_bytes, decode_files, list_class_folders, split_arrays

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
FORMATS = ["PNG", "JPEG", "BMP", "WEBP"]  # Pillow's decoders tried, and no other
MAX_PIXELS = 50_000_000  # width x height of one image, checked before its pixels are decoded
MAX_DECODED_BYTES = 256 << 20  # bytes of one image's decoded pixels (by its mode), checked from its header

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "FolderListing",
    "ImageOptions",
    "decode_image",
    "decode_image_bytes",
    "list_image_folder",
    "read_image_folder",
]


@dataclass(frozen=True)
class ImageOptions:
    size: tuple[int, int] | None = None  # (H, W); None: keep each image's own size
    resize: Literal["squash", "crop", "fill"] = "squash"
    channels: Literal[1, 3] = 3

    def __post_init__(self) -> None:
        if self.resize not in ("squash", "crop", "fill"):
            raise DataError(f"data.resize: one of squash, crop, fill, got {self.resize!r}")
        if self.channels not in (1, 3):
            raise DataError(f"data.channels: 1 or 3, got {self.channels!r}")
        if self.size is not None and (len(self.size) != 2 or not all(1 <= int(s) <= 4096 for s in self.size)):
            raise DataError(f"data.size: [H, W], each 1..4096, got {list(self.size)}")


def _why(e: BaseException) -> str:
    """A decoder's failure in words of our own: Pillow's messages may quote the file's bytes."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        return "not a PNG, JPEG, BMP or WebP image"
    if isinstance(e, Image.DecompressionBombError):
        return f"over {MAX_PIXELS} pixels"
    if isinstance(e, (EOFError, SyntaxError)) or "truncated" in str(e):
        return "truncated or malformed"
    return source_files.why(e)


def _target(width: int, height: int, options: ImageOptions) -> tuple[int, int]:
    """(width, height) of the image scaled as ``options.resize`` says, before any crop or pad."""
    H, W = options.size
    if options.resize == "squash":
        return W, H
    scale = max(W / width, H / height) if options.resize == "crop" else min(W / width, H / height)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


_ROWS_AT_ONCE = 256  # rows of an image converted per numpy step: bounds the temporaries


def _by_rows(a: np.ndarray, shape: tuple[int, ...], step) -> np.ndarray:
    """uint8 ``step(a[rows])`` a band of rows at a time, so no whole-image wider copy is made."""
    out = np.empty(shape, dtype=np.uint8)
    for lo in range(0, a.shape[0], _ROWS_AT_ONCE):
        out[lo : lo + _ROWS_AT_ONCE] = step(a[lo : lo + _ROWS_AT_ONCE])
    return out


def _as_mode(img: Any, channels: int) -> Any:
    """``img`` as 8-bit ``L`` (channels 1) or ``RGB`` (channels 3), whatever its stored mode.
    Integer arithmetic a band of rows at a time: a 95 KB 16-bit PNG may hold 49 M pixels."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey: scale (round(v / 257)), do not clip
        a = np.asarray(img)
        img = Image.fromarray(_by_rows(a, a.shape, lambda r: (np.clip(r, 0, 65535).astype(np.uint32) + 128) // 257), "L")
    elif img.mode == "F":
        a = np.asarray(img)
        img = Image.fromarray(_by_rows(a, a.shape, lambda r: np.clip(np.rint(r), 0, 255)), "L")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":  # over black: colour x alpha
        a = np.asarray(img)
        img = Image.fromarray(_by_rows(a, (*a.shape[:2], 3), lambda r: (r[..., :3].astype(np.uint16) * r[..., 3:] + 127) // 255), "RGB")
    if img.mode not in ("L", "RGB"):  # 1, P, CMYK, YCbCr...: through RGB, which every mode converts to
        img = img.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def decoded_bytes(img: Any) -> int:
    """Bytes Pillow holds for ``img``'s pixels once loaded, from its header: 1 a pixel for 1, L,
    P; 2 for 16-bit grey; 4 for I, F and every mode of several bands (Pillow keeps those 4 bytes
    a pixel)."""
    width, height = img.size
    mode = img.mode
    per = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return width * height * per


def _fit(img: Any, options: ImageOptions) -> Any:
    """``img`` brought to ``options.size`` by ``options.resize``."""
    from PIL import Image

    H, W = options.size
    width, height = img.size
    if (width, height) == (W, H):
        return img
    bilinear = Image.Resampling.BILINEAR
    if options.resize == "squash":
        return img.resize((W, H), bilinear)
    if options.resize == "crop":  # resample only the centre box of the source that lands in the output
        scale = max(W / width, H / height)
        cw, ch = W / scale, H / scale
        left, top = (width - cw) / 2, (height - ch) / 2
        return img.resize((W, H), bilinear, box=(left, top, left + cw, top + ch))
    w, h = _target(width, height, options)
    w, h = min(w, W), min(h, H)
    canvas = Image.new(img.mode, (W, H))  # zeros
    canvas.paste(img.resize((w, h), bilinear), ((W - w) // 2, (H - h) // 2))
    return canvas


def decode_image(path: str | Path, options: ImageOptions = ImageOptions(), guard: FileGuard = ANYWHERE) -> np.ndarray:
    """One image file as uint8 pixels: ``(H, W)`` for channels 1, ``(3, H, W)`` for channels 3."""
    try:
        with guard.open(path) as f:
            data = f.read()  # one read: Pillow's own reads are many small ones, each holding the GIL
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"{path}: not a readable image ({_why(e)})") from None
    return decode_image_bytes(data, options, path)


def decode_image_bytes(data: bytes, options: ImageOptions, path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """``decode_image`` of a file's bytes already read (``path`` names it in errors): an import
    hashes the same bytes it decodes, reading each file once."""
    from PIL import Image

    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels  # the module's cap, read when called
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                raise DataError(f"{path}: {width} x {height} pixels, over the cap of {max_pixels} an image")
            if options.size is not None and img.format == "JPEG":
                w, h = _target(width, height, options)
                if w < width and h < height:  # the JPEG decoder scales by 1/2, 1/4, 1/8 as it reads: far faster
                    img.draft("L" if options.channels == 1 else "RGB", (w, h))
            if decoded_bytes(img) > MAX_DECODED_BYTES:  # after draft: the JPEG decoder's own scaling counts
                raise DataError(
                    f"{path}: {width} x {height} pixels of mode {img.mode}, {decoded_bytes(img)} bytes once decoded, "
                    f"over the cap of {MAX_DECODED_BYTES} bytes an image"
                )
            img.load()
            img = _as_mode(img, options.channels)
            if options.size is not None:
                img = _fit(img, options)
            a = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # Pillow's decoders raise many kinds, and their words may quote bytes
        raise DataError(f"{path}: not a readable image ({_why(e)})") from None
    return a if options.channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


def list_image_folder(root: str | Path, guard: FileGuard = ANYWHERE) -> FolderListing:
    """Every image of every class folder under ``root``, sorted; the folder's own split if it has one."""
    return list_class_folders(root, IMAGE_SUFFIXES, "image", guard)


def read_image_folder(
    path: str | Path,
    size: tuple[int, int] | list[int] | None = None,
    resize: Literal["squash", "crop", "fill"] = "squash",
    channels: Literal[1, 3] = 3,
    guard: FileGuard = ANYWHERE,
    skip_bad: bool = False,
    **_: Any,
) -> Arrays:
    """An image folder as float32 pixels in [0, 1] (the ``images`` format of ``datasets.load``).

    A ``test/`` folder becomes the test rows; ``val/`` rows join the training rows (``load`` takes
    its validation share from them). ``skip_bad``: leave out (and count in ``Arrays.skipped``)
    the files that are not readable images, instead of stopping at the first."""
    options = ImageOptions(tuple(size) if size is not None else None, resize, channels)
    check_row_bytes("images", options.size, options.channels)
    listing = list_image_folder(path, guard)
    decoded = decode_files(
        listing.files,
        lambda f: decode_image(f, options, guard),
        str(path),
        divisor=255.0,
        skip_bad=skip_bad,
        mismatch="; set data.size (e.g. [224, 224]) to resize every image" if options.size is None else "",
    )
    return split_arrays(decoded, listing)

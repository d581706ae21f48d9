"""A few rows of a dataset to look at: thumbnails of images, the first values of other rows.

``xsharp data show`` writes a contact sheet (a row of thumbnails per class); the service's
``GET /v1/datasets/{owner}/{name}/samples`` and the console's Datasets page show the same picks.
Reading is bounded: a few shards, a few hundred MiB at most, whatever the dataset's size.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xsharp.fileguard import DataError

from .manifest import Manifest
from .shards import read_shard

THUMB = 64  # thumbnails are scaled to about this many pixels a side
MAX_SAMPLES = 32
MAX_SAMPLE_SHARDS = 4  # a pick reads at most this many shards ...
MAX_SAMPLE_BYTES = 256 * 1024**2  # ... and at most this many bytes of them
MAX_THUMB_PIXELS = 4096 * 4096


@dataclass
class Sample:
    label: int
    cls: str
    x: Any  # the stored row (uint8 image, float row, text ...)


def pick(folder: Path, m: Manifest, split: str = "train", count: int = 12, label: int | None = None) -> list[Sample]:
    """Up to ``count`` rows of ``split`` (of class ``label`` only, if given): round-robin over
    the classes found in its first shards."""
    count = max(0, min(count, MAX_SAMPLES))
    by_class: dict[int, list] = {}
    per_class = count if label is not None else max(1, math.ceil(count / max(1, m.n_classes)))
    read = 0
    for info in m.shards_of(split)[:MAX_SAMPLE_SHARDS]:
        read += info.bytes
        if read > MAX_SAMPLE_BYTES:
            if not by_class:
                raise DataError(f"{m.ref}: its shards are over {MAX_SAMPLE_BYTES // 1024**2} MiB, too big to sample here")
            break
        shard = read_shard(folder, info, m.ref)
        for i, y in enumerate(shard.y.tolist()):
            if label is not None and y != label:
                continue
            got = by_class.setdefault(int(y), [])
            if len(got) < count:
                got.append(shard.x[i])
        if sum(min(len(v), per_class) for v in by_class.values()) >= count and (label is not None or len(by_class) >= m.n_classes):
            break
    picked: list[Sample] = []
    order = sorted(by_class)
    depth = 0
    while len(picked) < count and any(depth < len(by_class[c]) for c in order):
        for c in order:
            if depth < len(by_class[c]) and len(picked) < count:
                picked.append(Sample(c, m.classes[c] if 0 <= c < m.n_classes else str(c), by_class[c][depth]))
        depth += 1
    return picked


def is_image(m: Manifest, x: Any) -> bool:
    a = np.asarray(x)
    if a.dtype == object or a.ndim not in (2, 3) or a.size > MAX_THUMB_PIXELS * 4:
        return False
    if m.kind == "images" or a.dtype == np.uint8:
        return a.ndim == 2 or a.shape[0] in (1, 3, 4) or a.shape[-1] in (1, 3, 4)
    return False


def thumbnail(x: Any, size: int = THUMB):
    """An image row (uint8 or floats in [0, 1]; (H, W), (C, H, W) or (H, W, C)) as a Pillow
    image of about ``size`` pixels a side."""
    from PIL import Image

    a = np.asarray(x)
    if a.dtype != np.uint8:
        a = np.nan_to_num(a.astype(np.float32))
        if a.size and float(a.max()) <= 1.0 and float(a.min()) >= 0.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3:
        if a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
            a = np.transpose(a, (1, 2, 0))  # channels first -> last
        if a.shape[-1] == 1:
            a = a[..., 0]
    img = Image.fromarray(np.ascontiguousarray(a))
    side = max(img.size)
    if side < size:
        factor = math.ceil(size / side)
        img = img.resize((img.size[0] * factor, img.size[1] * factor), Image.NEAREST)
    elif side > 2 * size:
        img.thumbnail((2 * size, 2 * size))
    return img


def png(x: Any, size: int = THUMB) -> bytes:
    buf = io.BytesIO()
    thumbnail(x, size).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(samples: list[Sample], size: int = THUMB) -> bytes:
    """One PNG: a row of thumbnails per class."""
    from PIL import Image

    classes = sorted({s.label for s in samples})
    per_row = max((sum(s.label == c for s in samples) for c in classes), default=1)
    thumbs = [(s.label, thumbnail(s.x, size)) for s in samples]
    w = max((t.width for _, t in thumbs), default=size)
    h = max((t.height for _, t in thumbs), default=size)
    sheet = Image.new("RGB", (per_row * (w + 2), max(1, len(classes)) * (h + 2)), "white")
    for r, c in enumerate(classes):
        for k, t in enumerate(t for label, t in thumbs if label == c):
            sheet.paste(t.convert("RGB"), (k * (w + 2), r * (h + 2)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _json_value(v: Any, limit: int = 200) -> Any:
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8", "replace")
    if isinstance(v, str):
        return v if len(v) <= limit else v[:limit] + "…"
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)[:limit]
    return None if not math.isfinite(f) else round(f, 6)


def json_row(x: Any, max_items: int = 32) -> Any:
    """A row as JSON: a text cut at 200 characters; a table row or array, its first values."""
    a = np.asarray(x, dtype=object) if not isinstance(x, np.ndarray) else x
    if a.ndim == 0:
        return _json_value(a.item() if hasattr(a, "item") else a)
    flat = a.reshape(-1)[:max_items]
    return [_json_value(v) for v in flat.tolist()]

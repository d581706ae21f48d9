"""A few rows of a dataset to look at: thumbnails of images, the first values of other rows.

``xsharp data show`` writes a contact sheet (a row of thumbnails per class); the service's
``/v1/datasets/.../samples`` and the console's Datasets page show the same picks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import Manifest
from .shards import read_shard

THUMB = 64  # pixels on a thumbnail's longer side
MAX_SAMPLES = 64


@dataclass
class Sample:
    label: int
    cls: str
    x: np.ndarray  # the stored row (uint8 image, float row, text ...)


def pick(folder: Path, m: Manifest, per_class: int = 4, limit: int = 32, split: str = "train") -> list[Sample]:
    """Up to ``per_class`` rows of each class, at most ``limit`` in all, from the split's first
    shards (one shard in memory at a time)."""
    limit = max(0, min(limit, MAX_SAMPLES))
    taken: dict[int, int] = {}
    out: list[Sample] = []
    for info in m.shards_of(split) or m.shards:
        rows = read_shard(folder, info, f"dataset {m.ref}")
        for x, y in zip(rows.x, rows.y.tolist()):
            if taken.get(y, 0) < per_class:
                taken[y] = taken.get(y, 0) + 1
                out.append(Sample(y, m.classes[y] if y < len(m.classes) else str(y), x))
                if len(out) >= limit:
                    return sorted(out, key=lambda s: s.label)
        if len(taken) == m.n_classes and all(n >= per_class for n in taken.values()):
            break
    return sorted(out, key=lambda s: s.label)


def is_image(m: Manifest) -> bool:
    return m.dtype == "uint8" and (len(m.shape) == 2 or (len(m.shape) == 3 and m.shape[0] in (1, 3)))


def thumbnail(x: np.ndarray, size: int = THUMB):
    """A stored image row (uint8, (H, W) or (C, H, W)) as a Pillow image scaled up to ``size``."""
    from PIL import Image

    a = x if x.ndim == 2 else (x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1))
    img = Image.fromarray(np.ascontiguousarray(a))
    scale = max(1, size // max(img.size))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def png(x: np.ndarray, size: int = THUMB) -> bytes:
    buf = io.BytesIO()
    thumbnail(x, size).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(samples: list[Sample], size: int = THUMB) -> bytes:
    """One PNG: a row of thumbnails per class."""
    from PIL import Image

    classes = sorted({s.label for s in samples})
    per_row = max((sum(s.label == c for s in samples) for c in classes), default=1)
    thumbs = {id(s): thumbnail(s.x, size) for s in samples}
    w = max((t.width for t in thumbs.values()), default=size)
    h = max((t.height for t in thumbs.values()), default=size)
    sheet = Image.new("RGB", (per_row * (w + 2), max(1, len(classes)) * (h + 2)), "white")
    for r, c in enumerate(classes):
        for k, s in enumerate([s for s in samples if s.label == c]):
            sheet.paste(thumbs[id(s)].convert("RGB"), (k * (w + 2), r * (h + 2)))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def describe_row(x: np.ndarray, width: int = 8) -> str:
    """A table or text row in a line: its first values."""
    if not isinstance(x, np.ndarray) or x.ndim == 0:
        text = str(x.item() if isinstance(x, np.ndarray) else x)
        return text[:80] + ("…" if len(text) > 80 else "")
    flat = np.ravel(x)
    shown = ", ".join(f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)[:20] for v in flat[:width].tolist())
    return shown + (f", … ({flat.size} values)" if flat.size > width else "")

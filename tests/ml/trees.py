"""Tiny folder-per-class image trees for the data, training and evaluation tests, generated with Pillow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from tests.ml.factories import photo

# A distinct colour per folder, blended into each random photo, so that a couple of epochs can learn something.
TINTS = ((200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60), (120, 120, 120))


def image_tree(root: Path, counts: Mapping[str, int], *, size: int = 64, group_size: int | None = None) -> Path:
    """Write ``counts[folder]`` JPEGs per folder under ``root``. With ``group_size``, also a ``manifest.csv`` whose
    notes tie every ``group_size`` consecutive photos of a folder into one ``group=`` key."""
    rows = ["file,label,notes"]
    for index, (folder, count) in enumerate(counts.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        tint = Image.new("RGB", (size, size), TINTS[index % len(TINTS)])
        for i in range(count):
            name = f"{folder}/{folder}_{i:03d}.jpg"
            Image.blend(tint, photo(size, size, seed=index * 1000 + i), 0.4).save(root / name, quality=90)
            if group_size:
                rows.append(f"{name},{folder},origin=test; group={folder}-{i // group_size}")
    if group_size:
        (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root

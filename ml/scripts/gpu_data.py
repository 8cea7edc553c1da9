"""Pack what a GPU machine needs to train: a copy of a folder-per-class tree downscaled to the loader's training
size, the manifest, and the backbone weights.

``python -m ml.scripts.gpu_data --out .gpudata`` writes ``.gpudata/mpox-skin/`` and
``.gpudata/shufflenetv2_x0.5_backbone_tv.pth``. The device machine cannot read ``../shared`` and its working tree
is capped at 64 MiB, and the loader shrinks every photo to a 256-pixel short side anyway, so the copy keeps each
photo upright (EXIF applied), RGB, at that size, as JPEG quality 93 under its original name (PNG names included:
the decoder goes by content, and PNG at this size would not fit the cap). ``.gitignore`` keeps ``.gpudata/`` out
of git; name it in the device call's ``carry``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ml.data import IMAGE_SUFFIXES, shrink
from ml.imaging import open_image
from ml.train import DEFAULT_BACKBONE, DEFAULT_DATA

SHORT_SIDE = 256
QUALITY = 93


def copy_photo(source: Path, target: Path) -> None:
    image = shrink(open_image(source, target_short_side=SHORT_SIDE), short_side=SHORT_SIDE)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        image.save(handle, format="JPEG", quality=QUALITY)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.scripts.gpu_data", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--out", type=Path, default=Path(".gpudata"))
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"data folder {args.data} does not exist")
    if not args.backbone.is_file():
        parser.error(f"backbone weights {args.backbone} do not exist")
    target = args.out / args.data.name
    photos = [p for p in sorted(args.data.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda p: copy_photo(p, target / p.relative_to(args.data)), photos))
    for extra in ("manifest.csv", "SOURCES.md"):
        if (args.data / extra).is_file():
            shutil.copy2(args.data / extra, target / extra)
    shutil.copy2(args.backbone, args.out / args.backbone.name)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    sys.stdout.write(f"{len(photos)} photos into {target}, {size / 2**20:.1f} MiB in {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

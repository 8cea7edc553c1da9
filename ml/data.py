"""Datasets: folder-per-class trees (optionally with a manifest), group-aware folds and an in-memory image cache."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ml.checkpoint import Preprocessing
from ml.imaging import centre_crop, open_image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
GROUP_PATTERN = re.compile(r"(?:^|;)\s*group=([^;]+)")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: str
    group: str

    def relative_to(self, root: Path) -> str:
        return self.path.relative_to(root).as_posix()


@dataclass(frozen=True)
class Dataset:
    """Known-class images (the model's classes) and out-of-distribution folders, from one tree."""

    root: Path
    class_names: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    ood: dict[str, tuple[ImageRecord, ...]]
    manifest_sha256: str

    @property
    def labels(self) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[r.label] for r in self.records], dtype=np.int64)

    @property
    def groups(self) -> np.ndarray:
        return np.array([r.group for r in self.records])


def load_dataset(root: str | Path, *, class_names: Sequence[str] | None = None) -> Dataset:
    """Read a folder-per-class tree. With ``manifest.csv`` its ``notes`` column supplies ``group=`` keys that tie
    crops of one photo together; otherwise every file is its own group. Folders not in ``class_names`` become
    out-of-distribution sets. Without ``class_names`` every folder is a class.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root} has no class folders")
    names = tuple(class_names) if class_names is not None else tuple(folders)
    missing = [n for n in names if n not in folders]
    if missing:
        raise ValueError(f"{root} lacks class folder(s): {', '.join(missing)}")

    manifest = root / "manifest.csv"
    groups = _manifest_groups(manifest) if manifest.is_file() else {}
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else _listing_hash(root, folders)

    def records_in(folder: str) -> tuple[ImageRecord, ...]:
        files = sorted(p for p in (root / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        return tuple(
            ImageRecord(path=p, label=folder, group=groups.get(p.relative_to(root).as_posix(), f"{folder}/{p.stem}"))
            for p in files
        )

    records = tuple(r for name in names for r in records_in(name))
    if not records:
        raise ValueError(f"{root} has no images in the class folders")
    ood = {folder: records_in(folder) for folder in folders if folder not in names}
    return Dataset(root=root, class_names=names, records=records, ood=ood, manifest_sha256=digest)


def _manifest_groups(path: Path) -> dict[str, str]:
    groups: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            match = GROUP_PATTERN.search(row.get("notes") or "")
            if match:
                # Group keys are only unique within a label's source, so keep them as given: the manifest's
                # groups already span labels when one photo appears under two names.
                groups[row["file"]] = f"group:{match.group(1).strip()}"
    return groups


def _listing_hash(root: Path, folders: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for p in sorted((root / folder).iterdir()):
            digest.update(f"{folder}/{p.name}:{p.stat().st_size}\n".encode())
    return digest.hexdigest()


def group_stratified_folds(dataset: Dataset, *, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Five (train, test) index pairs, stratified by class, with no group on both sides of a split."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    labels, groups = dataset.labels, dataset.groups
    folds = [(train, test) for train, test in splitter.split(np.zeros(len(labels)), labels, groups)]
    for train, test in folds:
        if set(groups[train]) & set(groups[test]):
            raise AssertionError("a photo group straddles train and test")
    return folds


def stratified_folds(dataset: Dataset, *, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Five (train, test) index pairs stratified by class only, as the paper split its data: crops and re-framings
    of one photo may land on both sides. Only for measuring how much that flatters a model, never for a shipped one."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    labels = dataset.labels
    return [(train, test) for train, test in splitter.split(np.zeros(len(labels)), labels)]


def groups_shared(dataset: Dataset, train: np.ndarray, test: np.ndarray) -> int:
    """How many test photos have a crop or re-framing of the same photo among the training photos."""
    groups = dataset.groups
    seen = set(groups[train])
    return int(sum(g in seen for g in groups[test]))


@dataclass(frozen=True)
class OodFold:
    """Where one out-of-distribution photo sits in the cross-validation."""

    record: ImageRecord
    fold: int  # 1-based test fold
    shares_group_with_known: bool  # the same photo (group) is also filed under a model class


def ood_folds(
    dataset: Dataset, folds: Sequence[tuple[np.ndarray, np.ndarray]], *, seed: int = 0
) -> dict[str, tuple[OodFold, ...]]:
    """Give every out-of-distribution photo a test fold, so that outlier exposure trains on some of them and is
    scored on the others. A photo whose group also appears under a model class follows that group's fold (and must
    never be trained as an outlier: it carries a class label elsewhere); the rest are split group-aware and
    stratified by folder."""
    from sklearn.model_selection import StratifiedGroupKFold

    known_groups = dataset.groups
    fold_of_group = {known_groups[i]: k for k, (_, test) in enumerate(folds, start=1) for i in test}
    own = [r for rs in dataset.ood.values() for r in rs if r.group not in fold_of_group]
    fold_of_path: dict[Path, int] = {}
    if own:
        n_splits = min(len(folds), len({r.group for r in own}))
        if n_splits >= 2:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            folders = np.array([r.label for r in own])
            groups = np.array([r.group for r in own])
            for k, (_, test) in enumerate(splitter.split(np.zeros(len(own)), folders, groups), start=1):
                fold_of_path.update({own[i].path: k for i in test})
        else:
            fold_of_path.update({r.path: 1 for r in own})
    return {
        folder: tuple(
            OodFold(
                record=r,
                fold=fold_of_group[r.group] if r.group in fold_of_group else fold_of_path[r.path],
                shares_group_with_known=r.group in fold_of_group,
            )
            for r in records
        )
        for folder, records in dataset.ood.items()
    }


def shrink(image: Image.Image, *, short_side: int) -> Image.Image:
    """Downscale (never enlarge) so the short side is ``short_side``."""
    scale = short_side / min(image.size)
    if scale >= 1:
        return image
    return image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
    )


class ImageCache:
    """Every image decoded once per run: a downscaled copy for augmentation and the fixed eval crop."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        *,
        train_short_side: int = 256,
        eval_resize: int = 224,
        input_size: int = 224,
        threads: int = 2,
    ) -> None:
        self.train_images: dict[Path, Image.Image] = {}
        self.eval_arrays: dict[Path, np.ndarray] = {}

        preprocessing = Preprocessing(input_size=input_size, resize=eval_resize)

        def load(record: ImageRecord) -> tuple[Path, Image.Image, np.ndarray]:
            # The production decoder and crop (ml.imaging), so cross-validation scores what the site will see.
            image = open_image(record.path, target_short_side=eval_resize)
            view = centre_crop(image, preprocessing)
            return record.path, shrink(image, short_side=train_short_side), np.asarray(view, dtype=np.uint8)

        unique = list({r.path: r for r in records}.values())
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for path, image, view in pool.map(load, unique):
                self.train_images[path] = image
                self.eval_arrays[path] = view
        logger.info("decoded %d images into memory", len(unique))

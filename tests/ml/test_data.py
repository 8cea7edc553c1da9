from __future__ import annotations

import numpy as np
import pytest

from ml.data import group_stratified_folds, groups_shared, load_dataset, stratified_folds
from tests.ml.trees import image_tree

CLASSES = ("chickenpox", "monkeypox")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = image_tree(
        tmp_path_factory.mktemp("data"), {"chickenpox": 20, "monkeypox": 30, "hfmd": 3}, size=16, group_size=2
    )
    return load_dataset(root, class_names=CLASSES)


def test_manifest_groups_and_out_of_distribution_folders_are_read(dataset) -> None:
    assert dataset.class_names == CLASSES
    assert len(dataset.records) == 50
    assert list(dataset.ood) == ["hfmd"]
    assert len(dataset.ood["hfmd"]) == 3
    assert not {r.path for r in dataset.ood["hfmd"]} & {r.path for r in dataset.records}
    assert len(set(dataset.groups)) == 25
    assert dataset.records[0].group == "group:chickenpox-0"


def test_groups_never_straddle_folds_and_classes_are_stratified(dataset) -> None:
    folds = group_stratified_folds(dataset, n_folds=5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(50))
    for train, test in folds:
        assert not set(dataset.groups[train]) & set(dataset.groups[test])
        counts = np.bincount(dataset.labels[test], minlength=2)
        assert counts.tolist() == [4, 6]


def test_the_papers_class_stratified_folds_let_crops_of_one_photo_straddle_and_count_them(dataset) -> None:
    folds = stratified_folds(dataset, n_folds=5, seed=0)
    assert sorted(np.concatenate([test for _, test in folds])) == list(range(50))
    for _, test in folds:
        assert np.bincount(dataset.labels[test], minlength=2).tolist() == [4, 6]
    shared = [groups_shared(dataset, train, test) for train, test in folds]
    assert sum(shared) > 0  # pairs of crops, shuffled: some land on both sides
    for (train, test), count in zip(folds, shared, strict=True):
        assert count == sum(g in set(dataset.groups[train]) for g in dataset.groups[test])
    assert all(groups_shared(dataset, *fold) == 0 for fold in group_stratified_folds(dataset, n_folds=5, seed=0))


def test_without_a_manifest_each_file_is_its_own_group(tmp_path) -> None:
    root = image_tree(tmp_path, {"chickenpox": 2, "monkeypox": 2}, size=16)
    assert len(set(load_dataset(root).groups)) == 4


def test_a_missing_class_folder_or_data_folder_is_an_error(tmp_path) -> None:
    root = image_tree(tmp_path, {"chickenpox": 2}, size=16)
    with pytest.raises(ValueError, match="monkeypox"):
        load_dataset(root, class_names=CLASSES)
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nowhere")


def test_the_cached_eval_view_is_exactly_what_the_site_feeds_the_model(dataset) -> None:
    from ml.checkpoint import Preprocessing
    from ml.data import ImageCache
    from ml.imaging import centre_crop, open_image

    records = dataset.records[:3]
    cache = ImageCache(records, threads=1)
    preprocessing = Preprocessing()
    for record in records:
        production = centre_crop(open_image(record.path, target_short_side=preprocessing.resize), preprocessing)
        assert np.array_equal(cache.eval_arrays[record.path], np.asarray(production))
        assert min(cache.train_images[record.path].size) <= 256

"""The weights in ml/weights/ are what the model card says they are, and carry the cross-validated contract."""

import re

import onnx

from ml.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_ONNX, PAPER_CLASSES, file_sha256, load_checkpoint
from ml.crossval import variant_of

MODEL_CARD = DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md"


def card_sha256(file_name: str) -> str:
    match = re.search(rf"\| `{re.escape(file_name)}` \|.*\| `([0-9a-f]{{64}})` \|", MODEL_CARD.read_text())
    assert match, f"the model card lists no sha256 for {file_name}"
    return match.group(1)


def test_the_model_card_names_the_sha256_of_both_shipped_files() -> None:
    assert card_sha256(DEFAULT_CHECKPOINT.name) == file_sha256(DEFAULT_CHECKPOINT)
    assert card_sha256(DEFAULT_ONNX.name) == file_sha256(DEFAULT_ONNX)


def test_the_onnx_export_was_made_from_the_shipped_checkpoint() -> None:
    metadata = {p.key: p.value for p in onnx.load(str(DEFAULT_ONNX), load_external_data=False).metadata_props}
    assert metadata["weights_sha256"] == file_sha256(DEFAULT_CHECKPOINT)


def test_the_shipped_checkpoint_carries_its_cross_validated_variant_and_rule() -> None:
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    assert checkpoint.class_names == PAPER_CLASSES
    assert checkpoint.metrics["variant"] == variant_of(checkpoint.arch, checkpoint.training)
    rule = checkpoint.inconclusive
    mpox = PAPER_CLASSES.index("monkeypox")
    assert rule.label_thresholds[mpox] == rule.threshold > 0
    # Stricter for the reassuring labels than for mpox, never looser.
    assert all(t >= rule.threshold for t in rule.label_thresholds)
    assert checkpoint.metrics["inconclusive"]["label_thresholds"] == dict(
        zip(PAPER_CLASSES, rule.label_thresholds, strict=True)
    )

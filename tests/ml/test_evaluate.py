from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml.evaluate import main
from tests.ml.factories import calibrated_model, checkpoint_for
from tests.ml.trees import image_tree


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "fast_mpoxnet.pt"
    checkpoint_for(calibrated_model(seed=3), threshold=0.99).save(path)
    return path


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = image_tree(tmp_path_factory.mktemp("eval"), {"monkeypox": 3, "normal": 2, "cowpox": 2})
    (root / "normal" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_json_output_is_one_object_with_the_stable_schema(weights, tree, capsys, caplog) -> None:
    assert main(["--data", str(tree), "--weights", str(weights), "--backend", "torch", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["n"] == 5
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["confusion"]["labels"] == ["chickenpox", "measles", "monkeypox", "normal"]
    assert sum(map(sum, result["confusion"]["matrix"])) == 5
    assert set(result["per_class"]["monkeypox"]) == {"precision", "recall", "specificity", "f1", "support"}
    assert result["per_class"]["monkeypox"]["support"] == 3
    cowpox = result["ood"]["cowpox"]
    assert cowpox["n"] == 2
    assert sum(cowpox["predicted"].values()) == 2
    assert cowpox["inconclusive"] == 2  # a random model is never 99% sure
    assert result["unreadable"] == ["normal/broken.jpg"]
    assert "broken.jpg" in caplog.text  # logged (to stderr outside pytest), never printed to stdout


def test_table_output_is_readable(weights, tree, capsys) -> None:
    main(["--data", str(tree), "--weights", str(weights), "--backend", "torch"])
    assert "accuracy" in capsys.readouterr().out


def test_a_missing_folder_or_weights_file_exits_with_a_usage_error(weights, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path / "nowhere"), "--weights", str(weights), "--json"])
    assert exit_info.value.code == 2
    assert "nowhere" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path), "--weights", str(tmp_path / "missing.pt"), "--json"])
    assert exit_info.value.code == 2
    assert "missing.pt" in capsys.readouterr().err


def test_the_command_prints_only_json_on_stdout(weights, tree) -> None:
    command = [
        sys.executable,
        "-m",
        "ml.evaluate",
        "--data",
        str(tree),
        "--weights",
        str(weights),
        "--backend",
        "torch",
    ]
    done = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2]
    )
    assert json.loads(done.stdout)["n"] == 5
    assert "broken.jpg" in done.stderr

from __future__ import annotations

import pytest

from diagnosis.models import Analysis, ModelVersion, Patient, class_label


def test_a_patient_identifier_is_shown_masked() -> None:
    assert Patient(hospital_identifier="MRN-004821").masked_identifier == "•••••4821"
    assert Patient(hospital_identifier="77").masked_identifier == "•••••77"


def test_class_names_read_as_words() -> None:
    assert class_label("monkeypox") == "Mpox (monkeypox)"
    assert class_label("some_new_class") == "Some new class"


def _done(probabilities: dict[str, float], label: str) -> Analysis:
    version = ModelVersion(class_names=["chickenpox", "measles", "monkeypox", "normal"])
    return Analysis(status=Analysis.Status.DONE, probabilities=probabilities, label=label, model_version=version)


def test_probability_rows_follow_the_models_class_order() -> None:
    analysis = _done({"normal": 0.1, "monkeypox": 0.6, "measles": 0.1, "chickenpox": 0.2}, "monkeypox")
    rows = analysis.probability_rows()
    assert [row["name"] for row in rows] == ["chickenpox", "measles", "monkeypox", "normal"]
    assert [row["percent"] for row in rows] == [20.0, 10.0, 60.0, 10.0]
    assert [row["top"] for row in rows] == [False, False, True, False]


@pytest.mark.parametrize(("mpox", "advised"), [(0.49, False), (0.5, True), (0.93, True)])
def test_the_isolation_advisory_follows_the_threshold(settings, mpox: float, advised: bool) -> None:
    settings.MPOX_ADVISORY_THRESHOLD = 0.5
    analysis = _done({"monkeypox": mpox, "normal": 1 - mpox}, "monkeypox")
    assert analysis.shows_isolation_advisory is advised


def test_no_advisory_before_the_analysis_is_done() -> None:
    analysis = Analysis(status=Analysis.Status.RUNNING, probabilities={"monkeypox": 0.99})
    assert not analysis.shows_isolation_advisory


def test_status_transitions() -> None:
    analysis = Analysis()
    assert analysis.status == Analysis.Status.QUEUED
    assert not analysis.is_finished
    analysis.status, analysis.started_at = Analysis.Status.RUNNING, analysis.queued_at
    analysis.mark_requeued()
    assert analysis.status == Analysis.Status.QUEUED
    assert analysis.started_at is None
    analysis.mark_failed("Broken photo.")
    assert analysis.is_finished
    assert analysis.error_message == "Broken photo."
    assert analysis.finished_at

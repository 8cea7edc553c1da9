from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from diagnosis import api_auth, services, tasks
from diagnosis.models import Analysis, AuditEntry, Case, ModelVersion
from tests.diagnosis.helpers import case_for, finished_analysis, image_for, review_for
from tests.fhir.conftest import fhir_json, fhir_valid, system_with
from tests.photos import jpeg_bytes

pytestmark = pytest.mark.django_db

PATIENT = "MRN-5550123"
OBSERVATION_STATUSES = {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error"}


def contained(report: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [resource for resource in report["contained"] if resource["resourceType"] == resource_type]


def read(reader: APIClient, analysis_id: int) -> dict[str, Any]:
    report = fhir_json(reader.get(f"/fhir/DiagnosticReport/{analysis_id}"))
    assert report["resourceType"] == "DiagnosticReport"
    assert report["id"] == str(analysis_id)
    # Each contained resource on its own, too, and every local reference resolves.
    ids = {resource["id"] for resource in report["contained"]}
    for resource in report["contained"]:
        fhir_valid(resource)
    references = [item["reference"] for item in report.get("result", [])]
    references += [item["link"]["reference"] for item in report["media"]]
    assert {reference.removeprefix("#") for reference in references} <= ids
    return report


def submit_by_api(*, body_part: str = "hand") -> tuple[Analysis, APIClient]:
    _, token = api_auth.api_client_create("ehr", ["submit", "read", "photos"])
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    photo = SimpleUploadedFile("lesion.jpg", jpeg_bytes(), content_type="image/jpeg")
    response = http.post(
        "/api/v1/analyses",
        {"image": photo, "body_part": body_part, "stage": "early", "patient_id": PATIENT},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    return Analysis.objects.get(pk=response.json()["id"]), http


def test_the_report_goes_from_preliminary_to_final_to_amended(predictor, clinician) -> None:
    analysis, reader = submit_by_api()

    queued = read(reader, analysis.pk)
    assert queued["status"] == "registered"
    assert "result" not in queued
    assert queued["subject"] == {"type": "Patient", "identifier": {"value": PATIENT}}
    assert "encounter" not in queued
    Case.objects.update(encounter_id="V-88")  # the visit number the hospital sent with the photo

    tasks.analysis_run.apply(args=(analysis.pk,), throw=True)
    analysis.refresh_from_db()
    report = read(reader, analysis.pk)
    assert report["status"] == "preliminary"
    assert report["conclusion"].startswith("Decision support, not a diagnosis")
    assert report["conclusion"].endswith("Not yet reviewed by a clinician.")
    assert report["encounter"] == {"type": "Encounter", "identifier": {"value": "V-88"}}
    assert "resultsInterpreter" not in report
    assert "conclusionCode" not in report  # the model's guess is not a conclusion

    observations = contained(report, "Observation")
    assert [o["code"]["coding"][0]["code"] for o in observations] == ["chickenpox", "measles", "monkeypox", "normal"]
    assert [o["id"] for o in observations] == [r["reference"].removeprefix("#") for r in report["result"]]
    for observation in observations:
        assert observation["status"] == "preliminary"
        name = observation["code"]["coding"][0]["code"]
        assert observation["valueQuantity"]["value"] == pytest.approx(100 * analysis.probabilities[name], abs=0.01)
        assert observation["valueQuantity"]["code"] == "%"
        assert observation["bodySite"]["coding"] == [
            {"system": "http://snomed.info/sct", "code": "85562004", "display": "Hand structure"}
        ]
        [stage] = observation["component"]
        assert stage["code"]["text"] == "Lesion stage"
        assert stage["valueCodeableConcept"]["coding"][0]["code"] == "early"
        assert observation["device"] == {"reference": "#model"}
    assert sum(o["valueQuantity"]["value"] for o in observations) == pytest.approx(100, abs=0.05)

    photo, heatmap = contained(report, "Media")
    assert photo["content"]["url"] == f"http://testserver/fhir/Binary/photo-{analysis.image_id}"
    assert photo["content"]["contentType"] == "image/jpeg"
    assert "data" not in photo["content"]
    assert heatmap["content"]["url"] == f"http://testserver/api/v1/analyses/{analysis.pk}/heatmap"
    assert reader.get(heatmap["content"]["url"]).status_code == 200  # the link works with the same token

    [device] = contained(report, "Device")
    model = ModelVersion.objects.get()
    assert device["deviceName"] == [{"name": model.name, "type": "model-name"}]
    assert {v["type"]["text"]: v["value"] for v in device["version"]} == {
        "model version": model.version,
        "weights SHA-256": model.weights_sha256,
    }
    [by_model] = contained(report, "Provenance")
    assert by_model["target"] == [{"reference": "#"}]
    assert by_model["agent"][0]["who"]["reference"] == "#model"
    assert by_model["agent"][0]["type"]["coding"][0]["code"] == "author"

    case = Case.objects.get()
    review = services.review_record(
        case=case,
        reviewer=clinician,
        expected_version=case.version,
        label="mpox",
        confidence="sure",
        disposition="isolate_and_test",
    )
    report = read(reader, analysis.pk)
    assert report["status"] == "final"
    assert {o["status"] for o in contained(report, "Observation")} == {"final"}
    assert report["conclusion"].endswith("Clinician's review: Mpox (sure); next step: isolate and test.")
    assert report["resultsInterpreter"] == [{"display": "clinician"}]
    assert report["conclusionCode"] == [
        {
            "text": "Mpox",
            "coding": [{"system": "http://snomed.info/sct", "code": "359814004", "display": "Mpox (disorder)"}],
        }
    ]
    by_clinician = [p for p in contained(report, "Provenance") if p["id"] == f"review-{review.pk}"]
    assert by_clinician[0]["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert by_clinician[0]["agent"][0]["who"] == {"display": "clinician"}

    case.refresh_from_db()
    amendment = services.review_amend(
        review=review,
        reviewer=clinician,
        expected_version=case.version,
        reason="The PCR was negative; the lesions look like chickenpox on a second look.",
        label="chickenpox",
        confidence="probable",
        disposition="discharge",
    )
    report = read(reader, analysis.pk)
    assert report["status"] == "amended"
    assert {o["status"] for o in contained(report, "Observation")} == {"amended"}
    assert report["conclusion"].endswith("Clinician's review: Chickenpox (probable); next step: discharge (amended).")
    assert [code["coding"][0]["code"] for code in report["conclusionCode"]] == ["38907003"]  # varicella
    provenances = {p["id"]: p for p in contained(report, "Provenance")}
    assert set(provenances) == {"by-model", f"review-{review.pk}", f"review-{amendment.pk}"}
    assert provenances[f"review-{amendment.pk}"]["activity"]["coding"][0]["code"] == "UPDATE"
    for observation in contained(report, "Observation"):
        assert observation["status"] in OBSERVATION_STATUSES


def test_a_review_given_before_a_new_photos_result_does_not_finalise_it(nurse, clinician) -> None:
    case = case_for(nurse, PATIENT)
    first = finished_analysis(image_for(case))
    review_for(case, clinician)
    second = finished_analysis(image_for(case, body_part="genital"))
    third = finished_analysis(image_for(case, body_part="close_range"))
    reader = system_with("read")
    assert read(reader, first.pk)["status"] == "final"
    assert read(reader, second.pk)["status"] == "preliminary"

    # A review of one photo finalises that photo's report only.
    review_for(case, clinician, confidence="probable", image=second.image)
    second_report = read(reader, second.pk)
    assert second_report["status"] == "final"
    assert read(reader, third.pk)["status"] == "preliminary"

    genital_site = contained(second_report, "Observation")[0]["bodySite"]
    assert genital_site["coding"][0]["code"] == "38864007"
    assert genital_site["text"] == "Genital / perianal"
    close_range_site = contained(read(reader, third.pk), "Observation")[0]["bodySite"]
    assert "coding" not in close_range_site
    assert close_range_site["text"] == "Close-range photo (body site not recorded)"


def test_a_failed_analysis_is_a_cancelled_report_that_says_why(nurse) -> None:
    analysis = image_for(case_for(nurse, PATIENT)).analyses.get()
    analysis.mark_failed("This photo is too blurred to analyse; take it again.")
    analysis.save()
    report = read(system_with("read"), analysis.pk)
    assert report["status"] == "cancelled"
    assert (
        report["conclusion"] == "The photo could not be analysed: This photo is too blurred to analyse; take it again."
    )
    assert "result" not in report
    assert [m["resourceType"] for m in report["contained"]] == ["Media"]  # the photo, no model, no heatmap


def test_the_patient_identifier_names_the_hospitals_system_when_configured(nurse, settings) -> None:
    settings.MPOX_FHIR_PATIENT_SYSTEM = "urn:oid:1.2.276.0.76.4.8"
    analysis = finished_analysis(image_for(case_for(nurse, PATIENT)))
    report = read(system_with("read"), analysis.pk)
    expected = {"type": "Patient", "identifier": {"system": "urn:oid:1.2.276.0.76.4.8", "value": PATIENT}}
    assert report["subject"] == expected
    assert {resource["subject"]["identifier"]["system"] for resource in contained(report, "Observation")} == {
        "urn:oid:1.2.276.0.76.4.8"
    }


def test_an_inconclusive_result_says_a_clinician_must_decide(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse, PATIENT)), inconclusive=True)
    report = read(system_with("read"), analysis.pk)
    assert "inconclusive" in report["conclusion"]
    assert "a clinician must decide" in report["conclusion"]


def test_each_read_is_audited_against_the_case_and_patient(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse, PATIENT)))
    read(system_with("read"), analysis.pk)
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.API_CALL).get()
    assert entry.detail["endpoint"] == "fhir-diagnostic-report"
    assert (entry.case_id, entry.patient_id) == (analysis.image.case_id, analysis.image.case.patient_id)
    assert PATIENT not in str(entry.detail)


def test_it_answers_fhir_json_whatever_the_client_accepts(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse, PATIENT)))
    response = system_with("read").get(f"/fhir/DiagnosticReport/{analysis.pk}", HTTP_ACCEPT="application/json")
    assert fhir_json(response)["id"] == str(analysis.pk)


def test_errors_are_operation_outcomes_with_the_right_status(nurse) -> None:
    analysis = finished_analysis(image_for(case_for(nurse, PATIENT)))
    url = f"/fhir/DiagnosticReport/{analysis.pk}"
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Bearer mpx_not-a-real-token-at-all")
    cases = [
        (APIClient(), "get", url, 401, "login"),
        (bad_token, "get", url, 401, "login"),
        (system_with("submit", "lab"), "get", url, 403, "forbidden"),
        (system_with("read"), "get", "/fhir/DiagnosticReport/999999", 404, "not-found"),
        (system_with("read"), "get", "/fhir/DiagnosticReport/abc", 404, "not-found"),
        (system_with("read"), "get", "/fhir/DiagnosticReport/²", 404, "not-found"),
        (system_with("read"), "get", "/fhir/DiagnosticReport/" + "9" * 40, 404, "not-found"),
        (system_with("read"), "get", "/fhir/Patient/1", 404, "not-found"),
        (system_with("read"), "delete", url, 405, "not-supported"),
    ]
    for client, method, path, status, code in cases:
        response = getattr(client, method)(path)
        outcome = fhir_json(response, status)
        assert outcome["resourceType"] == "OperationOutcome", path
        [issue] = outcome["issue"]
        assert (issue["severity"], issue["code"]) == ("error", code), path
        assert issue["diagnostics"]
        if status == 401:
            assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_rate_limit_answers_429_as_an_operation_outcome(nurse, settings) -> None:
    settings.MPOX_API_RATE = "2/min"
    analysis = finished_analysis(image_for(case_for(nurse, PATIENT)))
    reader = system_with("read")
    for _ in range(2):
        read(reader, analysis.pk)
    response = reader.get(f"/fhir/DiagnosticReport/{analysis.pk}")
    [issue] = fhir_json(response, 429)["issue"]
    assert issue["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_a_label_without_a_disorder_code_concludes_in_text(nurse, clinician) -> None:
    case = case_for(nurse, PATIENT)
    analysis = finished_analysis(image_for(case))
    review_for(case, clinician, label="other", confidence="probable", disposition="refer_dermatology")
    report = read(system_with("read"), analysis.pk)
    assert report["conclusionCode"] == [{"text": "Other skin condition"}]
    assert report["conclusion"].endswith(
        "Clinician's review: Other skin condition (probable); next step: refer to dermatology."
    )

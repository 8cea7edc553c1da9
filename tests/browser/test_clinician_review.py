"""A clinician, in headless Chromium, against the real stack: the queue, a blurred photo, a review and a PCR result."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.livestack import Stack
from tests.photos import jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_clinician_reviews_the_riskiest_case_and_records_the_pcr(browser: Browser, stack: Stack) -> None:
    # The same photo twice: the model gives both the same probabilities, so the genital site decides the order.
    nurse = stack.session("nurse")
    photo = jpeg_bytes()
    cases = {}
    for identifier, body_part in (("MRN-0001", "arm"), ("MRN-0002", "genital")):
        case_id = nurse.start_case(identifier)
        nurse.wait_for_result(nurse.upload(case_id, photo, body_part=body_part))
        cases[body_part] = case_id

    context = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stack.base_url + "/")
    page.get_by_label("Username").fill("clinician")
    page.get_by_label("Password").fill(stack.passwords["clinician"])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#queue-badge")).to_have_text("2")

    page.get_by_role("link", name=re.compile("Review queue")).click()
    rows = page.locator(".queue-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(f"Case {cases['genital']}")
    expect(rows.first.locator(".thumb")).to_have_class(re.compile(r"\bblurred\b"))
    expect(rows.nth(1).locator(".thumb")).not_to_have_class(re.compile(r"\bblurred\b"))

    rows.first.locator("a").click()
    expect(page.get_by_text("You hold this case for review.")).to_be_visible()
    expect(page.locator(".photo-stack")).to_have_class(re.compile(r"\bblurred\b"))
    page.get_by_role("button", name="Reveal sensitive photo").click()
    expect(page.locator(".photo-stack")).not_to_have_class(re.compile(r"\bblurred\b"))

    form = page.locator("#review-form")
    form.locator("label.tag", has_text="Mpox").click()
    form.locator("label.tag", has_text=re.compile(r"^Sure$")).click()
    form.locator("label.tag", has_text="Isolate and test").click()
    form.get_by_label("Note").fill("Umbilicated papules")
    form.get_by_role("button", name="Save review").click()
    expect(page.locator("#reviews .history")).to_contain_text("Mpox (sure)")
    expect(page.locator(".case-status")).to_contain_text("Reviewed")

    lab = page.locator("#lab-form")
    lab.locator("label.tag", has_text="PCR positive").click()
    lab.get_by_label("Sample collected on").fill("2026-03-01")
    lab.get_by_label("Sample reference").fill("LAB-42")
    lab.get_by_role("button", name="Save lab result").click()
    expect(page.locator(".case-status")).to_contain_text("Closed")
    expect(page.locator(".case-status")).to_contain_text("Ground truth: mpox (pcr)")
    expect(page.locator("#lab .history")).to_contain_text("LAB-42")
    assert not errors
    context.close()


def test_a_photo_a_clinician_uploads_is_offered_to_the_review_form_without_a_reload(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    case_id = stack.session("nurse").start_case("MRN-0003")
    photo = tmp_path / "lesion.jpg"
    photo.write_bytes(jpeg_bytes())
    context = browser.new_context()
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.get_by_label("Username").fill("clinician")
    page.get_by_label("Password").fill(stack.passwords["clinician"])
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{stack.base_url}/cases/{case_id}/")
    page.wait_for_load_state("load")
    page.locator("input[type=file]").set_input_files(photo)
    page.locator("#upload label.tag", has_text="Hand").click()
    page.locator("#upload label.tag", has_text="Early").click()
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator(".image-card")).to_have_count(1)
    image_id = page.locator(".image-card").get_attribute("id").removeprefix("image-")  # type: ignore[union-attr]
    expect(page.locator("#review-image option")).to_have_text(["The whole case", f"Photo {image_id}: Hand"])
    context.close()

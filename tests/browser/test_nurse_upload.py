"""A nurse, in a tablet-sized headless Chromium, against the real stack (gunicorn + Celery worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.livestack import Stack
from tests.photos import jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def start_case_as_nurse(page: Page, stack: Stack, hospital_identifier: str) -> None:
    page.goto(stack.base_url + "/")
    page.get_by_label("Username").fill("nurse")
    page.get_by_label("Password").fill(stack.passwords["nurse"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Patient's hospital identifier").fill(hospital_identifier)
    page.get_by_role("button", name="Start case").click()


def test_a_nurse_uploads_a_tagged_photo_and_sees_the_result_and_heatmap(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    photo = tmp_path / "lesion.jpg"
    photo.write_bytes(jpeg_bytes(1200, 900, gps=True))
    context = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    photo_requests: list[str] = []
    page.on("request", lambda request: photo_requests.append(request.url) if "/photo" in request.url else None)

    start_case_as_nurse(page, stack, "MRN-004821")
    expect(page.get_by_role("heading", level=1)).to_contain_text("•••••4821")
    assert "MRN-004821" not in page.content()
    page.wait_for_load_state("load")  # the page's upload script is in place, as for a person who sees the page

    page.locator("input[type=file]").set_input_files(photo)
    expect(page.locator("#file-name")).to_have_text("lesion.jpg")
    page.locator("label.tag", has_text="Close-range").click()
    page.locator("label.tag", has_text="Later").click()
    expect(page.locator("input[name=body_part][value=close_range]")).to_be_checked()
    page.get_by_role("button", name="Upload and analyse").click()

    card = page.locator(".image-card").first
    expect(card.get_by_text("Most likely:")).to_be_visible(timeout=90_000)
    expect(card.get_by_text("Decision support, not a diagnosis.")).to_be_visible()
    expect(card.locator(".bars li")).to_have_count(4)
    expect(card).to_contain_text("Model: fast-mpoxnet")
    expect(card).to_contain_text("Close-range · Later")

    heatmap = card.locator("img.heatmap")
    expect(heatmap).to_be_visible()
    for selector in (".image-card img.heatmap", ".image-card img.photo"):  # both images really load
        page.wait_for_function(
            "selector => { const img = document.querySelector(selector); return img.complete && img.naturalWidth > 0 }",
            arg=selector,
        )
    card.locator(".heat-opacity").fill("20")
    assert heatmap.evaluate("img => getComputedStyle(img).opacity") == "0.2"
    card.get_by_label("Show heatmap").uncheck()
    expect(heatmap).to_be_hidden()
    assert not errors
    # Polling swaps the card, but the photo (served no-store) is fetched only once.
    assert len(photo_requests) == 1, photo_requests
    context.close()


def test_photos_uploaded_one_after_another_join_the_page_without_reloading_it(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    start_case_as_nurse(page, stack, "MRN-2")
    page.wait_for_load_state("load")
    expect(page.get_by_text("No photos yet.")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    for index, part in enumerate(("Arm", "Leg")):
        photo = tmp_path / f"lesion-{index}.jpg"
        photo.write_bytes(jpeg_bytes(800, 600, seed=index))
        page.locator("input[type=file]").set_input_files(photo)
        page.locator("label.tag", has_text=part).click()
        page.locator("label.tag", has_text="Early").click()
        page.get_by_role("button", name="Upload and analyse").click()
        expect(page.locator(".image-card")).to_have_count(index + 1)
        # The form is ready for the next photo, as on a fresh page.
        expect(page.locator("#file-name")).to_have_text("")
        expect(page.locator("input[name=body_part]:checked")).to_have_count(0)
        expect(page.get_by_role("button", name="Upload and analyse")).to_be_enabled()
    expect(page.get_by_text("No photos yet.")).to_have_count(0)
    for card in page.locator(".image-card").all():  # each card polls for its own result
        expect(card.get_by_text("Most likely:")).to_be_visible(timeout=90_000)
    expect(page.locator(".image-card").nth(1)).to_contain_text("Leg · Early")
    assert page.evaluate("window.notReloaded") is True
    context.close()


def test_a_bad_file_is_refused_with_a_readable_message(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"%PDF-1.4 not a photo at all" * 10)
    context = browser.new_context()
    page = context.new_page()
    start_case_as_nurse(page, stack, "MRN-1")

    page.locator("input[type=file]").set_input_files(fake)
    page.locator("label.tag", has_text="Arm").click()
    page.locator("label.tag", has_text="Early").click()
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator("#upload").get_by_role("alert").filter(has_text="This file is not a photo")).to_be_visible()
    expect(page.locator(".image-card")).to_have_count(0)
    # The form came back in place with the chosen tags, ready for another try.
    expect(page.locator("input[name=body_part][value=arm]")).to_be_checked()
    context.close()

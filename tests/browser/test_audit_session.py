"""A full session in headless Chromium against the real stack: a nurse uploads, a clinician reviews, an auditor finds
it all in the audit log, filters by patient and exports the log as CSV; every step left its entry."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.livestack import Stack, manage
from tests.photos import jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDENTIFIER = "MRN-7731"


def logged_in(browser: Browser, stack: Stack, username: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(stack.base_url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(stack.passwords[username])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".who")).to_have_text(username)
    return context, page


def test_the_audit_log_holds_every_step_of_a_session_and_its_own_export(
    browser: Browser, stack: Stack, tmp_path: Path
) -> None:
    photo = tmp_path / "lesion.jpg"
    photo.write_bytes(jpeg_bytes(1200, 900))

    context, page = logged_in(browser, stack, "nurse")
    expect(page.get_by_role("link", name="Audit")).to_have_count(0)
    page.get_by_label("Patient's hospital identifier").fill(IDENTIFIER)
    page.get_by_role("button", name="Start case").click()
    case_id = int(re.search(r"/cases/(\d+)/", page.url).group(1))  # type: ignore[union-attr]
    page.wait_for_load_state("load")
    page.locator("input[type=file]").set_input_files(photo)
    page.locator("label.tag", has_text="Arm").click()
    page.locator("label.tag", has_text="Early").click()
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator(".image-card").first.get_by_text("Most likely:")).to_be_visible(timeout=90_000)
    assert page.goto(f"{stack.base_url}/audit/").status == 403  # type: ignore[union-attr]
    context.close()

    context, page = logged_in(browser, stack, "clinician")
    page.goto(f"{stack.base_url}/cases/{case_id}/")
    form = page.locator("#review-form")
    form.locator("label.tag", has_text="Mpox").click()
    form.locator("label.tag", has_text=re.compile(r"^Sure$")).click()
    form.locator("label.tag", has_text="Isolate and test").click()
    form.get_by_role("button", name="Save review").click()
    expect(page.locator("#reviews .history")).to_contain_text("Mpox (sure)")
    context.close()

    context, page = logged_in(browser, stack, "auditor")
    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    filters = page.locator("#audit-filters")
    filters.get_by_label("Patient's hospital identifier").fill(IDENTIFIER)
    filters.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("Patient •••••7731")).to_be_visible()
    assert re.search(r"[?&]patient=\d+", page.url)
    assert IDENTIFIER not in page.url
    entries = page.locator("#audit-entries tbody")
    for shown in ("Created a case", "Uploaded a photo", "Viewed a case", "Recorded a review"):
        expect(entries).to_contain_text(shown)
    assert IDENTIFIER not in page.content()

    page.get_by_role("link", name="any patient").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Export these entries as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    done = {(row["actor"], row["action"]) for row in rows}
    for expected in [
        ("nurse", "login"),
        ("nurse", "case_create"),
        ("nurse", "upload"),
        ("nurse", "photo_view"),
        ("clinician", "login"),
        ("clinician", "case_view"),
        ("clinician", "review"),
        ("auditor", "login"),
        ("auditor", "audit_view"),
        ("auditor", "export"),  # the export lists itself: it was recorded before the first row went out
    ]:
        assert expected in done, f"no {expected} entry in {sorted(done)}"
    assert any(row["action"] == "analysis_done" and row["case_id"] == str(case_id) for row in rows)
    assert rows[0]["action"] == "export"
    review = next(row for row in rows if row["action"] == "review")
    assert (review["case_id"], review["patient"], review["source_ip"]) == (str(case_id), "•••••7731", "127.0.0.1")
    assert IDENTIFIER not in Path(download.value.path()).read_text()
    context.close()

    with sqlite3.connect(stack.var_dir / "db.sqlite3") as db:
        exports = db.execute("SELECT actor_label, outcome FROM diagnosis_auditentry WHERE action = 'export'").fetchall()
    assert exports == [("auditor", "success")]
    assert re.match(r"Audit chain intact: \d+ entries checked.", manage("audit_verify", env=stack.env))

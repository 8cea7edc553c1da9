"""Every URL pattern x every role x anonymous, with an explicit expected outcome, generated from the URLconf.

A URL pattern without a row in RULES fails the suite: a new page or endpoint needs a decision about who may open it.
The whole Django admin is one rule (admins only); the REST API and FHIR endpoints take API tokens only, so a
browser session there is as good as no credentials (401).

Outcomes: an HTTP status, LOGIN (302 to the site's log-in page with ?next=) or ADMIN_LOGIN (302 to the admin's, which
sends on to the same page). Object ids in URLs are real rows of the kind the row names, created by the nurse; the
second nurse ("nurse2") shows what another nurse's patients answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from pytest_django.fixtures import Settings

from diagnosis import services
from tests.conftest import client_for, make_user
from tests.diagnosis.helpers import case_for, image_for

pytestmark = pytest.mark.django_db

LOGIN = "login"
ADMIN_LOGIN = "admin-login"
PERSONAS = ("anonymous", "nurse", "nurse2", "clinician", "auditor", "admin")
Outcome = int | str


def expect(
    anonymous: Outcome, nurse: Outcome, nurse2: Outcome, clinician: Outcome, auditor: Outcome, admin: Outcome
) -> dict[str, Outcome]:
    return dict(zip(PERSONAS, (anonymous, nurse, nurse2, clinician, auditor, admin), strict=True))


@dataclass(frozen=True)
class Rule:
    """What each persona gets for each method; ``obj`` names the row whose id fills the pattern's parameters."""

    methods: dict[str, dict[str, Outcome]]
    obj: str = ""
    params: dict[str, str] = field(default_factory=dict)


def everyone(outcome: Outcome) -> dict[str, Outcome]:
    return dict.fromkeys(PERSONAS, outcome)


# Signed-in staff only; every role may open it.
STAFF = expect(LOGIN, 200, 200, 200, 200, 200)
# The case list's own object rules: the owner and those who see every case get it, another nurse 404.
CASE_GET = expect(LOGIN, 200, 404, 200, 200, 200)
# Auditors' pages: auditors and admins; other roles 403.
AUDITORS = expect(LOGIN, 403, 403, 403, 200, 200)
GET_ONLY = everyone(405) | {"anonymous": LOGIN}
POST_ONLY = everyone(405) | {"anonymous": LOGIN}
API_TOKEN_ONLY = everyone(401)
PUBLIC = everyone(200)

RULES: dict[str, Rule] = {
    # --- accounts ---
    "login": Rule({"GET": PUBLIC}),
    "logout": Rule({"GET": everyone(405), "POST": everyone(302)}),
    "admin-login": Rule({"GET": everyone(302)}),
    # --- clinic pages ---
    "index": Rule({"GET": everyone(302)}),
    "healthz": Rule({"GET": everyone(200)}),
    "case-list": Rule({"GET": STAFF, "POST": POST_ONLY}),
    "case-create": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 400, 400, 400, 403, 400)}),
    "case-detail": Rule({"GET": CASE_GET, "POST": POST_ONLY}, obj="case"),
    "image-upload": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 400, 404, 400, 403, 400)}, obj="case"),
    "review-submit": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 403, 404, 400, 403, 403)}, obj="case"),
    "lab-result-submit": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 403, 404, 400, 403, 403)}, obj="case"),
    "case-release": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 403, 404, 302, 403, 403)}, obj="case"),
    # Everyone who sees every case sees the queue; only clinicians act on it.
    "review-queue": Rule({"GET": expect(LOGIN, 403, 403, 200, 200, 200)}),
    "image-reveal": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 302, 404, 302, 302, 302)}, obj="image"),
    # 286: the analysis is finished, so htmx stops polling.
    "image-status": Rule({"GET": expect(LOGIN, 286, 404, 286, 286, 286)}, obj="image"),
    "image-photo": Rule({"GET": CASE_GET}, obj="image"),
    "analysis-overlay": Rule({"GET": CASE_GET}, obj="analysis"),
    "analysis-heatmap": Rule({"GET": CASE_GET}, obj="analysis"),
    # --- auditors' pages ---
    "audit-list": Rule({"GET": AUDITORS}),
    "audit-filter": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 403, 403, 403, 302, 302)}),
    "audit-export": Rule({"GET": AUDITORS}),
    "audit-patient-find": Rule({"GET": AUDITORS}),
    "audit-patient-find-submit": Rule({"GET": GET_ONLY, "POST": expect(LOGIN, 403, 403, 403, 400, 400)}),
    "audit-patient": Rule({"GET": AUDITORS}, obj="patient"),
    "audit-users": Rule({"GET": AUDITORS}),
    "audit-user": Rule({"GET": AUDITORS}, obj="user"),
    # --- REST API: API tokens only ---
    "api-analyses": Rule({"GET": API_TOKEN_ONLY, "POST": API_TOKEN_ONLY}),
    "api-analysis": Rule({"GET": API_TOKEN_ONLY}, obj="analysis"),
    "api-analysis-heatmap": Rule({"GET": API_TOKEN_ONLY}, obj="analysis"),
    "api-lab-results": Rule({"POST": API_TOKEN_ONLY}, obj="case"),
    "api-stats": Rule({"GET": API_TOKEN_ONLY}),
    "api-schema": Rule({"GET": PUBLIC}),
    "api-docs": Rule({"GET": PUBLIC}),
    "api-not-found": Rule({"GET": everyone(404)}, params={"": "no-such-endpoint"}),
    # --- FHIR: API tokens only, but the capability statement is public as FHIR servers' are ---
    "fhir-metadata": Rule({"GET": PUBLIC}),
    "fhir-diagnostic-reports": Rule({"GET": API_TOKEN_ONLY}),
    "fhir-diagnostic-reports-search": Rule({"POST": API_TOKEN_ONLY}),
    "fhir-diagnostic-report": Rule({"GET": API_TOKEN_ONLY}, obj="analysis"),
    "fhir-binary": Rule({"GET": API_TOKEN_ONLY}, obj="analysis"),
    "fhir-not-found": Rule({"GET": API_TOKEN_ONLY}, params={"": "NoSuchResource"}),
}

# The Django admin: one rule for the whole site. Everyone but an admin is sent to log in; an admin gets in.
ADMIN_NAMESPACE = "admin"


@dataclass(frozen=True)
class Pattern:
    key: str  # the URL name (namespaced), or the route where it has none
    route: str  # the full route, with its parameters
    namespace: str


def url_patterns(resolver: URLResolver | None = None, prefix: str = "", namespace: str = "") -> Iterator[Pattern]:
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            inner = ":".join(part for part in (namespace, entry.namespace or "") if part)
            yield from url_patterns(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Pattern(key=name or route, route=route, namespace=namespace)


PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)|\^|\$|\.\*")


def concrete_url(route: str, ids: dict[str, str]) -> str:
    """The route with every parameter filled: named ones from ``ids``, a bare ``.*`` from ``ids[""]``."""

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("^", "$"):
            return ""
        name = match.group("name") or match.group("group") or ""
        if name not in ids:
            raise AssertionError(f"no value for the parameter {name or token!r} of {route!r}: add it to its rule")
        return ids[name]

    return "/" + PARAMETER.sub(fill, route)


def outcome(response: object) -> Outcome:
    status = response.status_code  # type: ignore[attr-defined]
    if status == 302:
        location = response["Location"]  # type: ignore[index]
        if location.startswith("/accounts/login/?next="):
            return LOGIN
        if location.startswith("/admin/login/"):
            return ADMIN_LOGIN
    return status


@pytest.fixture
def world(predictor: object) -> dict[str, object]:
    """One of every kind of row, the nurse's, with a real analysis and heatmaps; a client per persona."""
    nurse = make_user("nurse")
    users = {"nurse": nurse, "nurse2": make_user("nurse", "nurse2")}
    for role in ("clinician", "auditor", "admin"):
        users[role] = make_user(role)
    case = case_for(nurse, "MRN-004821")
    image = image_for(case, body_part="arm")
    analysis = services.analysis_run(analysis_id=image.analyses.get().pk)
    assert analysis is not None
    assert analysis.heatmap_overlay
    services.model_version_ensure_active(predictor=predictor)  # type: ignore[arg-type]  # so /healthz is healthy
    ids = {"case": case.pk, "image": image.pk, "analysis": analysis.pk, "patient": case.patient_id, "user": nurse.pk}
    return {"users": users, "ids": {kind: str(pk) for kind, pk in ids.items()}}


def fresh_clients(users: dict[str, User]) -> dict[str, Client]:
    """A newly signed-in browser per persona, so that no request (a log-out, a reveal) affects the next rule's."""
    return {"anonymous": Client()} | {name: client_for(user) for name, user in users.items()}


def rule_ids(rule: Rule, route: str, ids: dict[str, str]) -> dict[str, str]:
    values = dict(rule.params)
    if rule.obj:
        for match in PARAMETER.finditer(route):
            if match.group("name"):
                values[match.group("name")] = ids[rule.obj]
    return values


def test_every_url_pattern_has_an_access_rule() -> None:
    missing = [
        pattern.key for pattern in url_patterns() if pattern.namespace != ADMIN_NAMESPACE and pattern.key not in RULES
    ]
    assert not missing, "\n".join(f"add an access rule for {key} to RULES" for key in missing)
    stale = sorted(set(RULES) - {pattern.key for pattern in url_patterns()})
    assert not stale, f"RULES names URLs that no longer exist: {', '.join(stale)}"


def test_each_role_gets_exactly_what_the_table_says(world: dict[str, object], settings: Settings) -> None:
    # Every persona calls the API without a token; the table is about access, not about the per-address rate.
    settings.MPOX_API_UNAUTHENTICATED_RATE = "100000/min"
    users: dict[str, User] = world["users"]  # type: ignore[assignment]
    ids: dict[str, str] = world["ids"]  # type: ignore[assignment]
    differences = []
    for pattern in url_patterns():
        if pattern.namespace == ADMIN_NAMESPACE or pattern.key not in RULES:
            continue
        rule = RULES[pattern.key]
        url = concrete_url(pattern.route, rule_ids(rule, pattern.route, ids))
        for method, expected in rule.methods.items():
            clients = fresh_clients(users)
            for persona in PERSONAS:
                client = clients[persona]
                response = client.get(url) if method == "GET" else client.post(url)
                got = outcome(response)
                if got != expected[persona]:
                    differences.append(
                        f"{pattern.key}: {method} {url} as {persona}: expected {expected[persona]}, got {got}"
                    )
    assert not differences, "\n".join(differences)


ADMIN_IDS = {"object_id": "1", "id": "1", "content_type_id": "1", "app_label": "diagnosis", "url": "no-such-page/"}
# Two admin URLs send everyone but an admin elsewhere: its log-in page is the site's (mpoxsite/urls.py), and its
# log-out page, sent a GET, goes back to the admin's front page (and so to the log-in page).
ADMIN_REDIRECTS = {"admin:login": "/accounts/login/", "admin:logout": "/admin/"}


def test_the_admin_site_is_for_admins_only(world: dict[str, object]) -> None:
    differences = []
    clients = fresh_clients(world["users"])  # type: ignore[arg-type]  # GETs here change nothing (log-out takes a POST)
    for pattern in url_patterns():
        if pattern.namespace != ADMIN_NAMESPACE:
            continue
        url = concrete_url(pattern.route, ADMIN_IDS)
        for persona in PERSONAS:
            response = clients[persona].get(url)
            got = outcome(response)
            if persona == "admin":
                ok = got not in (LOGIN, ADMIN_LOGIN) and isinstance(got, int) and got < 500
            elif pattern.key in ADMIN_REDIRECTS:
                ok = got == 302 and response["Location"] == ADMIN_REDIRECTS[pattern.key]
            else:
                ok = got == ADMIN_LOGIN
            if not ok:
                differences.append(f"{pattern.key}: GET {url} as {persona}: got {got}")
    assert not differences, "\n".join(differences)

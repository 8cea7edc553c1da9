from __future__ import annotations

import pytest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from diagnosis import api_auth
from diagnosis.models import ApiClient

pytestmark = pytest.mark.django_db


class ReadView(APIView):
    authentication_classes = (api_auth.BearerAuthentication,)
    permission_classes = (api_auth.HasScope,)
    throttle_classes = (api_auth.ApiClientRateThrottle,)
    required_scope = "read"

    def get(self, request: Request) -> Response:
        return Response({"client": str(request.auth)})


def _get(token: str | None = None, scheme: str = "Bearer"):
    factory = APIRequestFactory()
    request = factory.get("/x") if token is None else factory.get("/x", HTTP_AUTHORIZATION=f"{scheme} {token}")
    return ReadView.as_view()(request)


def test_a_valid_token_with_the_scope_is_let_in_and_recorded() -> None:
    client, token = api_auth.api_client_create("ehr", ["read"])
    response = _get(token)
    assert response.status_code == 200
    assert response.data == {"client": "ehr"}
    client.refresh_from_db()
    assert client.last_used_at is not None


def test_no_token_or_a_wrong_one_is_401() -> None:
    _, token = api_auth.api_client_create("ehr", ["read"])
    assert _get().status_code == 401
    assert _get(token[:-1] + ("A" if token[-1] != "A" else "B")).status_code == 401
    assert _get("nonsense").status_code == 401
    assert _get(token, scheme="Token").status_code == 401
    assert _get(" ").status_code == 401


def test_a_client_without_the_scope_is_403() -> None:
    _, token = api_auth.api_client_create("lis", ["lab"])
    assert _get(token).status_code == 403


def test_revocation_and_rotation() -> None:
    client, token = api_auth.api_client_create("ehr", ["read"])
    api_auth.api_client_revoke(client)
    response = _get(token)
    assert response.status_code == 401
    assert "revoked" in str(response.data["detail"])
    new = api_auth.api_client_rotate(client)
    assert _get(token).status_code == 401
    assert _get(new).status_code == 200


def test_unknown_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        api_auth.api_client_create("ehr", ["write"])
    assert not ApiClient.objects.exists()


def test_each_client_is_rate_limited_on_its_own(settings) -> None:
    settings.MPOX_API_RATE = "2/min"
    _, first = api_auth.api_client_create("ehr", ["read"])
    _, second = api_auth.api_client_create("pacs", ["read"])
    assert [_get(first).status_code for _ in range(3)] == [200, 200, 429]
    assert _get(second).status_code == 200

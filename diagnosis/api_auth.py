"""Bearer-token authentication, scopes and per-client rate limiting for the REST API."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from diagnosis.audit import request_ip
from diagnosis.models import ApiClient

PREFIX_LENGTH = 12


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_new() -> str:
    return "mpx_" + secrets.token_urlsafe(32)


def api_client_create(name: str, scopes: list[str]) -> tuple[ApiClient, str]:
    """Create a client; the token is returned once and only its hash is kept."""
    unknown = sorted(set(scopes) - set(ApiClient.SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(unknown)}")
    token = token_new()
    client = ApiClient.objects.create(
        name=name, scopes=sorted(set(scopes)), token_prefix=token[:PREFIX_LENGTH], token_sha256=token_hash(token)
    )
    return client, token


def api_client_rotate(client: ApiClient) -> str:
    token = token_new()
    client.token_prefix = token[:PREFIX_LENGTH]
    client.token_sha256 = token_hash(token)
    client.revoked_at = None
    client.save(update_fields=["token_prefix", "token_sha256", "revoked_at"])
    return token


def api_client_revoke(client: ApiClient) -> None:
    client.revoked_at = timezone.now()
    client.save(update_fields=["revoked_at"])


class BearerAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <token>`; request.auth is the ApiClient, request.user is anonymous."""

    def authenticate(self, request: Request) -> tuple[Any, ApiClient] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        if not token:
            raise exceptions.AuthenticationFailed("Missing bearer token.")
        client = ApiClient.objects.filter(token_prefix=token[:PREFIX_LENGTH]).first()
        if client is None or not hmac.compare_digest(client.token_sha256, token_hash(token)):
            raise exceptions.AuthenticationFailed("Invalid token.")
        if client.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This token has been revoked.")
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=timezone.now())
        return AnonymousUser(), client

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def scopes_required(view: Any) -> tuple[str, ...]:
    """The scopes a view names as `required_scope`: one, or a tuple of which the client needs every one."""
    required = getattr(view, "required_scope", None)
    if required is None:
        return ()
    return (required,) if isinstance(required, str) else tuple(required)


def scopes_missing(client: ApiClient, view: Any) -> list[str]:
    """The scopes the view requires that the client lacks."""
    return [scope for scope in scopes_required(view) if scope not in client.scopes]


class HasScope(permissions.BasePermission):
    """Views name the scope they need as `required_scope` (or a tuple of scopes, all needed); a refusal names them."""

    message = "This API client lacks the scope this operation needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            return False
        if not scopes_required(view):
            return False
        missing = scopes_missing(client, view)
        if missing:
            # One instance per request (APIView.get_permissions), so the message is this refusal's own.
            names = " and ".join(missing)
            self.message = (
                f"This API client lacks the {names} scope{'s' if len(missing) > 1 else ''} this operation needs."
            )
            return False
        return True


class ApiClientRateThrottle(throttling.SimpleRateThrottle):
    """One bucket per API client, at settings.MPOX_API_RATE."""

    scope = "api_client"
    duration: int  # seconds of the rate's period, set by SimpleRateThrottle (its stubs do not declare it)

    def get_rate(self) -> str:
        return settings.MPOX_API_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiClient):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class UnauthenticatedRateThrottle(throttling.SimpleRateThrottle):
    """One bucket per source address for calls without a valid token, at settings.MPOX_API_UNAUTHENTICATED_RATE.

    The address is the audit log's (``request_ip``: behind MPOX_TRUSTED_PROXIES proxies, the one they saw).
    """

    scope = "api_unauthenticated"
    duration: int  # seconds of the rate's period, set by SimpleRateThrottle (its stubs do not declare it)

    def get_rate(self) -> str:
        return settings.MPOX_API_UNAUTHENTICATED_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiClient):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request_ip(request._request) or "unknown"}

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from diagnosis import api_auth, webhooks
from diagnosis.models import ApiClient


class Command(BaseCommand):
    help = (
        "Create an API client and print its token once; --revoke NAME, --rotate NAME or --set-webhook NAME "
        "(with --webhook-url URL, empty to remove it) act on an existing one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?")
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            choices=list(ApiClient.SCOPES),
            help=f"Repeat for each: {ApiClient.SCOPES_DESCRIBED}",
        )
        parser.add_argument("--revoke", metavar="NAME")
        parser.add_argument("--rotate", metavar="NAME")
        parser.add_argument("--set-webhook", metavar="NAME")
        parser.add_argument(
            "--webhook-url", metavar="URL", help="POST here when an analysis it submitted finishes; prints the secret"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["revoke"]:
            api_auth.api_client_revoke(self._client(options["revoke"]))
            self.stdout.write(f"Revoked API client {options['revoke']}")
            return
        if options["rotate"]:
            token = api_auth.api_client_rotate(self._client(options["rotate"]))
            self.stdout.write(token)
            return
        if options["set_webhook"]:
            self._set_webhook(self._client(options["set_webhook"]), options["webhook_url"])
            return
        name = options["name"]
        if not name:
            raise CommandError("give a NAME, or --revoke NAME / --rotate NAME")
        if not options["scope"]:
            raise CommandError("give at least one --scope")
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"an API client named {name!r} already exists")
        try:
            with transaction.atomic():
                client, token = api_auth.api_client_create(name, options["scope"])
                secret = (
                    webhooks.api_client_webhook_set(client=client, url=options["webhook_url"])
                    if options["webhook_url"]
                    else ""
                )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(token)
        if secret:
            self.stdout.write(secret)  # the webhook signing secret, on its own line: shown this once

    def _set_webhook(self, client: ApiClient, url: str | None) -> None:
        if url is None:
            raise CommandError("give --webhook-url URL (or --webhook-url '' to remove the webhook)")
        if not url:
            webhooks.api_client_webhook_remove(client=client)
            self.stdout.write(f"Removed the webhook of API client {client.name}")
            return
        try:
            self.stdout.write(webhooks.api_client_webhook_set(client=client, url=url))  # the new secret, once
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc

    def _client(self, name: str) -> ApiClient:
        try:
            return ApiClient.objects.get(name=name)
        except ApiClient.DoesNotExist as exc:
            raise CommandError(f"no API client named {name!r}") from exc

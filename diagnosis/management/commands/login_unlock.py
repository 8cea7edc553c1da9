from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_ipv46_address

from diagnosis import accounts


class Command(BaseCommand):
    help = (
        "End the log-in lockout of a username (or, with --ip, of a source address) now, before its "
        "MPOX_LOCKOUT_MINUTES are up. The unlock is recorded in the audit trail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", nargs="?", help="the locked-out username")
        parser.add_argument("--ip", help="unlock this source IP address instead")

    def handle(self, *args: Any, username: str | None, ip: str | None, **options: Any) -> None:
        if (username is None) == (ip is None):
            raise CommandError("Give either a username or --ip ADDRESS.")
        if ip is not None:
            try:
                validate_ipv46_address(ip)
            except ValidationError:
                raise CommandError(f"{ip!r} is not an IP address.") from None
        was_locked = accounts.login_unlock(username=username, ip=ip)
        target = username if username is not None else ip
        self.stdout.write(f"Unlocked {target}." if was_locked else f"{target} was not locked; nothing to do.")

"""``manage.py api_token create|revoke|list``: personal API tokens from the shell.

    python manage.py api_token create alice --name ci --days 90 [--read-only]
    python manage.py api_token list [alice]
    python manage.py api_token revoke rsl_AbCdEfGh     # a token's prefix (or its id)

``create`` prints the secret once, on a line of its own (scripts read the last line).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from labsite.api.models import ApiToken
from labsite.api.services import token_create, token_revoke


class Command(BaseCommand):
    help = "Create, revoke or list personal API tokens."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a token; prints its secret once")
        create.add_argument("username")
        create.add_argument("--name", default="token")
        create.add_argument("--days", type=int, default=None,
                            help="expires after this many days (default: never)")
        create.add_argument("--read-only", action="store_true")
        revoke = actions.add_parser("revoke", help="revoke a token by prefix or id")
        revoke.add_argument("token")
        listing = actions.add_parser("list", help="tokens (of one user)")
        listing.add_argument("username", nargs="?")

    def handle(self, *args, action, **options):
        return getattr(self, f"_{action}")(**options)

    def _user(self, username):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"username: no user {username!r}")
        return user

    def _create(self, *, username, name, days, read_only, **_):
        if days is not None and days <= 0:
            raise CommandError(f"--days: expected a positive number of days, got {days}")
        expires = timezone.now() + timedelta(days=days) if days else None
        token, secret = token_create(user=self._user(username), name=name,
                                     read_only=read_only, expires_at=expires)
        self.stderr.write(f"token {token.pk} ({token.name}) for {username}, "
                          f"{'read-only' if read_only else 'read and write'}, expires "
                          f"{expires:%Y-%m-%d}" if expires else
                          f"token {token.pk} ({token.name}) for {username}, "
                          f"{'read-only' if read_only else 'read and write'}, no expiry")
        self.stdout.write(secret)

    def _revoke(self, *, token, **_):
        found = ApiToken.objects.filter(prefix=token[:16]) if not token.isdigit() else \
            ApiToken.objects.filter(pk=int(token))
        if found.count() != 1:
            raise CommandError(f"token: expected one token with prefix or id {token!r}, "
                               f"found {found.count()}")
        item = found.get()
        self.stdout.write(f"revoked {item.prefix}… ({item.name})" if token_revoke(item)
                          else f"{item.prefix}… was already revoked")

    def _list(self, *, username=None, **_):
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "pk")
        if username:
            tokens = tokens.filter(user=self._user(username))
        for token in tokens:
            self.stdout.write(
                f"{token.pk}\t{token.user.username}\t{token.prefix}…\t{token.name}\t"
                f"{'read-only' if token.read_only else 'read-write'}\t{token.state}\t"
                f"last used {token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else
                f"{token.pk}\t{token.user.username}\t{token.prefix}…\t{token.name}\t"
                f"{'read-only' if token.read_only else 'read-write'}\t{token.state}\tnever used")

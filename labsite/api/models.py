"""Personal API tokens and the responses remembered for ``Idempotency-Key``.

A token is shown once, when it is made; only its SHA-256 digest and a short prefix (for
people to tell their tokens apart) are stored. SHA-256 rather than a slow password hash is
deliberate: a token is 256 random bits, so there is nothing to guess by brute force, and
every API request checks one (a PBKDF2 per request would cost tens of milliseconds).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for (a CI job …).")
    prefix = models.CharField(max_length=16, db_index=True,
                              help_text="The token's first characters, kept in clear.")
    digest = models.CharField(max_length=64, unique=True,
                              help_text="SHA-256 of the whole token (hex).")
    read_only = models.BooleanField(default=False,
                                    help_text="Only reads (GET), hashing and validating.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}) of {self.user_id}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def state(self) -> str:
        """``active``, ``revoked`` or ``expired``, for the token page and ``manage.py``."""
        if self.revoked:
            return "revoked"
        return "expired" if self.is_expired() else "active"


class IdempotencyRecord(models.Model):
    """The first response to a creating POST sent with ``Idempotency-Key`` (kept
    ``API_IDEMPOTENCY_SECONDS``): a retry with the same key and body gets it again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    # null while the first request is still being answered.
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True)
    location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"],
                                               name="api_idempotency_unique_user_key")]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of {self.user_id}"

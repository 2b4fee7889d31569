"""One ``REDIS_URL`` for the whole stack, spelled the way each client wants it.

The channel layer (channels-redis) and the Celery broker (kombu) both talk to
the same Redis server, but they name a Unix socket differently: channels-redis
takes ``unix:///path/to/sock``, kombu takes ``redis+socket:///path/to/sock``.
The embedded server (``labsite.embedded_redis``) listens on a socket, so the
settings derive both forms from one variable:

>>> celery_broker_url("unix:///tmp/r.sock")
'redis+socket:///tmp/r.sock'
>>> channels_redis_url("redis+socket:///tmp/r.sock")
'unix:///tmp/r.sock'
>>> celery_broker_url("redis://127.0.0.1:6379/14")
'redis://127.0.0.1:6379/14'
"""

from __future__ import annotations

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _socket_path(url: str) -> str | None:
    for scheme in ("unix://", "redis+socket://", "socket://"):
        if url.startswith(scheme):
            return url[len(scheme):]
    return None


def celery_broker_url(redis_url: str) -> str:
    """The kombu spelling of ``redis_url`` (sockets become ``redis+socket://``)."""
    path = _socket_path(redis_url)
    return redis_url if path is None else f"redis+socket://{path}"


def channels_redis_url(redis_url: str) -> str:
    """The channels-redis / redis-py spelling of ``redis_url`` (sockets become ``unix://``)."""
    path = _socket_path(redis_url)
    return redis_url if path is None else f"unix://{path}"


def channel_layers_config(redis_url: str, prefix: str) -> dict:
    """``CHANNEL_LAYERS`` for ``redis_url``, every key under ``<prefix>:asgi``."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [channels_redis_url(redis_url)],
                "prefix": f"{prefix}:asgi",
                # A browser that falls behind must not lose events silently: a roomy
                # per-channel queue (the run pipeline sends batches of up to 200 events).
                "capacity": 1000,
                "expiry": 120,
            },
        },
    }


def cache_config(redis_url: str, prefix: str) -> dict:
    """``CACHES`` for ``redis_url``, every key under ``<prefix>:cache:``.

    Django's own Redis cache, not a per-process one: the log-in throttle
    (``labsite.lab.throttle``) counts failures there, and every daphne process (and every
    web replica) must see the same count.
    """
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": channels_redis_url(redis_url),
            "KEY_PREFIX": f"{prefix}:cache",
            # A log-in must not hang on an unreachable Redis: the throttle gives up after
            # this long and lets the attempt through (see its module docstring).
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        },
    }


def celery_transport_options(prefix: str, *, visibility_timeout: int,
                             socket_connect_timeout: float = 3.0) -> dict:
    """Kombu options: every broker key under ``<prefix>:celery:``."""
    return {
        "global_keyprefix": f"{prefix}:celery:",
        # A message a dead worker held comes back after this many seconds. It must exceed
        # the longest run, or a healthy long run is delivered twice (run_claim refuses a
        # run whose heartbeat is fresh, so that costs a message, not a duplicate result).
        "visibility_timeout": visibility_timeout,
        # Without it a connect to an unreachable host waits for the OS (minutes); a web
        # request queueing a run must fail fast instead (see CELERY_TASK_PUBLISH_RETRY_POLICY).
        "socket_connect_timeout": socket_connect_timeout,
    }

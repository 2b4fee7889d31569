"""``manage.py waitforservices [--timeout S] [--migrated]``: block until the DB and Redis answer.

Containers start in any order (Compose v1 and the current spec share no portable
"wait until healthy"), so the web and worker services run this before their real command.
``--migrated`` also waits until every migration is applied (the web service migrates;
workers wait for it).
"""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.utils import OperationalError

from labsite.redisurls import channels_redis_url


class Command(BaseCommand):
    help = "Wait until the database and Redis accept connections (and, optionally, migrations)."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=60.0)
        parser.add_argument("--migrated", action="store_true")

    def handle(self, *args, timeout, migrated, **options):
        deadline = time.monotonic() + timeout
        last_error = "nothing tried"
        while time.monotonic() < deadline:
            try:
                connection.ensure_connection()
                redis.Redis.from_url(channels_redis_url(settings.REDIS_URL)).ping()
                if migrated:
                    executor = MigrationExecutor(connection)
                    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
                    if plan:
                        raise OperationalError(f"{len(plan)} migrations not applied yet")
                self.stdout.write("database and Redis are ready")
                return
            except (OperationalError, redis.RedisError, OSError) as exc:
                last_error = str(exc).strip()
                connection.close()
                time.sleep(1)
        raise CommandError(f"services not ready after {timeout:g} s: {last_error}")

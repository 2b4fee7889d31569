"""Errors a run reports to its user: the reason it failed, or why it was not started."""

from labsite.lab.errors import LabLimitError, LabUnavailableError


class RunInputError(ValueError):
    """The scenario (or a run option) cannot be run; the message says which field and why.

    ``engine_bridge.iter_run`` raises it (or the engine's own ``RssLabError``) for bad input;
    ``services.execute_run`` stores the message as the run's error, shown as is.
    """


class RunQueueError(LabUnavailableError):
    """The task queue (the Celery broker) did not take a run's task.

    The message says which queue and why, without the URL's password; ``run`` is the run,
    already marked failed with that reason, so it is never left ``queued`` for ever. The
    lab API answers 503 on field ``queue`` with the run's id and status.
    """

    field = "queue"

    def __init__(self, message: str, *, run=None):
        super().__init__(message)
        self.run = run

    def details(self) -> dict:
        return {"run": self.run.pk, "status": self.run.status} if self.run else {}


class RunActiveLimitError(LabLimitError):
    """The user already has their cap of queued or running runs (429, field
    ``active_runs``, figures ``limit`` and ``active``): the run is refused, not queued."""

    status = 429
    field = "active_runs"


class RunRateLimitError(LabLimitError):
    """Too many run or compare requests in the window (429, field ``rate``, figures
    ``limit`` and ``window_seconds``; ``retry_after`` until the oldest one leaves it)."""

    status = 429
    field = "rate"


class RunStorageLimitError(LabLimitError):
    """The user's runs already keep their storage budget or more (413, field ``storage``,
    figures ``used_bytes`` and ``budget_bytes``); deleting runs frees it, waiting does not."""

    status = 413
    field = "storage"

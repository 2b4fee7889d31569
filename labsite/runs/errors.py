"""Errors a run reports to its user as the reason it failed."""

from labsite.lab.errors import LabUnavailableError


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

"""Errors a run reports to its user as the reason it failed."""


class RunInputError(ValueError):
    """The scenario (or a run option) cannot be run; the message says which field and why.

    ``engine_bridge.iter_run`` raises it (or the engine's own ``RssLabError``) for bad input;
    ``services.execute_run`` stores the message as the run's error, shown as is.
    """

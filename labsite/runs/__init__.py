"""Runs: a stored scenario executed by the engine on a Celery worker, streamed live.

Flow: a view calls ``services.run_start`` → the ``tasks.run_scenario`` Celery task (takes
the run's pk) → ``services.execute_run`` pulls events from ``engine_bridge.iter_run``,
sends them in small batches to the channel-layer group ``run-<id>`` (``broadcast``), and
stores progress, heartbeat, summary and per-flow results → ``consumers.RunConsumer``
relays the group's messages to the browser.
"""

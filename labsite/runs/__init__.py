"""Runs: a scenario executed by the engine on a Celery worker, streamed live.

Flow: the lab API calls ``services.run_start`` → the ``tasks.run_scenario`` Celery task
(takes the run's pk) → ``services.execute_run`` runs ``engine_bridge.run_job``, whose
trace events are stored (``RunEventChunk``) and sent in small batches to the channel-layer
group ``run-<id>`` (``broadcast``) as the engine produces them, and stores progress,
heartbeat, the summary and the engine's report → ``consumers.RunConsumer`` relays the
group's messages to the browser.
"""

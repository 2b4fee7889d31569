"""Runs: a scenario executed by the engine on a Celery worker, streamed live.

The lab page (``views.workbench``, at ``/lab/``) and its run API live here: a submit is
checked by ``submit`` and stored by ``services.run_start`` → the ``tasks.run_scenario``
Celery task (takes the run's pk) → ``services.execute_run`` runs ``engine_bridge.run_job``, whose
trace events are stored (``RunEventChunk``) and sent in small batches to the channel-layer
group ``run-<id>`` (``broadcast``) as the engine produces them, and stores progress,
heartbeat, the summary and the engine's report → ``consumers.RunConsumer`` relays the
group's messages to the browser. The lab's beat process (``labsite.beat``) runs
``tasks.reap_stale`` every 15 s: a run whose worker was lost is queued again or failed.
"""

"""Exercises in the lab (issue 13): instructors upload exercise files, every student gets a
variant of their own, a Celery worker grades the answers with the engine.

The engine side is ``engine.exercises`` (loading, lint, variants, solving, grading); this
app stores exercises and their versions, publishes them to groups, keeps each student's
variant seed, queues and grades attempts, and shows the pages. Layers: ``models`` (rows),
``secret`` (the exercise secret), ``rendering`` (sanitised Markdown), ``selectors`` (reads),
``services`` (writes), ``tasks`` (Celery wrappers), ``views`` (thin). The app sits above
``labsite.runs`` and ``labsite.lab``: it may import them, never the reverse.
"""

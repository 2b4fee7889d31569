"""The REST API v1 (``/api/v1/``): personal tokens, hashing, scenarios, runs and batches
for engineers and CI pipelines, with an OpenAPI 3 schema (drf-spectacular).

Views (``views``) stay thin: they parse with serializers (``serializers``) and call
``services`` here, or the lab's and the runs app's own services. Layering: this app may
import ``labsite.runs`` and ``labsite.lab``, never the reverse (import-linter).
"""

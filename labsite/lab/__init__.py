"""The lab's scenario side: stored scenarios and the engine's examples, users and groups,
the form's scenario file and the bit-by-bit hash, and the JSON API conventions every app's
endpoints follow (``api``, ``errors``). It imports nothing of ``labsite.runs``: runs depend
on the lab, never the other way (checked by import-linter, ``pyproject.toml``)."""

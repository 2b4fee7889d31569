"""The exercise format's version and the limits (``MAX_*``) on what an exercise file and its
variants may ask for.

They bound a file's size and shape (read before parsing), the number of questions,
parameters, hints and choices, the ranges parameters draw from, the attempts a question
allows, and what grading one variant may cost (its flows, its time), so an exercise
uploaded to the web lab cannot exhaust a worker. Every limit is named in the error that
enforces it.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

#: An exercise file larger than this is refused before parsing (bytes).
MAX_FILE_BYTES = 256 * 1024
#: Nesting depth of an exercise file: a scenario (32) inside the ``scenario`` key, and a
#: question's fields around it.
MAX_DEPTH = 40
MAX_QUESTIONS = 32
MAX_PARAMETERS = 32
#: Values one ``choice`` parameter (or one ``settings`` field) may list.
MAX_CHOICES = 64
MAX_HINTS = 5
#: Attempts a question may allow (each graded attempt may run the engine).
MAX_ATTEMPTS = 100
MAX_POINTS = 1000
MAX_PROMPT = 20_000
#: Values one ``int`` or ``port`` parameter may take (``(high - low) // step + 1``).
MAX_PARAMETER_RANGE = 1 << 32
#: Combinations of allowed values a ``settings`` question may span: the reference solver
#: tries them in order, one engine run each.
MAX_SETTING_COMBINATIONS = 64
#: Flows a variant's scenario may carry: the web lab's trace limit.
MAX_VARIANT_FLOWS = 5000
#: Seeds ``lint`` samples, reporting any variant the engine cannot build or solve.
LINT_SEEDS = 20
#: Seconds one grading (every question of one submission) may take by default.
GRADE_TIMEOUT_S = 60.0
#: Bytes of an answers file.
MAX_ANSWERS_BYTES = 64 * 1024

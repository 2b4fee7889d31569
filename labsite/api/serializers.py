"""Request and response shapes of the REST API: they check types and presence (a wrong
type or a missing field is a 400 naming it) and document the schema; what the values mean
is checked by the services and the engine."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from labsite.runs.services import SEED_MAX

MODES = ("batch", "trace")
TRANSFORMS = ("none", "symmetric-xor", "sort")


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="For programs: required, invalid, scenario, "
                                           "not_found, rate, active_runs, storage …")
    field = serializers.CharField(allow_null=True, help_text="The input it is about "
                                                             "(items[3].scenario, pcap …)")
    line = serializers.IntegerField(allow_null=True, help_text="1-based line in a scenario")
    message = serializers.CharField()


class ErrorsSerializer(serializers.Serializer):
    """Every 4xx (and 503) answers this, sometimes with figures beside ``errors``
    (``limit``, ``active``, ``retry_after`` for a fair-use refusal)."""

    errors = ErrorSerializer(many=True)


# ------------------------------------------------------------------------------- hashing


class HashTupleSerializer(serializers.Serializer):
    src = serializers.CharField(help_text="IPv4 or IPv6 address")
    dst = serializers.CharField()
    sport = serializers.IntegerField(required=False, min_value=0, max_value=65535,
                                     help_text="both ports or neither (address-only hash)")
    dport = serializers.IntegerField(required=False, min_value=0, max_value=65535)


@extend_schema_field(HashTupleSerializer(many=True))
class TupleListField(serializers.ListField):
    """Up to API_HASH_MAX_TUPLES tuples, each checked by the engine (a per-field serializer
    would cost seconds for 100,000 of them); a bad one is named ``tuples[i].field``."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        limit = settings.API_HASH_MAX_TUPLES
        if len(data) > limit:
            raise serializers.ValidationError(f"expected at most {limit:,} tuples, got "
                                              f"{len(data):,}", code="too_many")
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise serializers.ValidationError(
                    {index: [f"expected an object with src, dst[, sport, dport], got "
                             f"{type(item).__name__}"]})
        return data


class HashRequestSerializer(serializers.Serializer):
    key = serializers.CharField(default="microsoft", max_length=2000,
                                help_text="microsoft, symmetric, random:SEED or 40+ bytes hex")
    cores = serializers.IntegerField(default=4, min_value=1, max_value=64)
    hash_bits = serializers.IntegerField(default=7, min_value=1, max_value=7)
    table = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=63),
                                  required=False, max_length=128,
                                  help_text="the core of each of the 2**hash_bits buckets "
                                            "(default: round robin over cores)")
    transform = serializers.ChoiceField(TRANSFORMS, default="none",
                                        help_text="the NIC's input transform")
    src = serializers.CharField(required=False, help_text="one tuple: give src, dst[, ports]")
    dst = serializers.CharField(required=False)
    sport = serializers.IntegerField(required=False, min_value=0, max_value=65535)
    dport = serializers.IntegerField(required=False, min_value=0, max_value=65535)
    tuples = TupleListField(required=False, help_text="many tuples (up to 100,000)")

    def validate(self, attrs):
        if ("tuples" in attrs) == ("src" in attrs or "dst" in attrs):
            raise serializers.ValidationError({"tuples": ["expected either tuples or one "
                                                          "tuple's src and dst"]},
                                              code="required")
        if "tuples" not in attrs:
            for name in ("src", "dst"):
                if name not in attrs:
                    raise serializers.ValidationError({name: ["This field is required."]},
                                                      code="required")
            attrs["tuples"] = [{name: attrs.pop(name) for name in ("src", "dst", "sport",
                                                                   "dport") if name in attrs}]
        return attrs


class HashResultSerializer(serializers.Serializer):
    hash = serializers.CharField(help_text="0x-prefixed 32-bit hash")
    bucket = serializers.IntegerField()
    core = serializers.IntegerField()


class HashResponseSerializer(serializers.Serializer):
    key = serializers.CharField()
    cores = serializers.IntegerField()
    hash_bits = serializers.IntegerField()
    transform = serializers.CharField()
    count = serializers.IntegerField()
    results = HashResultSerializer(many=True)


# ----------------------------------------------------------------------------- scenarios


class ScenarioSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    body = serializers.CharField(help_text="the scenario as YAML or JSON")
    example = serializers.CharField(allow_null=True, help_text="the engine example's name")
    owner = serializers.CharField(allow_null=True)
    editable = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ScenarioWriteSerializer(serializers.Serializer):
    """A scenario's text as ``body`` (JSON) or an uploaded ``file`` (multipart)."""

    name = serializers.CharField(required=False, max_length=200, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    body = serializers.CharField(required=False, trim_whitespace=False,
                                 max_length=settings.LAB_SCENARIO_MAX_BYTES)
    file = serializers.FileField(required=False, help_text="a .yaml or .json file")

    def validate(self, attrs):
        upload = attrs.pop("file", None)
        if upload is not None:
            if "body" in attrs:
                raise serializers.ValidationError({"file": ["expected body or file, not both"]})
            limit = settings.LAB_SCENARIO_MAX_BYTES
            data = upload.read(limit + 1)
            if len(data) > limit:
                raise serializers.ValidationError(
                    {"file": [f"expected at most {limit:,} bytes"]}, code="too_large")
            try:
                attrs["body"] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise serializers.ValidationError({"file": ["expected UTF-8 text"]}) from None
        elif not self.partial and "body" not in attrs:
            raise serializers.ValidationError({"body": ["This field is required."]},
                                              code="required")
        return attrs


class ScenarioValidateSerializer(serializers.Serializer):
    body = serializers.CharField(required=False, trim_whitespace=False,
                                 max_length=settings.LAB_SCENARIO_MAX_BYTES)
    file = serializers.FileField(required=False)
    mode = serializers.ChoiceField(MODES, default="batch")

    def validate(self, attrs):
        return ScenarioWriteSerializer.validate(self, attrs)


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = ErrorSerializer(many=True, help_text="every problem, with its line and path")
    name = serializers.CharField(allow_null=True)
    flows = serializers.IntegerField(allow_null=True,
                                     help_text="null for a scenario that replays a capture")


# ---------------------------------------------------------------------------------- runs


class RunCreateSerializer(serializers.Serializer):
    scenario_id = serializers.IntegerField(required=False, min_value=1,
                                           help_text="a stored scenario (yours or an example)")
    scenario = serializers.CharField(required=False, trim_whitespace=False,
                                     help_text="or the scenario's YAML/JSON text")
    mode = serializers.ChoiceField(MODES, default="batch")
    seed = serializers.IntegerField(required=False, min_value=0, max_value=SEED_MAX)
    pcap = serializers.FileField(required=False, help_text="a capture to replay (multipart)")

    def validate(self, attrs):
        if ("scenario_id" in attrs) == ("scenario" in attrs):
            raise serializers.ValidationError(
                {"scenario": ["expected scenario_id or scenario, exactly one"]},
                code="required")
        return attrs


class VerdictSerializer(serializers.Serializer):
    passed = serializers.BooleanField()
    flows = serializers.IntegerField()
    counts = serializers.DictField(child=serializers.IntegerField(),
                                   help_text="flows per verdict: symmetric, handed-off, "
                                             "refused, asymmetric")
    line = serializers.CharField()


class TimingsSerializer(serializers.Serializer):
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    queued_seconds = serializers.FloatField(allow_null=True)
    run_seconds = serializers.FloatField(allow_null=True)


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    metric = serializers.CharField()
    op = serializers.CharField()
    expected = serializers.FloatField()
    actual = serializers.FloatField(allow_null=True)
    passed = serializers.BooleanField()


class RunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    schema_version = serializers.IntegerField()
    report_schema_version = serializers.IntegerField(allow_null=True)
    title = serializers.CharField(allow_blank=True)
    mode = serializers.CharField()
    seed = serializers.IntegerField()
    status = serializers.ChoiceField(("queued", "running", "succeeded", "failed",
                                      "cancelled"))
    progress = serializers.FloatField()
    error = serializers.CharField(allow_blank=True)
    scenario_id = serializers.IntegerField(allow_null=True)
    batch_id = serializers.IntegerField(allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    verdict = VerdictSerializer(allow_null=True)
    summary = serializers.JSONField(help_text="the engine's summary figures")
    checks = CheckSerializer(many=True)
    rows_total = serializers.IntegerField(allow_null=True)
    rows_kept = serializers.IntegerField()
    timings = TimingsSerializer()


class RunDeletedSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    deleted = serializers.BooleanField()
    cancelled = serializers.BooleanField()
    freed_bytes = serializers.IntegerField()


class RowSerializer(serializers.Serializer):
    """One flow's outcome (the engine's ``FlowOutcome.as_dict()``; more fields than these)."""

    flow = serializers.IntegerField()
    verdict = serializers.ChoiceField(("symmetric", "handed-off", "refused", "asymmetric"))
    request_core = serializers.IntegerField()
    response_core = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


# ------------------------------------------------------------------------------- batches


class BatchItemSerializer(serializers.Serializer):
    scenario_id = serializers.IntegerField(required=False, min_value=1)
    scenario = serializers.CharField(required=False, trim_whitespace=False)
    mode = serializers.ChoiceField(MODES, required=False)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=SEED_MAX)
    title = serializers.CharField(required=False, max_length=200, allow_blank=True)

    def validate(self, attrs):
        return RunCreateSerializer.validate(self, attrs)


class BatchCreateSerializer(serializers.Serializer):
    """``items`` (many scenarios), or ``scenario_id``/``scenario`` with ``variations``
    (the engine's compare axes: key, policy, strategy, transform, handoff)."""

    title = serializers.CharField(required=False, max_length=200, allow_blank=True,
                                  default="")
    items = BatchItemSerializer(many=True, required=False)
    scenario_id = serializers.IntegerField(required=False, min_value=1)
    scenario = serializers.CharField(required=False, trim_whitespace=False)
    variations = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField(max_length=2000)),
        required=False, help_text='e.g. [{"key": "symmetric"}, {"policy": "usip"}]')
    mode = serializers.ChoiceField(MODES, default="batch")
    seed = serializers.IntegerField(required=False, min_value=0, max_value=SEED_MAX)

    def validate(self, attrs):
        limit = settings.API_BATCH_MAX_ITEMS
        count = len(attrs.get("items") or attrs.get("variations") or [])
        if ("items" in attrs) == ("variations" in attrs):
            raise serializers.ValidationError(
                {"items": ["expected items, or a scenario with variations"]}, code="required")
        if count == 0:
            raise serializers.ValidationError(
                {"items" if "items" in attrs else "variations": ["expected at least one"]})
        if count > limit:
            raise serializers.ValidationError(
                {"items" if "items" in attrs else "variations":
                 [f"expected at most {limit} items in a batch, got {count}"]},
                code="too_many")
        if "variations" in attrs and ("scenario_id" in attrs) == ("scenario" in attrs):
            raise serializers.ValidationError(
                {"scenario": ["expected scenario_id or scenario (with variations)"]},
                code="required")
        return attrs


class BatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    run_id = serializers.IntegerField()
    title = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    progress = serializers.FloatField()
    error = serializers.CharField(allow_blank=True)
    passed = serializers.BooleanField(allow_null=True)
    verdict = VerdictSerializer(allow_null=True)


class BatchAggregateSerializer(serializers.Serializer):
    passed = serializers.BooleanField()
    items_passed = serializers.IntegerField()
    items_failed = serializers.IntegerField()
    items_in_error = serializers.IntegerField()
    flows = serializers.DictField(child=serializers.IntegerField())


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    junit_url = serializers.CharField()
    schema_version = serializers.IntegerField()
    title = serializers.CharField(allow_blank=True)
    kind = serializers.CharField()
    status = serializers.ChoiceField(("queued", "running", "finished"))
    progress = serializers.FloatField()
    items_total = serializers.IntegerField()
    items_finished = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    items = BatchItemResultSerializer(many=True)
    result = BatchAggregateSerializer(allow_null=True)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(("ok", "unavailable"))
    database = serializers.CharField()
    redis = serializers.CharField()


@extend_schema_field(OpenApiTypes.BINARY)
class BinaryField(serializers.Field):
    """Documents a binary download."""


# ----------------------------------------------------------------------------- exercises


class ExerciseSerializer(serializers.Serializer):
    slug = serializers.CharField(help_text="the exercise file's id, its address")
    title = serializers.CharField()
    published = serializers.BooleanField()
    due_at = serializers.DateTimeField(allow_null=True)
    late_policy = serializers.ChoiceField(("accept", "penalty", "closed"))
    late_penalty_pct = serializers.IntegerField()
    status = serializers.ChoiceField(("not started", "started", "graded"),
                                     help_text="yours")
    score = serializers.FloatField(allow_null=True, help_text="the sum of your per-question "
                                                              "bests; null before a grade")
    max_score = serializers.FloatField(allow_null=True)
    url = serializers.CharField()


class HintSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    number = serializers.IntegerField()
    cost = serializers.FloatField(help_text="points taken off the question once revealed")
    text = serializers.CharField(allow_null=True, help_text="null until revealed")


class QuestionSerializer(serializers.Serializer):
    """A question of the student view (the engine's ``student_view``; kinds add givens such
    as ``packet``, ``choices``, ``allowed``, ``target_core``)."""

    id = serializers.CharField()
    kind = serializers.CharField()
    kind_number = serializers.IntegerField()
    prompt = serializers.CharField(help_text="Markdown")
    prompt_html = serializers.CharField(help_text="the prompt rendered and sanitised")
    points = serializers.FloatField()
    attempts = serializers.IntegerField(help_text="the attempt limit")
    attempts_left = serializers.IntegerField()
    answer_fields = serializers.ListField(child=serializers.CharField(),
                                          help_text="the fields an answer may set")
    hints = HintSerializer(many=True)


class VariantSerializer(serializers.Serializer):
    exercise = serializers.CharField()
    title = serializers.CharField()
    prompt = serializers.CharField(help_text="Markdown, the variant's values substituted")
    prompt_html = serializers.CharField()
    parameters = serializers.JSONField()
    scenario = serializers.JSONField(help_text="the variant's scenario (no answer in it)")
    max_score = serializers.FloatField()
    version = serializers.IntegerField()
    reset = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    questions = QuestionSerializer(many=True)


class ExerciseDetailSerializer(ExerciseSerializer):
    variant = VariantSerializer(allow_null=True, help_text="yours; null until you start it "
                                                           "(POST …/start)")
    attempts_url = serializers.CharField()


class AnswersSerializer(serializers.Serializer):
    answers = serializers.DictField(
        child=serializers.DictField(), allow_empty=False,
        help_text='{"question id": {"field": value}}; only each question\'s answer_fields, '
                  'lists as JSON lists (e.g. {"steer": {"hash": "0x51ccc178", "bucket": 120, '
                  '"core": 0}})')


class AttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    url = serializers.CharField()
    student = serializers.CharField()
    status = serializers.ChoiceField(("queued", "grading", "graded", "failed"))
    finished = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    score = serializers.FloatField(allow_null=True)
    max_score = serializers.FloatField()
    total = serializers.FloatField(allow_null=True,
                                   help_text="the variant's score so far (per-question bests)")
    version = serializers.IntegerField()
    late = serializers.BooleanField()
    penalty_pct = serializers.IntegerField()
    superseded = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    questions = serializers.ListField(child=serializers.JSONField(),
                                      help_text="the engine's feedback per question")


class HintRequestSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=64)
    index = serializers.IntegerField(min_value=0, max_value=1000,
                                     help_text="0 for the first hint; hints go in order")


class HintRevealSerializer(serializers.Serializer):
    question = serializers.CharField()
    index = serializers.IntegerField()
    number = serializers.IntegerField()
    cost = serializers.FloatField()
    points = serializers.FloatField(help_text="the question's points, before the cost")
    text = serializers.CharField()


class GradebookRowSerializer(serializers.Serializer):
    username = serializers.CharField()
    user_id = serializers.IntegerField()
    seed = serializers.IntegerField(help_text="exercise variant FILE --seed SEED")
    reset = serializers.IntegerField()
    best_score = serializers.FloatField(allow_null=True)
    attempts = serializers.IntegerField(help_text="graded attempts")
    last_submission = serializers.DateTimeField(allow_null=True)
    seconds_first_view_to_last = serializers.FloatField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    per_question = serializers.DictField(child=serializers.FloatField())


class QuestionRateSerializer(serializers.Serializer):
    id = serializers.CharField()
    points = serializers.FloatField()
    answered = serializers.IntegerField()
    full = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)


class GradebookSerializer(serializers.Serializer):
    exercise = serializers.CharField()
    title = serializers.CharField()
    version = serializers.IntegerField()
    max_score = serializers.FloatField()
    questions = serializers.ListField(child=serializers.DictField())
    success = QuestionRateSerializer(many=True)
    scores = serializers.ListField(child=serializers.FloatField())
    rows = GradebookRowSerializer(many=True)
    csv_url = serializers.CharField()

"""The REST API's views: parse with a serializer, call a service, answer. Errors are raised
and turned into the one error body by ``exceptions.api_exception_handler``.

Creating POSTs honour ``Idempotency-Key`` (:func:`idempotent`); runs and batches answer 202
with a ``Location``; every list is paged (``pagination.Pagination``).
"""

from __future__ import annotations

import functools
import json

from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from labsite.api import exercises, services
from labsite.api import serializers as s
from labsite.api.parsers import body_limit_check
from labsite.api.permissions import AllowAnyone
from labsite.lab.errors import LabInputError, error_body, error_entry
from labsite.runs.services import lab_run_pcap, run_cancel, run_delete

ERROR = s.ErrorsSerializer


def errors(*codes: int) -> dict:
    """The error responses an operation documents (every one has the one error body)."""
    described = {400: "bad input, every problem named", 401: "no valid token or session",
                 403: "not allowed (a read-only token writing, another's scenario)",
                 404: "no such thing, or not yours", 409: "the resource's state refuses it",
                 413: "a body over the limit, or over your storage budget",
                 415: "an unsupported Content-Type",
                 422: "Idempotency-Key reused with another body",
                 429: "fair use: too many requests or active runs (Retry-After says when)",
                 503: "the task queue is unreachable"}
    return {code: OpenApiResponse(ERROR, description=described[code]) for code in codes}


READ = errors(401, 403, 404)
WRITE = errors(400, 401, 403, 404, 413, 415)
CREATE = errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
IDEMPOTENCY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                               description="a retry with the same key and body gets the "
                                           "first response (kept 24 h)")


class ApiView(GenericAPIView):
    """Refuses a declared body over API_BODY_MAX_BYTES before anything reads it."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        body_limit_check(request.META.get("CONTENT_LENGTH"))


def _plain(data):
    """``data`` as JSON values (datetimes as text), as a replay will send it."""
    return json.loads(json.dumps(data, cls=JSONEncoder))


def idempotent(post):
    """Honour ``Idempotency-Key`` on a creating POST: the first response (status, body,
    Location) is kept for its user and key; a retry with the same body gets it again
    (``Idempotent-Replayed: true``), another body a 422."""
    @functools.wraps(post)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return post(self, request, *args, **kwargs)
        if len(key) > 255:
            raise ValidationError({"Idempotency-Key": ["expected at most 255 characters"]})
        fingerprint = services.request_fingerprint(request.method, request.path, request.data)
        stored = services.idempotency_begin(user=request.user, key=key,
                                            fingerprint=fingerprint)
        if stored is not None:
            response = Response(stored.body, status=stored.status)
            if stored.location:
                response["Location"] = stored.location
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            try:
                response = post(self, request, *args, **kwargs)
            except Exception as exc:
                response = self.handle_exception(exc)  # a refusal is kept like an answer
        except BaseException:
            services.idempotency_release(user=request.user, key=key)
            raise
        services.idempotency_finish(user=request.user, key=key,
                                    status=response.status_code,
                                    body=_plain(response.data),
                                    location=response.get("Location", ""))
        return response
    return wrapper


def _accepted(request, data: dict, url: str) -> Response:
    response = Response(_plain(data), status=status.HTTP_202_ACCEPTED)
    response["Location"] = request.build_absolute_uri(url)
    return response


# ---------------------------------------------------------------------------------- hash


class HashView(ApiView):
    stores_nothing = True  # a read-only token may hash
    serializer_class = s.HashRequestSerializer

    @extend_schema(summary="Toeplitz hash, bucket and core of one tuple or up to 100,000",
                   responses={200: s.HashResponseSerializer, **errors(400, 401, 403, 413,
                                                                      415)})
    def post(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        options = {k: form.validated_data[k] for k in ("key", "cores", "hash_bits",
                                                       "transform")}
        results = services.hash_tuples(tuples=form.validated_data["tuples"],
                                       table=form.validated_data.get("table"), **options)
        return Response({**options, "count": len(results), "results": results})


# ----------------------------------------------------------------------------- scenarios


def scenario_data(request, scenario) -> dict:
    from labsite.lab.selectors import user_is_instructor

    return {"id": scenario.pk, "name": scenario.name, "slug": scenario.slug,
            "description": scenario.description, "body": scenario.body,
            "example": scenario.example or None,
            "owner": scenario.owner.username if scenario.owner_id else None,
            "editable": not scenario.example and (scenario.owner_id == request.user.pk
                                                  or user_is_instructor(request.user)),
            "created_at": scenario.created_at, "updated_at": scenario.updated_at}


class ScenarioListView(ApiView):
    serializer_class = s.ScenarioWriteSerializer

    @extend_schema(summary="Scenarios you may run: yours and the examples (instructors: all)",
                   responses={200: s.ScenarioSerializer(many=True), **READ})
    def get(self, request):
        page = self.paginate_queryset(services.scenarios_visible(user=request.user))
        return self.get_paginated_response([scenario_data(request, x) for x in page])

    @extend_schema(summary="Store a scenario (JSON body or a file upload), checked first",
                   parameters=[IDEMPOTENCY],
                   request={"application/json": s.ScenarioWriteSerializer,
                            "multipart/form-data": s.ScenarioWriteSerializer},
                   responses={201: s.ScenarioSerializer, **CREATE})
    @idempotent
    def post(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        scenario = services.scenario_create(user=request.user, text=data["body"],
                                            name=data.get("name", ""),
                                            description=data.get("description", ""))
        response = Response(_plain(scenario_data(request, scenario)), status=201)
        response["Location"] = request.build_absolute_uri(
            reverse("api:scenario", args=[scenario.pk]))
        return response


class ScenarioValidateView(ApiView):
    stores_nothing = True
    serializer_class = s.ScenarioValidateSerializer

    @extend_schema(summary="Check a scenario as a run would (every problem, nothing stored)",
                   request={"application/json": s.ScenarioValidateSerializer,
                            "multipart/form-data": s.ScenarioValidateSerializer},
                   responses={200: s.ValidationResultSerializer,
                              **errors(400, 401, 403, 413, 415)})
    def post(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        return Response(services.scenario_check(form.validated_data["body"],
                                                mode=form.validated_data["mode"]))


class ScenarioDetailView(ApiView):
    serializer_class = s.ScenarioWriteSerializer

    @extend_schema(summary="One scenario", responses={200: s.ScenarioSerializer, **READ})
    def get(self, request, scenario_id: int):
        scenario = services.scenario_get(user=request.user, scenario_id=scenario_id)
        return Response(scenario_data(request, scenario))

    def _update(self, request, scenario_id: int, *, partial: bool):
        scenario = services.scenario_editable(user=request.user, scenario_id=scenario_id)
        form = self.get_serializer(data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        services.scenario_update(scenario, text=data.get("body"), name=data.get("name"),
                                 description=data.get("description"))
        return Response(scenario_data(request, scenario))

    @extend_schema(summary="Replace your scenario's text (checked first)",
                   request={"application/json": s.ScenarioWriteSerializer,
                            "multipart/form-data": s.ScenarioWriteSerializer},
                   responses={200: s.ScenarioSerializer, **WRITE})
    def put(self, request, scenario_id: int):
        return self._update(request, scenario_id, partial=False)

    @extend_schema(summary="Change your scenario's name, description or text",
                   request={"application/json": s.ScenarioWriteSerializer,
                            "multipart/form-data": s.ScenarioWriteSerializer},
                   responses={200: s.ScenarioSerializer, **WRITE})
    def patch(self, request, scenario_id: int):
        return self._update(request, scenario_id, partial=True)

    @extend_schema(summary="Delete your scenario (409 while runs made from it exist)",
                   responses={204: None, **errors(401, 403, 404, 409)})
    def delete(self, request, scenario_id: int):
        scenario = services.scenario_editable(user=request.user, scenario_id=scenario_id)
        services.scenario_delete(scenario)
        return Response(status=204)


# ---------------------------------------------------------------------------------- runs


def run_data(run) -> dict:
    return {**services.run_result(run), "url": reverse("api:run", args=[run.pk])}


class RunListView(ApiView):
    serializer_class = s.RunCreateSerializer

    @extend_schema(summary="Your runs, newest first (instructors: everyone's)",
                   responses={200: s.RunSerializer(many=True), **READ})
    def get(self, request):
        from labsite.runs.selectors import RunFilters, run_list

        # the runs list's own selector; each item shows its report, so nothing deferred
        runs = run_list(user=request.user, filters=RunFilters(who="all")).defer(None)
        page = self.paginate_queryset(runs)
        return self.get_paginated_response([run_data(run) for run in page])

    @extend_schema(summary="Start a run of a stored scenario or of inline text (202)",
                   parameters=[IDEMPOTENCY],
                   request={"application/json": s.RunCreateSerializer,
                            "multipart/form-data": s.RunCreateSerializer},
                   responses={202: s.RunSerializer, **CREATE})
    @idempotent
    def post(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        run = services.run_submit(user=request.user, scenario_id=data.get("scenario_id"),
                                  text=data.get("scenario"), mode=data["mode"],
                                  seed=data.get("seed"), upload=data.get("pcap"))
        return _accepted(request, run_data(run), reverse("api:run", args=[run.pk]))


class RunDetailView(ApiView):
    @extend_schema(summary="A run: status, progress, verdict, summary, checks, timings",
                   responses={200: s.RunSerializer, **READ})
    def get(self, request, run_id: int):
        return Response(run_data(services.run_visible(user=request.user, run_id=run_id)))

    @extend_schema(summary="Delete a run (cancelled first if active), as the runs list does",
                   responses={200: s.RunDeletedSerializer, **errors(401, 403, 404)})
    def delete(self, request, run_id: int):
        done = run_delete(services.run_visible(user=request.user, run_id=run_id),
                          by=request.user)
        return Response({"run": done.run, "deleted": True, "cancelled": done.cancelled,
                         "freed_bytes": done.freed_bytes})


class RunCancelView(ApiView):
    @extend_schema(summary="Cancel a queued or running run (a finished one is left as is)",
                   request=None, responses={200: s.RunSerializer, **errors(401, 403, 404)})
    def post(self, request, run_id: int):
        run = services.run_visible(user=request.user, run_id=run_id)
        run_cancel(run, reason=f"cancelled: by {request.user.username} through the API")
        run.refresh_from_db()
        return Response(run_data(run))


class RunRowsView(ApiView):
    @extend_schema(summary="The run's per-flow rows (the first 2,000 it kept), paged",
                   parameters=[OpenApiParameter("verdict", str, enum=list(
                       services.VERDICT_COUNTS), description="only flows with this verdict")],
                   responses={200: s.RowSerializer(many=True), **errors(400, 401, 403, 404)})
    def get(self, request, run_id: int):
        run = services.run_visible(user=request.user, run_id=run_id)
        verdict = request.query_params.get("verdict")
        if verdict is not None and verdict not in services.VERDICT_COUNTS:
            raise LabInputError.one("verdict", f"expected one of "
                                               f"{', '.join(services.VERDICT_COUNTS)}")
        page = self.paginate_queryset(services.run_rows(run, verdict=verdict))
        return self.get_paginated_response(page)


class RunPcapView(ApiView):
    @extend_schema(summary="The run's packets as a pcap (its first 5,000 flows)",
                   responses={(200, "application/vnd.tcpdump.pcap"): OpenApiTypes.BINARY,
                              **errors(400, 401, 403, 404)})
    def get(self, request, run_id: int):
        data, filename = lab_run_pcap(services.run_visible(user=request.user, run_id=run_id))
        response = HttpResponse(data, content_type="application/vnd.tcpdump.pcap")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


#: The engine's report is one self-contained page with inline Plotly.js and styles: it is
#: served sandboxed (a unique origin, no cookies, no forms), which is what lets it run
#: inline code the lab's own pages never may.
REPORT_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "img-src data: blob:; font-src data:; sandbox allow-scripts; "
                 "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class RunReportView(ApiView):
    @extend_schema(summary="The engine's HTML report of a succeeded run",
                   responses={(200, "text/html"): OpenApiTypes.STR,
                              **errors(401, 403, 404, 409)})
    def get(self, request, run_id: int):
        html = services.run_report_html(services.run_visible(user=request.user, run_id=run_id))
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = REPORT_POLICY
        return response


class JUnitRenderer(BaseRenderer):
    """``?format=junit`` on a run or a batch (CI servers read JUnit XML)."""

    media_type = "application/xml"
    format = "junit"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, str | bytes) else json.dumps(data, cls=JSONEncoder)


def _xml(text: str) -> HttpResponse:
    return HttpResponse(text, content_type="application/xml; charset=utf-8")


class RunJUnitView(ApiView):
    @extend_schema(summary="JUnit XML of a run: one test case per check",
                   responses={(200, "application/xml"): OpenApiTypes.STR, **READ})
    def get(self, request, run_id: int):
        return _xml(services.run_junit(services.run_visible(user=request.user,
                                                            run_id=run_id)))


# ------------------------------------------------------------------------------- batches


def batch_data(batch) -> dict:
    url = reverse("api:batch", args=[batch.pk])
    return {**services.batch_result(batch), "url": url,
            "junit_url": reverse("api:batch-junit", args=[batch.pk])}


class BatchListView(ApiView):
    serializer_class = s.BatchCreateSerializer

    @extend_schema(summary="Your batches, newest first (instructors: everyone's)",
                   responses={200: s.BatchSerializer(many=True), **READ})
    def get(self, request):
        from labsite.runs.selectors import batch_list

        page = self.paginate_queryset(batch_list(user=request.user))
        return self.get_paginated_response([batch_data(batch) for batch in page])

    @extend_schema(summary="Start a batch: many scenarios, or one under variations (202)",
                   parameters=[IDEMPOTENCY], request=s.BatchCreateSerializer,
                   responses={202: s.BatchSerializer, **CREATE})
    @idempotent
    def post(self, request):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        batch = services.batch_create(
            user=request.user, items=data.get("items"), scenario_id=data.get("scenario_id"),
            text=data.get("scenario"), variations=data.get("variations"), mode=data["mode"],
            seed=data.get("seed"), title=data.get("title", ""))
        return _accepted(request, batch_data(batch), reverse("api:batch", args=[batch.pk]))


class BatchDetailView(ApiView):
    renderer_classes = [JSONRenderer, JUnitRenderer]

    @extend_schema(summary="A batch: per-item progress, and the aggregate once all ended "
                           "(?format=junit: JUnit XML)",
                   parameters=[OpenApiParameter("format", str, enum=["json", "junit"])],
                   responses={(200, "application/json"): s.BatchSerializer,
                              (200, "application/xml"): OpenApiTypes.STR, **READ})
    def get(self, request, batch_id: int):
        batch = services.batch_visible(user=request.user, batch_id=batch_id)
        if request.accepted_renderer.format == "junit":
            return _xml(services.batch_junit(batch))
        return Response(_plain(batch_data(batch)))


class BatchJUnitView(ApiView):
    @extend_schema(summary="JUnit XML of a batch: a test case per check of each item",
                   responses={(200, "application/xml"): OpenApiTypes.STR, **READ})
    def get(self, request, batch_id: int):
        return _xml(services.batch_junit(services.batch_visible(user=request.user,
                                                                batch_id=batch_id)))


# ----------------------------------------------------------------------------- exercises
# Thin wrappers over labsite.exercises (through labsite.api.exercises): the same rules as
# the exercise pages. A student asking for what is not theirs gets a 404, as on the pages.


def exercise_data(summary: dict) -> dict:
    return {**summary, "url": reverse("api:exercise", args=[summary["slug"]])}


def attempt_json(attempt) -> dict:
    slug = attempt.version.exercise.slug
    return {**exercises.attempt_data(attempt),
            "url": reverse("api:exercise-attempt", args=[slug, attempt.pk])}


class ExerciseListView(ApiView):
    @extend_schema(summary="The exercises you may open, with your status, due date and score",
                   responses={200: s.ExerciseSerializer(many=True), **READ})
    def get(self, request):
        page = self.paginate_queryset(exercises.exercise_list(user=request.user))
        return self.get_paginated_response(_plain([exercise_data(x) for x in page]))


def _detail(request, exercise) -> dict:
    data = exercise_data(exercises.exercise_detail(exercise, user=request.user))
    return _plain({**data, "attempts_url": reverse("api:exercise-attempts",
                                                   args=[exercise.slug])})


class ExerciseDetailView(ApiView):
    @extend_schema(summary="An exercise and your variant: prompt, questions, allowed answer "
                           "fields, hints (null before you start it; no solution)",
                   responses={200: s.ExerciseDetailSerializer, **READ})
    def get(self, request, slug: str):
        return Response(_detail(request, exercises.exercise_visible(user=request.user,
                                                                    slug=slug)))


class ExerciseStartView(ApiView):
    @extend_schema(summary="Start the exercise: your variant is drawn and stored (again: "
                           "the same one)",
                   request=None, responses={200: s.ExerciseDetailSerializer,
                                            **errors(401, 403, 404)})
    def post(self, request, slug: str):
        return Response(_detail(request, exercises.exercise_start(user=request.user,
                                                                  slug=slug)))


class ExerciseAttemptsView(ApiView):
    serializer_class = s.AnswersSerializer

    @extend_schema(summary="Your attempts at the exercise, newest first",
                   responses={200: s.AttemptSerializer(many=True), **READ})
    def get(self, request, slug: str):
        page = self.paginate_queryset(exercises.attempts_of(user=request.user, slug=slug))
        return self.get_paginated_response(_plain([attempt_json(a) for a in page]))

    @extend_schema(summary="Submit answers: graded on a worker (202; poll the Location). "
                           "Attempt limits are per question; the same Idempotency-Key is "
                           "the same attempt",
                   parameters=[IDEMPOTENCY], request=s.AnswersSerializer,
                   responses={202: s.AttemptSerializer, **CREATE})
    @idempotent
    def post(self, request, slug: str):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        attempt = exercises.attempt_submit(
            user=request.user, slug=slug, answers=form.validated_data["answers"],
            idempotency_key=request.headers.get("Idempotency-Key", "").strip())
        data = attempt_json(attempt)
        return _accepted(request, data, data["url"])


class ExerciseAttemptView(ApiView):
    @extend_schema(summary="An attempt: status, score and the engine's feedback per question "
                           "(yours; instructors: anyone's)",
                   responses={200: s.AttemptSerializer, **READ})
    def get(self, request, slug: str, attempt_id: int):
        return Response(_plain(attempt_json(exercises.attempt_visible(
            user=request.user, slug=slug, attempt_id=attempt_id))))


class ExerciseHintView(ApiView):
    serializer_class = s.HintRequestSerializer

    @extend_schema(summary="Reveal a hint of a question of your variant; its cost (in the "
                           "variant's hints) comes off that question's points",
                   request=s.HintRequestSerializer,
                   responses={200: s.HintRevealSerializer, **errors(400, 401, 403, 404, 413,
                                                                    415)})
    def post(self, request, slug: str):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        return Response(exercises.hint_reveal(user=request.user, slug=slug,
                                              question=form.validated_data["question"],
                                              index=form.validated_data["index"]))


class GradebookView(ApiView):
    @extend_schema(summary="Instructors: the exercise's gradebook (per student: seed, best "
                           "score, attempts, last submission; each question's success rate)",
                   responses={200: s.GradebookSerializer, **READ})
    def get(self, request, slug: str):
        book = exercises.gradebook(user=request.user, slug=slug)
        return Response(_plain({**book, "csv_url": reverse("api:exercise-gradebook-csv",
                                                           args=[slug])}))


class GradebookCsvView(ApiView):
    @extend_schema(summary="Instructors: the gradebook as CSV (the page's: seed column, "
                           "formula cells escaped)",
                   responses={(200, "text/csv"): OpenApiTypes.STR, **READ})
    def get(self, request, slug: str):
        text, filename = exercises.gradebook_csv(user=request.user, slug=slug)
        response = HttpResponse(text, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


# -------------------------------------------------------------------------------- health


class HealthView(ApiView):
    authentication_classes: list = []
    permission_classes = [AllowAnyone]

    @extend_schema(summary="Database and Redis reachable? (no authentication)",
                   responses={200: s.HealthSerializer, 503: s.HealthSerializer},
                   auth=[])
    def get(self, request):
        checks = services.health()
        healthy = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if healthy else "unavailable", **checks},
                        status=200 if healthy else 503)


@csrf_exempt  # it changes nothing; a DELETE to a bad id is a JSON 404, not a CSRF page
def not_found(request, *args, **kwargs):
    """A path under /api/v1/ that names no endpoint (``ids`` are positive integers)."""
    return JsonResponse(error_body([error_entry("url", f"no API endpoint at {request.path}",
                                                code="not_found")], 404), status=404)


# ---------------------------------------------------------------------- the API's docs

#: Swagger UI and Redoc (from drf-spectacular-sidecar, same origin) need what the lab's
#: own pages never do: styles injected at run time (Redoc's styled-components) and blob:
#: workers (Redoc's search). Still no inline or foreign script.
DOCS_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; "
               "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
               "frame-ancestors 'none'")


class _DocsPolicy:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_POLICY
        return response


class SwaggerView(_DocsPolicy, SpectacularSwaggerSplitView):
    """Swagger UI, its configuration served as a script of its own (``?script``), so the
    page has no inline script."""

    template_name = "api/swagger_ui.html"
    authentication_classes: list = []
    permission_classes = [AllowAnyone]


class RedocView(_DocsPolicy, SpectacularRedocView):
    """Redoc without the web fonts the stock template fetches from Google."""

    template_name = "api/redoc.html"
    authentication_classes: list = []
    permission_classes = [AllowAnyone]

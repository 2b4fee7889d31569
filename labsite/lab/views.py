"""The lab page and its JSON API. Views stay thin: selectors read, services write.

Every API refusal is ``{"errors": [{"field", "line", "message"}]}`` (see
``labsite.lab.errors``): 400 for bad input, 403 when not logged in, 404 for a run that does
not exist or is not yours, 405 for a wrong method, 503 (field ``queue``, with the failed
run's ``run`` and ``status``) when the task queue cannot be reached — never a server error
for bad input.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labsite.lab import builder
from labsite.lab.errors import LabInputError
from labsite.lab.selectors import example_list, lab_limits
from labsite.lab.services import (
    examples_ensure,
    json_parse,
    lab_builder_yaml,
    lab_compare_submit,
    lab_explain,
    lab_run_pcap,
    lab_run_submit,
)
from labsite.runs.errors import RunQueueError
from labsite.runs.selectors import run_events_page, run_get_for_user, run_payload, run_urls
from labsite.runs.services import runs_reap_stale


def _errors(status: int, field: str, message: str, /, **extra) -> JsonResponse:
    return JsonResponse({"errors": [{"field": field, "line": None, "message": message}],
                         **extra}, status=status)


def api_view(*methods: str):
    """Login (403 JSON, not a redirect), method (405 JSON), LabInputError (400 JSON) and
    RunQueueError (503 JSON)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return _errors(403, "login", "log in to use the lab")
            if request.method not in methods:
                response = _errors(405, "method", f"expected {' or '.join(methods)}, got "
                                                  f"{request.method}")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except LabInputError as error:
                return JsonResponse({"errors": error.errors}, status=400)
            except RequestDataTooBig:
                return _errors(400, "body", f"expected at most "
                                            f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes "
                                            f"of fields (a capture goes in the file field "
                                            f"pcap)")
            except Http404 as missing:
                return _errors(404, "run", str(missing))
            except RunQueueError as down:  # the run is stored, failed with this reason
                run = {"run": down.run.pk, "status": down.run.status} if down.run else {}
                return _errors(503, "queue", str(down), **run)
        return wrapper
    return decorate


def _visible_run(request, run_id: int):
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run is None:
        raise Http404(f"no run {run_id}, or not yours")
    return run


def _submitted_data(request) -> tuple[dict, object]:
    """The fields of a submit (a JSON body or a multipart form) and the uploaded pcap."""
    if request.content_type == "application/json":
        data = json_parse(request.body or b"{}", "body")
        if not isinstance(data, dict):
            raise LabInputError.one("body", "expected a JSON object")
        return data, None
    return request.POST.dict(), request.FILES.get("pcap")


@login_required
@require_GET
def workbench(request):
    """The lab page; ``?run=<id>`` opens a run (replayed, or watched if still running)."""
    examples_ensure()
    run_data = None
    if request.GET.get("run"):
        try:
            run_id = int(request.GET["run"])
        except ValueError:
            raise Http404("no such run") from None
        runs_reap_stale()
        run_data = run_payload(_visible_run(request, run_id))
    return render(request, "lab/workbench.html", {
        "presets_json": builder.PRESETS,
        "defaults_json": builder.DEFAULTS,
        "limits_json": lab_limits(),
        "examples": example_list(),
        "run_json": run_data,
    })


def _created(submitted) -> JsonResponse:
    run = submitted.run
    return JsonResponse({"run": run.pk, **run_urls(run.pk), "mode": run.mode,
                         "scenario_yaml": submitted.scenario_yaml, "flows": submitted.flows},
                        status=201)


@api_view("POST")
def api_runs(request):
    data, upload = _submitted_data(request)
    return _created(lab_run_submit(user=request.user, data=data, upload=upload))


@api_view("POST")
def api_compare(request):
    data, upload = _submitted_data(request)
    return _created(lab_compare_submit(user=request.user, data=data, upload=upload))


@api_view("GET")
def api_run(request, run_id: int):
    runs_reap_stale()  # a run whose worker died reads as retried or failed, never stuck
    return JsonResponse(run_payload(_visible_run(request, run_id)))


@api_view("GET")
def api_run_events(request, run_id: int):
    run = _visible_run(request, run_id)
    numbers = {}
    for name, default, low, high in (("after", -1, -1, 2**31),
                                     ("limit", settings.RUN_EVENTS_PAGE_MAX, 1,
                                      settings.RUN_EVENTS_PAGE_MAX)):
        text = request.GET.get(name, "")
        try:
            numbers[name] = int(text) if text.strip() else default
        except ValueError:
            raise LabInputError.one(name, f"expected an integer {low}–{high}, got "
                                          f"{text!r}") from None
        if not low <= numbers[name] <= high:
            raise LabInputError.one(name, f"expected an integer {low}–{high}, got "
                                          f"{numbers[name]}")
    return JsonResponse(run_events_page(run, after=numbers["after"], limit=numbers["limit"]))


@api_view("POST")
def api_builder_yaml(request):
    data, _ = _submitted_data(request)
    return JsonResponse({"yaml": lab_builder_yaml(data)})


@api_view("GET")
def api_explain(request):
    return JsonResponse(lab_explain(request.GET))


@api_view("GET")
def api_run_pcap(request, run_id: int):
    """The run's packets as a pcap download (client and server sides, raw IP)."""
    data, filename = lab_run_pcap(_visible_run(request, run_id))
    response = HttpResponse(data, content_type="application/vnd.tcpdump.pcap")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Length"] = str(len(data))
    return response

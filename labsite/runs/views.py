"""The lab page, its run API and the runs list. Views stay thin: selectors read, services
write, and a GET only reads (the beat process reaps lost runs: ``labsite.beat``).

The page (``/lab/``, ``?run=<id>`` opens a run) is this app's because it shows runs; the
scenario tools it also calls (``/lab/api/explain/``, ``/lab/api/builder-yaml/``) are
``labsite.lab``'s. Every API refusal is ``{"errors": [{"field", "line", "message"}]}``
(``labsite.lab.api``): 400 for bad input, 403 when not logged in, 404 for a run that does
not exist or is not yours, 405 for a wrong method, 503 (field ``queue``, with the failed
run's ``run`` and ``status``) when the task queue cannot be reached, and the fair-use
refusals of a submit (``labsite.runs.quota``): 429 ``active_runs`` or ``rate`` with
``Retry-After``, 413 ``storage``.

Deleting a run (``DELETE /lab/api/runs/<id>/``, or ``POST …/delete/`` for clients without
DELETE; the runs list's button posts to ``/runs/<id>/delete/``) cancels it first if it is
queued or running; students may delete their own runs (another's is a 404, as for
reading it), instructors any.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labsite.lab import builder
from labsite.lab.api import api_view, submitted_data
from labsite.lab.errors import LabInputError, LabNotFound
from labsite.lab.selectors import example_forms, example_list, lab_limits, user_is_instructor
from labsite.runs.models import Run
from labsite.runs.quota import megabytes, user_usage
from labsite.runs.selectors import (
    RunFilters,
    run_deletable_by,
    run_events_page,
    run_get_for_user,
    run_list,
    run_payload,
    run_urls,
    run_ws_url,
)
from labsite.runs.services import lab_run_pcap, lab_run_report_html, run_delete
from labsite.runs.submit import lab_compare_submit, lab_run_submit

#: The id the page's URL templates carry in place of a run's (``lab-urls`` in the page;
#: ``static/lab/urls.js`` puts the real one in).
RUN_ID_PLACEHOLDER = 2147483647
#: Rows per page of the runs list.
RUNS_PER_PAGE = 25


def _visible_run(request, run_id: int):
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run is None:
        raise LabNotFound("run", f"no run {run_id}, or not yours")
    return run


@login_required
@require_GET
def workbench(request):
    """The lab page; ``?run=<id>`` opens a run (replayed, or watched if still running)."""
    run_data = None
    if request.GET.get("run"):
        try:
            run_id = int(request.GET["run"])
        except ValueError:
            raise Http404("no such run") from None
        run = _visible_run(request, run_id)
        run_data = run_payload(run)
        # The run's file in the form too (what the form can show of it): opening a run
        # puts its scenario on screen, so Run ▶ runs what is shown.
        run_data["form"] = builder.builder_fields_from_scenario(run.scenario_body)
    return render(request, "lab/workbench.html", {
        "presets_json": builder.PRESETS,
        "defaults_json": builder.DEFAULTS,
        "limits_json": lab_limits(),
        "examples": example_list(),
        "examples_json": example_forms(),
        "run_json": run_data,
        "run_id_placeholder": RUN_ID_PLACEHOLDER,
        "run_ws_template": run_ws_url(RUN_ID_PLACEHOLDER),
    })


def _created(submitted) -> JsonResponse:
    run = submitted.run
    return JsonResponse({"run": run.pk, **run_urls(run.pk), "mode": run.mode,
                         "scenario_yaml": submitted.scenario_yaml, "flows": submitted.flows},
                        status=201)


@api_view("POST")
def api_runs(request):
    data, upload = submitted_data(request)
    return _created(lab_run_submit(user=request.user, data=data, upload=upload))


@api_view("POST")
def api_compare(request):
    data, upload = submitted_data(request)
    return _created(lab_compare_submit(user=request.user, data=data, upload=upload))


def _deletable_run(request, run_id: int):
    run = _visible_run(request, run_id)
    if not run_deletable_by(user=request.user, run=run):
        raise LabNotFound("run", f"no run {run_id}, or not yours")
    return run


def _deleted(request, run_id: int) -> JsonResponse:
    done = run_delete(_deletable_run(request, run_id), by=request.user)
    return JsonResponse({"run": done.run, "deleted": True, "cancelled": done.cancelled,
                         "freed_bytes": done.freed_bytes})


@api_view("GET", "DELETE")
def api_run(request, run_id: int):
    if request.method == "DELETE":
        return _deleted(request, run_id)
    return JsonResponse(run_payload(_visible_run(request, run_id)))


@api_view("POST")
def api_run_delete(request, run_id: int):
    """The same as ``DELETE /lab/api/runs/<id>/``, for clients that only POST."""
    return _deleted(request, run_id)


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


@api_view("GET")
def api_run_pcap(request, run_id: int):
    """The run's packets as a pcap download (client and server sides, raw IP)."""
    data, filename = lab_run_pcap(_visible_run(request, run_id))
    response = HttpResponse(data, content_type="application/vnd.tcpdump.pcap")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Length"] = str(len(data))
    return response


@api_view("GET")
def api_run_report(request, run_id: int):
    """The run's report as the CLI's self-contained HTML page (``verify --html``, or
    ``compare --html`` for a comparison), a download rebuilt from the stored report: a
    GET that reads only. 400 (field ``run``) while the run has no report."""
    run = _visible_run(request, run_id)
    page, filename = lab_run_report_html(run)
    response = HttpResponse(page, content_type="text/html; charset=utf-8")
    # A download, never a page of the lab's origin: the report inlines its script and
    # style, which the lab's own policy (rightly) refuses; saved, it opens offline.
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Security-Policy"] = "sandbox"
    return response


@login_required
@require_GET
def run_index(request):
    """Your recent runs (everyone's for an instructor), as stored: a run whose worker was
    lost shows as retried or failed once the beat process has reaped it. Filters (GET):
    ``who`` (``mine``/``all``, instructors), ``mode``, ``verdict`` (``passed``,
    ``failed``, ``none``), ``date`` (YYYY-MM-DD, queued that day) and ``page``."""
    filters = RunFilters.from_query(request.GET, instructor=user_is_instructor(request.user))
    page = Paginator(run_list(user=request.user, filters=filters),
                     RUNS_PER_PAGE).get_page(request.GET.get("page"))
    query = filters.query()
    return render(request, "runs/list.html", {
        "runs": page.object_list,
        "page": page,
        "filters": filters,
        "query": query,
        "modes": Run.Mode.choices,
        "is_instructor": user_is_instructor(request.user),
        "usage": user_usage(request.user),
    })


@login_required
@require_POST
def run_delete_page(request, run_id):
    """The runs list's Delete button: delete (cancelling first), say so, back to the list."""
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run is None or not run_deletable_by(user=request.user, run=run):
        raise Http404("No such run, or not yours.")
    done = run_delete(run, by=request.user)
    messages.success(request, f"Run {done.run} deleted"
                              f"{' (cancelled first)' if done.cancelled else ''}; "
                              f"{megabytes(done.freed_bytes)} freed.")
    return redirect("runs:index")


@login_required
@require_GET
def detail(request, run_id):
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run is None:
        raise Http404("No such run, or not yours.")
    return redirect(run)

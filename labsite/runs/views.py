"""Run pages: start a run (POST), watch it (HTML + websocket), read it as JSON."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from labsite.lab.models import Scenario
from labsite.lab.selectors import scenario_list, user_is_instructor
from labsite.runs.broadcast import status_payload
from labsite.runs.forms import StartRunForm
from labsite.runs.selectors import run_get_for_user, run_list
from labsite.runs.services import run_start, runs_reap_stale


@login_required
@require_POST
def start(request, slug):
    scenario = get_object_or_404(Scenario, slug=slug)
    form = StartRunForm(request.POST)
    if not form.is_valid():
        return render(request, "lab/index.html", {
            "scenarios": scenario_list(user=request.user),
            "runs": run_list(user=request.user),
            "start_form": form, "form_scenario": scenario,
            "is_instructor": user_is_instructor(request.user),
        }, status=400)
    run = run_start(scenario=scenario, user=request.user, mode=form.cleaned_data["mode"],
                    seed=form.cleaned_data["seed"])
    return redirect(run)


def _visible_run(request, run_id):
    runs_reap_stale()
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run is None:
        raise Http404("No such run, or not yours.")
    return run


@login_required
@require_GET
def detail(request, run_id):
    return render(request, "runs/detail.html", {"run": _visible_run(request, run_id)})


@login_required
@require_GET
def data(request, run_id):
    """The stored state of a run: status plus, once finished, flows and the stored trace."""
    run = _visible_run(request, run_id)
    payload = status_payload(run)
    if run.is_finished:
        payload.update(flows=run.flows, trace=run.trace)
    return JsonResponse(payload)

"""Run pages: the list of your runs; a run's own address opens it in the lab page."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from labsite.lab.selectors import user_is_instructor
from labsite.runs.selectors import run_get_for_user, run_list
from labsite.runs.services import runs_reap_stale


@login_required
@require_GET
def run_index(request):
    runs_reap_stale()  # a run whose worker died shows as retried or failed, not "running"
    return render(request, "runs/list.html", {
        "runs": run_list(user=request.user),
        "is_instructor": user_is_instructor(request.user),
    })


@login_required
@require_GET
def detail(request, run_id):
    run = run_get_for_user(user=request.user, run_id=run_id)
    if run is None:
        raise Http404("No such run, or not yours.")
    return redirect(run)

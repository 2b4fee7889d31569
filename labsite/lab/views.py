"""Lab pages. Views stay thin: selectors read, services write."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from labsite.lab.selectors import scenario_list, user_is_instructor
from labsite.runs.forms import StartRunForm
from labsite.runs.selectors import run_list
from labsite.runs.services import runs_reap_stale


@login_required
def index(request):
    runs_reap_stale()  # a run whose worker died shows as failed, not "running" for ever
    return render(request, "lab/index.html", {
        "scenarios": scenario_list(user=request.user),
        "runs": run_list(user=request.user),
        "start_form": StartRunForm(),
        "is_instructor": user_is_instructor(request.user),
    })

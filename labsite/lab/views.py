"""The lab's scenario tools as JSON (the form's scenario file, the bit-by-bit hash) and
the site's log-in page.

Views stay thin: the JSON ones only read (they compute; nothing is stored), the log-in
leaves throttling to its form (``labsite.lab.forms``). The lab page itself and the run API
live in ``labsite.runs`` (runs depend on the lab, never the other way); every JSON
endpoint answers errors as ``labsite.lab.api`` describes.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labsite.lab.api import api_view, submitted_data
from labsite.lab.errors import LabInputError
from labsite.lab.forms import LoginForm
from labsite.lab.services import lab_builder_yaml, lab_explain


def refused_login_status(response):
    """A log-in page whose form the throttle refused, as HTTP 429 with ``Retry-After``
    (scripts and proxies then know it is a rate limit, not a wrong password)."""
    form = (getattr(response, "context_data", None) or {}).get("form")
    refusal = getattr(form, "refusal", None)
    if refusal is not None:
        response.status_code = 429
        response["Retry-After"] = str(refusal.retry_after)
    return response


class LoginView(auth_views.LoginView):
    """Django's log-in with the throttled form (``labsite.lab.forms.LoginForm``)."""

    form_class = LoginForm

    def form_invalid(self, form):
        return refused_login_status(super().form_invalid(form))


@api_view("POST")
def api_builder_yaml(request):
    data, _ = submitted_data(request)
    return JsonResponse({"yaml": lab_builder_yaml(data)})


@api_view("GET")
def api_explain(request):
    return JsonResponse(lab_explain(request.GET))


@require_GET
@login_required
def explain_page(request):
    """The bit-by-bit hash as a page of its own (the same parameters as ``api_explain``),
    so feedback elsewhere — an exercise's packets — can link to it."""
    try:
        return render(request, "lab/explain.html", {"explained": lab_explain(request.GET)})
    except LabInputError as error:
        return render(request, "lab/explain.html", {"errors": error.errors}, status=400)

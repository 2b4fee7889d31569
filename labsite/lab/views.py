"""The lab's scenario tools as JSON: the form's scenario file and the bit-by-bit hash.

Views stay thin and only read (they compute; nothing is stored). The lab page itself and
the run API live in ``labsite.runs`` (runs depend on the lab, never the other way); every
endpoint answers errors as ``labsite.lab.api`` describes.
"""

from __future__ import annotations

from django.http import JsonResponse

from labsite.lab.api import api_view, submitted_data
from labsite.lab.services import lab_builder_yaml, lab_explain


@api_view("POST")
def api_builder_yaml(request):
    data, _ = submitted_data(request)
    return JsonResponse({"yaml": lab_builder_yaml(data)})


@api_view("GET")
def api_explain(request):
    return JsonResponse(lab_explain(request.GET))

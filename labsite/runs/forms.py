"""The "start run" form: bad input becomes a form error, never a server error."""

from django import forms

from labsite.runs.models import Run
from labsite.runs.services import SEED_MAX


class StartRunForm(forms.Form):
    mode = forms.ChoiceField(choices=Run.Mode.choices, initial=Run.Mode.TRACE)
    seed = forms.IntegerField(min_value=0, max_value=SEED_MAX, initial=1)

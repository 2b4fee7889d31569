"""schemathesis against the API's own OpenAPI schema, on the live daphne: every operation
with generated requests (bounded: ``max_examples`` each, about a minute in all), as a
throwaway user whose runs are deleted afterwards. No 5xx, no response that breaks the
schema (status, content type, body)."""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import User
from hypothesis import HealthCheck, settings

from labsite.api.services import token_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]
MAX_EXAMPLES = 12


@pytest.fixture
def throwaway_token():
    from labsite.runs.models import Run
    from labsite.runs.services import run_delete

    user = User.objects.create_user("schemathesis-throwaway")
    _, secret = token_create(user=user, name="schemathesis")
    yield secret
    for run in Run.objects.filter(ran_by=user):
        run_delete(run, by=user)
    user.delete()


def test_the_api_keeps_its_schema(throwaway_token, daphne_url):
    """Every operation of the schema, each with its own bounded hypothesis run (the
    schemathesis pytest plugin's fixture loader does not work under pytest 9, so the
    operations are driven through its Python API)."""
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{daphne_url}/api/v1/schema/")
    headers = {"Authorization": f"Bearer {throwaway_token}"}
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance,
              status_code_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    for operation in operations:
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case):
            case.call_and_validate(base_url=daphne_url, headers=headers, checks=checks)

        exercise()

"""What drf-spectacular needs to describe the API's own pieces (loaded by ``apps``)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "labsite.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A personal API token (make one at /api/tokens/ or with "
                               "manage.py api_token create)."}

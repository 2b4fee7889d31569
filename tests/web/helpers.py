"""Small helpers the web tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import json


def post_json(client, url: str, data):
    """POST ``data`` (a JSON-ready value, or text sent as is) as an application/json body."""
    return client.post(url, data if isinstance(data, str) else json.dumps(data),
                       content_type="application/json")

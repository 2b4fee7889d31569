"""Every list the API returns is paged: ``?page=2&page_size=100`` (at most
``API_PAGE_MAX``), answered as ``{"count", "next", "previous", "results"}``."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"

    def __init__(self):
        self.page_size = settings.API_PAGE_SIZE
        self.max_page_size = settings.API_PAGE_MAX

"""``GET /v1/users/quotas``: the calling tenant's usage and limits, in the SDK's shape."""

from __future__ import annotations

import time

from volumed.api import views
from volumed.api.envelope import items_envelope
from volumed.api.http import Request
from volumed.api.routing import Response, Router
from volumed.domain.quotas import QuotaService

__all__ = ["QuotaHandlers"]


class QuotaHandlers:
    def __init__(self, service: QuotaService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/users/quotas", self.get)

    async def get(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user = request.tenant()
        request.query_values(frozenset())
        report = await self._service.report(user)
        return Response(items_envelope("quotas", [views.quotas_item(user.id, report)], started))

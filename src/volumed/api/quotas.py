"""``GET /v1/users/quotas``: the calling tenant's usage and limits, in the SDK's shape."""

from __future__ import annotations

from volumed.api import views
from volumed.api.envelope import AnyItem
from volumed.api.http import Request
from volumed.api.items import answers
from volumed.api.routing import Router
from volumed.domain.model import User
from volumed.domain.quotas import QuotaService

__all__ = ["QuotaHandlers"]


class QuotaHandlers:
    def __init__(self, service: QuotaService) -> None:
        self._service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/users/quotas", self.get)

    @answers("quotas")
    async def get(self, user: User, request: Request) -> list[AnyItem]:
        request.query_values(frozenset())
        return [views.quotas_item(user.id, await self._service.report(user))]

"""``GET /v1/images``: the images instances may name (busybox and imported ones), in
the shape the SDK's ``get_images`` reads. ``tag`` and ``digest`` (query or body items)
pick images; an unknown one is an error item (8)."""

from __future__ import annotations

from volumed.api import bodies, wire
from volumed.api.envelope import AnyItem, failed_item
from volumed.api.http import Request
from volumed.api.items import answers
from volumed.api.routing import Router
from volumed.api.views import rfc3339
from volumed.domain.model import User
from volumed.runtime.images import GuestImage, ImageCatalog

__all__ = ["ImageHandlers"]

KEY = "images"
_PARAMS = frozenset({"tag", "digest"})
_NOT_FOUND = 8


class ImageHandlers:
    def __init__(self, catalog: ImageCatalog) -> None:
        self._catalog = catalog

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/images", self.get_many)

    @answers(KEY)
    async def get_many(self, user: User, request: Request) -> list[AnyItem]:
        values = request.query_values(_PARAMS)
        wanted = [("tag", t) for t in values.get("tag", [])]
        wanted += [("digest", d) for d in values.get("digest", [])]
        for body in bodies.parse_items(request.body, bodies.ImageRefBody, required=False):
            wanted.append(("digest", body.digest) if body.digest else ("tag", body.tag or ""))
        images = self._catalog.all()
        if not wanted:
            return [_item(i) for i in images]
        results: list[AnyItem] = []
        for key, value in wanted:
            found = (
                self._catalog.find(value)
                if key == "tag"
                else next((i for i in images if i.digest and i.digest == value), None)
            )
            if found is None:
                results.append(failed_item(_NOT_FOUND, f"No image with {key} '{value[:80]}'"))
            else:
                results.append(_item(found))
        return results


def _item(image: GuestImage) -> wire.Image:
    return wire.Image(
        status="success",
        url=image.name,
        tags=[image.name],
        initrd_or_rom=image.rootfs is None,
        size_in_bytes=image.size_bytes,
        args=[*image.entrypoint, *image.cmd],
        env=image.env,
        digest=image.digest or None,
        created_at=rfc3339(image.created_at_us) if image.created_at_us else None,
    )

"""Sending orders to hosts: the one place that builds an order and puts it on the broker.

Orders go by task name to the host's own queue, with a broker expiry and the same deadline
inside the order, so a host that was away does not act on stale orders whatever the
transport did. Every order is signed by the dashboard's key (trust.sign_order) at each send,
so a re-send carries a fresh nonce. Callers decide *when* to send (after commit); this
module only sends.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ocrdash.celery import app
from workers.schema import (
    ORDER_TASKS,
    FileIdentity,
    FreeOrder,
    InventoryOrder,
    PruneMode,
    PruneOrder,
    PurgeOrder,
    RestoreOrder,
    Store,
    host_queue,
    new_id,
)
from workers.signing.errors import SignatureError

from ..models import PruneRequest
from . import trust

log = logging.getLogger(__name__)


class DispatchError(Exception):
    """The broker did not take the order (it went away, or refused the connection)."""


def order_deadline():
    return timezone.now() + timedelta(minutes=settings.OCRDASH["ORDER_TTL_MINUTES"])


def send_order(order: InventoryOrder | FreeOrder | PruneOrder | RestoreOrder | PurgeOrder) -> None:
    """Publish one order; raises DispatchError with a readable reason if the broker fails."""
    try:
        signed = trust.sign_order(order)
    except SignatureError as exc:  # the key file is missing its folder, or has loose permissions
        log.error("could not sign %s order to %s: %s", order.kind, order.host, exc)
        raise DispatchError(f"the order could not be signed: {exc}") from exc
    try:
        # Fail fast in a web request instead of retrying: kombu's default connect retries
        # keep an approver waiting for seconds when the broker is gone, and the sweeper
        # (workflow.resend_unanswered) sends again later anyway.
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
            app.send_task(
                ORDER_TASKS[order.kind],
                args=[signed],
                queue=host_queue(order.host),
                expires=order.expires_at,
                connection=connection,
                retry=False,
            )
    except Exception as exc:  # kombu raises many types (OperationalError, OSError, ...)
        log.warning("could not send %s order to %s: %s", order.kind, order.host, exc)
        raise DispatchError(f"the broker did not take the order: {exc}") from exc


def build_request_order(request: PruneRequest) -> PruneOrder | RestoreOrder:
    """The order for a prune or restore request, naming each file by its approved identity."""
    host = request.host.name
    if request.kind == PruneRequest.Kind.RESTORE:
        if request.restore_of_id is None:
            raise ValueError(f"restore request {request.id} names no prune request")  # a bug, not input
        items = list(request.items.all())
        return RestoreOrder(
            host=host,
            request_id=request.id.hex,
            expires_at=order_deadline(),
            prune_request_id=request.restore_of_id.hex,
            paths=[i.path for i in items if i.store == Store.LLM],
            ocr_paths=[i.path for i in items if i.store == Store.OCR],
        )
    return PruneOrder(
        host=host,
        request_id=request.id.hex,
        expires_at=order_deadline(),
        mode=PruneMode(request.mode),
        items=[
            FileIdentity(path=i.path, size=i.size, mtime_ns=i.mtime_ns, sha256=i.sha256, store=Store(i.store))
            for i in request.items.all()
        ],
    )


def inventory_order(host: str) -> InventoryOrder:
    return InventoryOrder(host=host, request_id=new_id(), expires_at=order_deadline())


def free_order(host: str) -> FreeOrder:
    return FreeOrder(host=host, request_id=new_id(), expires_at=order_deadline())

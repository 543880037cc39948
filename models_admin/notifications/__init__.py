"""Telling people what happened: events, channels (email, webhooks), preferences and digests.

- ``events.Event``: what can be told; adding one is one line there and one ``notify`` call.
- ``send.notify``: called inside a transition, sends after commit, enqueues only.
- ``delivery``: the Celery side: deliver one row with retries, digests, and the sweep.
- ``channels``: email through Django's backend, webhooks through apprise.
"""

from .events import Event
from .send import notify

__all__ = ["Event", "notify"]

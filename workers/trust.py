"""The agent's side of trust: which orders it obeys, and how its reports are signed.

The agent obeys an order only if the dashboard's key (pinned at install) signed it, for this
host, for the task that received it, before its expiry, and the signed message was never seen
before (save the broker's redelivery of an order whose run never finished: Agent.handle).
The single exception is the agent's own startup inventory, which it signs with its own key:
the inventory task accepts that signer, no other task does, so the agent's key (which the
dashboard also uses to check its reports) can never order a deletion.

Every report leaves signed by the agent's key. While an enrollment token is configured, each
inventory also carries the public key and a proof of the token, which is how the dashboard
learns the key in the first place; the token itself never leaves the host.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workers.config import AgentConfig, ConfigError
from workers.schema import (
    INGEST_TASK,
    AgentTask,
    Enrollment,
    ErrorReport,
    FreeReport,
    HeartbeatReport,
    InventoryOrder,
    InventoryReport,
    ProgressReport,
    PruneReport,
    PurgeReport,
    RestoreReport,
    utcnow,
)
from workers.signing.enrollment import enrollment_proof, enrollment_verifier
from workers.signing.envelope import DASHBOARD_SIGNER, SIGNATURE_FIELD, sign
from workers.signing.errors import FreshnessError, KeyFileError, ReplayError, SignatureError
from workers.signing.keys import (
    key_fingerprint,
    load_or_create_private_key,
    pinned_public_key,
    public_key_text,
)
from workers.signing.orders import verify_order
from workers.signing.replay import ReplayGuard

if TYPE_CHECKING:
    from workers.inventory import ScannedInventory

log = logging.getLogger(__name__)

AGENT_KEY_FILE = "agent.key"
# The startup inventory is answered at once; an hour covers a worker that is slow to start.
STARTUP_ORDER_TTL = timedelta(hours=1)

AnyReport = (
    InventoryReport
    | PruneReport
    | RestoreReport
    | PurgeReport
    | FreeReport
    | HeartbeatReport
    | ProgressReport
    | ErrorReport
)


def self_signer(host: str) -> str:
    """The signer name of the orders an agent gives itself.

    Not the bare host name: a host may be called "dashboard", and ``:`` cannot occur in a
    host name, so this can never be mistaken for the dashboard's signer.
    """
    return f"self:{host}"


class OrderRefused(Exception):
    """An order that must not be acted on.

    ``request_id`` is set only when the order is authentic (signed by the dashboard for this
    host) and merely too late: then the dashboard may fail that request. A forged, misrouted
    or replayed message names no request, so it cannot fail someone else's request either.
    """

    def __init__(
        self, reason: str, request_id: str | None = None, replayed: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id
        # For an authentic message seen before: its verified body (see Agent.handle).
        self.replayed = replayed


@dataclass
class AgentTrust:
    host: str
    dashboard_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey
    guard: ReplayGuard
    enrollment_token: str = field(default="", repr=False)

    @classmethod
    def load(cls, config: AgentConfig) -> AgentTrust:
        """Read the pinned dashboard key and this host's key (made on first start).

        Raises ConfigError naming the setting, so the worker stops at start instead of
        refusing every order later.
        """
        if not config.dashboard_public_key:
            raise ConfigError(
                "OCRDASH_DASHBOARD_PUBLIC_KEY is required: the dashboard's public key "
                "(ed25519:..., printed by `manage.py signing_key`) or the path of a file holding it"
            )
        try:
            dashboard_key = pinned_public_key(config.dashboard_public_key)
        except KeyFileError as exc:
            raise ConfigError(f"OCRDASH_DASHBOARD_PUBLIC_KEY: {exc}") from None
        try:
            private_key = load_or_create_private_key(config.state_dir / AGENT_KEY_FILE)
        except KeyFileError as exc:
            raise ConfigError(f"OCRDASH_STATE_DIR: {exc}") from None
        if config.enrollment_token:
            try:
                enrollment_verifier(config.enrollment_token)  # checks the shape only
            except KeyFileError as exc:
                raise ConfigError(f"OCRDASH_ENROLLMENT_TOKEN: {exc}") from None
        return cls(
            host=config.host_name,
            dashboard_key=dashboard_key,
            private_key=private_key,
            guard=ReplayGuard(config.state_dir),
            enrollment_token=config.enrollment_token,
        )

    @property
    def public_key(self) -> str:
        return public_key_text(self.private_key)

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.private_key)

    # ------------------------------------------------------------ orders

    def check_order(self, task: str, message: Any) -> dict[str, Any]:
        """The verified body of ``message`` received by ``task``; raises OrderRefused."""
        task = str(task)
        sig = message.get(SIGNATURE_FIELD) if isinstance(message, Mapping) else None
        claimed = sig.get("signer") if isinstance(sig, Mapping) else None
        if task == AgentTask.INVENTORY and claimed == self_signer(self.host):
            key, signer = self.private_key.public_key(), self_signer(self.host)
        else:
            key, signer = self.dashboard_key, DASHBOARD_SIGNER
        try:
            return verify_order(message, key, host=self.host, task=task, guard=self.guard, signer=signer)
        except ReplayError as exc:
            raise OrderRefused(str(exc), replayed=exc.body) from None
        except FreshnessError as exc:
            # Signature, signer and host checked out before the time check: the request id
            # is the dashboard's own, and its request may be failed for being too late.
            rid = message.get("request_id")
            authentic = rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
            raise OrderRefused(str(exc), authentic) from None
        except SignatureError as exc:
            raise OrderRefused(str(exc)) from None

    def startup_order(self, order: InventoryOrder) -> dict[str, Any]:
        """The agent's own startup inventory order, signed with its own key."""
        order = order.model_copy(update={"expires_at": utcnow() + STARTUP_ORDER_TTL})
        signer = self_signer(self.host)
        return sign(order.to_json(), self.private_key, signer=signer, purpose=AgentTask.INVENTORY)

    # ------------------------------------------------------------ reports

    def sign_report(self, report: AnyReport | ScannedInventory) -> dict[str, Any]:
        """The signed dict that crosses the broker for ``report``.

        Re-signed at every send with ``sent_at`` set to now: a report re-sent for a
        redelivered order keeps its report id (so the dashboard drops it if the first copy
        arrived) but must still pass the dashboard's freshness check if the first copy was lost.
        """
        update: dict[str, Any] = {"sent_at": utcnow()}
        if report.kind == "inventory" and self.enrollment_token:
            public = self.public_key
            update["enrollment"] = Enrollment(
                public_key=public,
                proof=enrollment_proof(
                    self.enrollment_token, host=self.host, public_key_text=public, report_id=report.report_id
                ),
            )
        signed = report.model_copy(update=update)
        return sign(signed.to_json(), self.private_key, signer=self.host, purpose=INGEST_TASK)

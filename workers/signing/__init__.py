"""Signatures between the dashboard and the agents: who may send what to whom.

Anyone who can write to the broker can put a message on a host's queue or on the ingest
queue. Celery's own message signing covers only the body (the task name and the headers go
unsigned), does not stop replays and lets any certificate send any task, so this package
signs our messages themselves, end to end, and the receiver decides from the message alone.

The rules, in one place:

* Every order is signed by the dashboard's Ed25519 key; every report by the sending agent's
  own key. The signature covers the whole message (every field but ``signature`` itself)
  plus a small header: algorithm, signer, purpose and nonce. The *purpose* is the Celery task
  name the message is meant for, so an order signed for ``ocrdash.agent.restore`` cannot be
  delivered to ``ocrdash.agent.prune``, and an agent's report can never pass as an order.
* The *nonce* is fresh for every signature, not the request id: the dashboard re-sends an
  unanswered request under the same request id (the agent is idempotent by request id), and
  that re-send must not look like a replay. A replay is the same signed bytes arriving again.
* An agent checks an order in this order: signature, signer, purpose, host, time, then
  replay. Replay comes last so that a forged or stale order never takes a row in the agent's
  nonce table. The dashboard keeps no nonces: a report's id is inside what its signature
  covers, ids are unique in its database, and a report outside the clock-skew window is stale.
* Keys and tokens never appear in a message, an exception text or a log line. A public key
  is shown by its fingerprint.

One module per concern, each importing only those above it in this list:

``errors``      the exception types (one family, ``SignatureError``)
``canonical``   the exact JSON bytes a signature covers
``keys``        key files (0600), public key text, fingerprints, the pinned dashboard key
``envelope``    ``sign`` and ``verify``: the signature field and its header
``freshness``   the time checks (``sent_at`` within the skew, ``expires_at`` not passed)
``replay``      the agent's table of nonces it has accepted
``orders``      ``verify_order``: everything an agent checks before acting
``reports``     ``verify_report``: the dashboard's check of a report
``enrollment``  one-time tokens and the proofs an agent makes with them

The wire format is pinned by known-answer vectors in ``workers/tests/test_signing_vectors.py``.

This package imports no Django: the agent uses it on hosts that have only Python.
"""

"""Approvals: the request state machine and the two-person rule (``workflow.py``)."""

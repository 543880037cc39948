"""Quarantine: purge orders once the retention passed, and early purges by a second person (``purge.py``)."""

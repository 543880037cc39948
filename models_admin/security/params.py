"""Bounds for what a query string may ask: a readable 400, never an overflow deep inside.

A date like 0001-01-01 or 9999-12-31 is a valid ``date`` until the code steps a day past it
(OverflowError), and an integer beyond 2**63 is a valid Python int until PostgreSQL gets it
("bigint out of range"). Both surfaced as 500s; the forms and the API's pagination check
against these bounds first and answer 400 with the rule.
"""

from __future__ import annotations

from datetime import date

from django.core.exceptions import ValidationError

# Generous for any history, far enough from date.min/date.max that a range's arithmetic
# (a default length before the end, a week after it) cannot leave the calendar.
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(9000, 12, 31)
# Far below PostgreSQL's bigint, far above any real offset.
MAX_OFFSET = 10**12


def validate_report_date(value: date) -> None:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValidationError(f"choose a date between {EARLIEST_DATE} and {LATEST_DATE}", code="out_of_range")

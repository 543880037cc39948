"""The page benchmark's check for tables wider than the page, run on a page of its own.

--screenshots names every table wider than its box at 1280 px; a table the page does not show
(in a closed <details>, or under display: none) is not cut off, and naming it hid the real ones.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from .browser import chromium_page

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_pages.py"
WIDE_ROW = "<tr>" + "".join(f"<td>column-{i}-of-a-wide-table</td>" for i in range(60)) + "</tr>"
PAGE = f"""<!doctype html><html><body style="margin:0">
<details id="reclaimed"><summary>Reclaimed</summary>
  <div class="table-responsive"><table id="table-reclaimed">{WIDE_ROW}</table></div></details>
<div style="display:none"><div class="table-responsive"><table id="table-none">{WIDE_ROW}</table></div></div>
<div hidden><table id="table-hidden">{WIDE_ROW}</table></div>
<div style="overflow-x:auto"><table id="table-wide">{WIDE_ROW}</table></div>
<div class="table-responsive"><table id="table-narrow"><tr><td>a</td></tr></table></div>
</body></html>"""


def _check() -> str:
    spec = importlib.util.spec_from_file_location("bench_pages", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CLIPPED_TABLES_JS


def test_only_shown_tables_wider_than_the_page_are_named(monkeypatch) -> None:
    check = _check()
    with chromium_page(monkeypatch, width=1280, height=900) as page:
        page.set_content(PAGE)
        assert page.evaluate(check) == ["table-wide"]
        # Opened, the reclaimed table is shown and is as wide as the other one.
        page.evaluate("document.getElementById('reclaimed').open = true")
        assert page.evaluate(check) == ["table-reclaimed", "table-wide"]

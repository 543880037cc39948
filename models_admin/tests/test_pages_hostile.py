"""Every page survives any string a host can send (issue case 11).

Once, one unsigned report naming the host ``evil/host`` made /audit/ answer 500 from then
on (the host name could not be reversed into a URL), and a reported path ending in "/"
did the same to /models/.
"""

from __future__ import annotations

import pytest

from models_admin.ingest import ingest_report
from models_admin.models import AuditEvent, ModelFile

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["evil/host", "a b", "x" * 300, "nul\x00", "caf\udce9", ""])
def test_audit_survives_a_forged_host_name(name, client_for, viewer):
    ingest_report({"schema_version": 2, "host": name, "kind": "free", "report_id": "r-1"})
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SECURITY_REJECTED).exists()
    for url in ("/audit/", "/audit/rejected-reports/", "/audit/export.csv"):
        response = client_for(viewer).get(url)
        assert response.status_code == 200, url
    if name == "evil/host":
        assert "evil/host" in client_for(viewer).get("/audit/").content.decode()


def test_a_stored_path_ending_in_slash_does_not_break_the_models_page(make_host, client_for, viewer):
    """The schema refuses such a path now; a row stored before must still not break a page."""
    host = make_host("ocr-1", {"en.gguf": 10})
    ModelFile.objects.create(
        snapshot=host.current_snapshot, path="models/", name="", size=1, mtime_ns=1, sha256="0" * 64
    )
    for url in ("/models/", "/hosts/ocr-1/", "/"):
        assert client_for(viewer).get(url).status_code == 200, url


def test_a_non_utf8_file_name_is_shown_readably(make_host, client_for, viewer):
    host = make_host("ocr-1", {"caf\\xe9_model.bin": 10})
    assert host.current_snapshot.files.get().name == "caf\\xe9_model.bin"
    for url in ("/models/", "/hosts/ocr-1/", "/models/caf%5Cxe9_model.bin/"):
        response = client_for(viewer).get(url)
        assert response.status_code == 200, url
        assert "caf\\xe9_model.bin" in response.content.decode(), url

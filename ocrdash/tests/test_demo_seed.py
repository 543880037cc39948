"""The demo's fake OCR hosts: real files, seeded once, reused by the next run."""

from __future__ import annotations

import hashlib

from .demo_runner import load

demo = load()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_it_seeds_the_six_hosts_with_what_the_demo_needs(tmp_path):
    folders = {h.name: demo.seed_host(tmp_path, h) for h in demo.HOSTS}
    assert set(folders) == {"ocr-east-1", "ocr-east-2", "ocr-west-1", "ocr-west-2", "ocr-west-3", "ocr-lab"}
    # Two regions, and one old model on several hosts for the demo's campaign.
    assert {h.labels.get("region") for h in demo.HOSTS} == {"east", "west", None}
    assert sum(1 for f in folders.values() if (f / "old_fr_ocr_v1.bin").exists()) == 5
    assert not folders["ocr-lab"].exists(), "one host shows a missing model folder"
    names = {p.name for f in folders.values() if f.exists() for p in f.rglob("*") if p.is_file()}
    assert demo.ASPOSE_DEFAULT_MODEL in names
    assert any(n.startswith("old_") for n in names)
    assert any(not n.startswith("old_") and n != demo.ASPOSE_DEFAULT_MODEL for n in names)
    for host in demo.HOSTS:
        assert (tmp_path / "hosts" / host.name / "state").is_dir()
        for rel, (size, _) in host.files.items():
            assert (folders[host.name] / rel).stat().st_size == size


def test_the_same_model_has_the_same_bytes_on_two_hosts(tmp_path):
    east = demo.seed_host(tmp_path, demo.HOSTS[0])
    west = demo.seed_host(tmp_path, demo.HOSTS[1])
    assert _digest(east / "en_ocr_v2.gguf") == _digest(west / "en_ocr_v2.gguf")
    assert _digest(east / "old_fr_ocr_v1.bin") != _digest(east / "old_en_ocr_v1.gguf")


def test_old_models_look_old(tmp_path):
    east = demo.seed_host(tmp_path, demo.HOSTS[0])
    assert (east / "old_fr_ocr_v1.bin").stat().st_mtime < (
        east / "en_ocr_v2.gguf"
    ).stat().st_mtime - 90 * 86400


def test_a_second_run_keeps_what_happened_to_the_files(tmp_path):
    east = demo.seed_host(tmp_path, demo.HOSTS[0])
    (east / "old_fr_ocr_v1.bin").unlink()  # as if it had been pruned
    demo.seed_host(tmp_path, demo.HOSTS[0])
    assert not (east / "old_fr_ocr_v1.bin").exists()


def test_it_changes_one_file_once_after_the_first_scan(tmp_path):
    host = demo.HOSTS[0]
    models = demo.seed_host(tmp_path, host)
    changed = models / host.changes_after_first_scan
    before = _digest(changed)
    assert demo.change_after_first_scan(tmp_path, host) is True
    after = _digest(changed)
    assert after != before
    assert demo.change_after_first_scan(tmp_path, host) is False
    assert _digest(changed) == after
    assert demo.change_after_first_scan(tmp_path, demo.HOSTS[1]) is False


def test_the_demo_database_and_its_secret_key_are_0600(tmp_path):
    key = demo.demo_secret_key(tmp_path)
    assert len(key) >= 50 and demo.demo_secret_key(tmp_path) == key, "made once, then reused"
    database = tmp_path / "ocrdash.sqlite3"
    database.write_bytes(b"")
    database.chmod(0o644)  # as an older demo left it
    demo.private_file(database)
    for path in (tmp_path / "keys" / "django-secret-key", database):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700

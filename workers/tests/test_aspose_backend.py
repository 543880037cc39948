"""Pin the measured behaviour of the real Aspose package that the agent relies on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workers.aspose_backend import AsposeAI, AsposeSession, ModelDirNotFound, SessionClosed, aspose_version
from workers.tests.conftest import ASPOSE_MODEL, write


def test_raw_list_local_raises_on_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ai = AsposeAI()
    try:
        assert ai.get_local_path() == "Aspose.AI.LLM/models"
        with pytest.raises(RuntimeError, match="DirectoryNotFound"):
            ai.list_local()
    finally:
        ai.free_resources()


def test_raw_free_resources_leaves_object_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "Aspose.AI.LLM" / "models" / ASPOSE_MODEL)
    ai = AsposeAI()
    ai.free_resources()
    ai.free_resources()
    # The library does not enforce "freed means done"; our session must.
    assert list(ai.list_local()) == [f"Aspose.AI.LLM/models/{ASPOSE_MODEL}"]


def test_session_refuses_use_after_close(models_dir: Path, state_dir: Path) -> None:
    with AsposeSession(models_dir, state_dir) as session:
        assert session.list_local() == []
    assert session.freed
    with pytest.raises(SessionClosed):
        session.list_local()
    with pytest.raises(SessionClosed):
        session.get_local_path()


def test_session_frees_on_error(models_dir: Path, state_dir: Path) -> None:
    with pytest.raises(ZeroDivisionError), AsposeSession(models_dir, state_dir) as session:
        1 / 0  # noqa: B018
    assert session.freed


def test_list_local_looks_in_the_configured_folder(models_dir: Path, state_dir: Path) -> None:
    write(models_dir / ASPOSE_MODEL)
    write(models_dir / "sub" / ASPOSE_MODEL.lower())
    write(models_dir / "a" / "b" / ASPOSE_MODEL)  # two folders down: invisible to Aspose
    write(models_dir / "en_ocr_v1.gguf")  # another name: invisible to Aspose
    cwd = os.getcwd()
    with AsposeSession(models_dir, state_dir) as session:
        assert session.get_local_path() == models_dir
        assert session.list_local() == [ASPOSE_MODEL, f"sub/{ASPOSE_MODEL.lower()}"]
    assert os.getcwd() == cwd


def test_missing_configured_folder_raises_our_error(tmp_path: Path, state_dir: Path) -> None:
    with AsposeSession(tmp_path / "nope", state_dir) as session, pytest.raises(ModelDirNotFound):
        session.list_local()


def test_default_folder_is_asposes_resolved_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "Aspose.AI.LLM" / "models" / "x" / ASPOSE_MODEL)
    with AsposeSession() as session:
        assert session.get_local_path() == tmp_path / "Aspose.AI.LLM" / "models"
        assert session.get_local_path().is_absolute()
        assert session.list_local() == [f"x/{ASPOSE_MODEL}"]


def test_version_is_known() -> None:
    assert aspose_version().startswith("26.")

"""The only module that imports Aspose.

Two quirks of ``aspose.ocr.ai.AsposeAI`` shape this module:

* Its bundled .NET runtime aborts the whole process on first use unless
  ``DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1`` is set before ``aspose.ocr`` is imported; an abort
  cannot be caught, so it is set here, first.
* ``get_local_path()`` is the relative ``Aspose.AI.LLM/models``, resolved by .NET against the
  process's working directory at call time, and ``list_local()`` only looks there. The agent is
  configured with its own model folder, so to learn which files Aspose would load *there*, we
  call ``list_local()`` from a working directory of our own (in the state folder) in which
  ``Aspose.AI.LLM/models`` is a symlink to the configured folder. The working directory is
  process-wide, so the switch happens under a lock and is always undone.

``free_resources()`` leaves the object usable; the project wants "freed means done", so the
session enforces it.

The second store, the OCR engine's recognition models, belongs to the static class
``aspose.ocr.Resources``: its folder is absolute (``<working directory at first use>/aspose_data``
by default), process-wide, and ``set_local_path`` refuses a folder that does not exist (a
``RuntimeError``, the previous folder stays). ``list_local()`` names the top-level ``.OCR``
files (case-insensitive) without their extension and returns ``[]`` for a folder that
vanished. ``remove_local`` deletes nothing (it only knows its remote catalogue), so removal
goes through the project's own quarantine like the LLM folder's. Automatic downloads are
switched off: a host must not fetch models behind the approvers' back.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import TracebackType

os.environ["DOTNET_SYSTEM_GLOBALIZATION_INVARIANT"] = "1"

from aspose.ocr import Resources
from aspose.ocr.ai import AsposeAI

ASPOSE_DISTRIBUTION = "aspose-ocr-python-net"
# Every chdir in this process goes through this lock (see the module docstring).
_CWD_LOCK = threading.RLock()


class SessionClosed(RuntimeError):
    """The session already freed Aspose's resources; open a new one."""


class ModelDirNotFound(FileNotFoundError):
    """Aspose's list_local() found no model folder (a DirectoryNotFoundException in .NET)."""


@functools.cache
def aspose_version() -> str:
    # Cached: importlib.metadata scans sys.path on every call, and every inventory asks.
    try:
        return metadata.version(ASPOSE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return ""


@contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    with _CWD_LOCK:
        try:
            previous: str | None = os.getcwd()
        except FileNotFoundError:  # our cwd was deleted; nothing sensible to return to
            previous = None
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(previous if previous is not None else "/")


# Resources fixes its default folder at first use, then only set_local_path moves it: taken
# here, at import, so a session that switched the folder cannot change what "default" means.
with _CWD_LOCK:
    _OCR_DEFAULT = Path(os.path.abspath(str(Resources.get_local_path())))


def default_ocr_resources_dir() -> Path:
    """The OCR engine's own resources folder (absolute): ``<working directory at import>/aspose_data``."""
    return _OCR_DEFAULT


class AsposeSession:
    """One ``AsposeAI`` instance whose resources are freed when the session ends, also on error.

    ``models_dir`` is the folder the agent manages; None means Aspose's own default, resolved
    against the working directory when the session starts. ``state_dir`` holds the working
    directory used to point Aspose at ``models_dir``. ``ocr_dir`` is the OCR resources store:
    a folder, True for ``Resources``' own default, or None when this session has no such store
    (the audit without ``--ocr-resources-dir``). Freeing frees both stores' engines.
    """

    def __init__(
        self,
        models_dir: Path | None = None,
        state_dir: Path | None = None,
        ocr_dir: Path | bool | None = None,
    ) -> None:
        self._ai: AsposeAI | None = AsposeAI()
        self.freed = False
        self._shim_cwd: Path | None = None
        self.ocr_dir: Path | None = None
        if ocr_dir is not None and ocr_dir is not False:
            Resources.allow_automatic_downloads(False)
            self.ocr_dir = default_ocr_resources_dir() if ocr_dir is True else Path(os.path.abspath(ocr_dir))
        if models_dir is None:
            with _CWD_LOCK:
                self.model_dir = Path(os.path.abspath(str(self._ai.get_local_path())))
        else:
            self.model_dir = Path(os.path.abspath(models_dir))
            if state_dir is None:
                raise ValueError("a configured models_dir needs a state_dir for Aspose's working directory")
            self._shim_cwd = self._make_shim(Path(state_dir))

    def _make_shim(self, state_dir: Path) -> Path:
        # One shim per model folder, so two agents sharing a state folder cannot repoint each other's.
        tag = hashlib.sha256(str(self.model_dir).encode()).hexdigest()[:16]
        cwd = state_dir / "aspose-cwd" / tag
        relative = Path(str(self._require().get_local_path()))
        if relative.is_absolute():
            # A future version with an absolute default would make the shim pointless and wrong.
            raise RuntimeError(f"Aspose's local path is absolute ({relative}); the shim cannot redirect it")
        link = cwd / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        if not (link.is_symlink() and os.readlink(link) == str(self.model_dir)):
            # Replace atomically: a concurrent session must see the old or the new link, never none.
            tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.unlink(missing_ok=True)
            os.symlink(self.model_dir, tmp)
            os.replace(tmp, link)
        return cwd

    def _require(self) -> AsposeAI:
        if self._ai is None:
            raise SessionClosed("the Aspose session is closed (its resources were freed); open a new one")
        return self._ai

    def get_local_path(self) -> Path:
        """The model folder, absolute."""
        self._require()
        return self.model_dir

    def list_local(self) -> list[str]:
        """Paths (relative POSIX, inside the model folder) of the files Aspose itself would load.

        Aspose only knows its built-in model file name and looks one folder deep at most; every
        other file is invisible to it. Raises ModelDirNotFound if the folder does not exist.
        """
        ai = self._require()
        cwd = self._shim_cwd
        with _CWD_LOCK:
            if cwd is None:
                prefix = Path(str(ai.get_local_path()))
                entries = self._call_list_local(ai)
            else:
                with _working_directory(cwd):
                    prefix = Path(str(ai.get_local_path()))
                    entries = self._call_list_local(ai)
        result = []
        for entry in entries:
            path = Path(entry)
            try:
                result.append(path.relative_to(prefix).as_posix())
            except ValueError:
                # Not under the folder we asked about: keep it visible rather than drop it.
                result.append(path.as_posix())
        return sorted(result)

    def _call_list_local(self, ai: AsposeAI) -> list[str]:
        try:
            return [str(item) for item in ai.list_local()]
        except RuntimeError as exc:
            if "DirectoryNotFound" in str(exc):
                raise ModelDirNotFound(f"model folder not found: {self.model_dir}") from exc
            raise

    def ocr_list_local(self) -> list[str]:
        """File names (top level of the OCR store) that ``Resources`` would load, sorted.

        ``Resources`` lists names without their extension; they are matched back to the files
        here, so the result names files as the walk does. Raises ModelDirNotFound if the folder
        does not exist (``set_local_path`` refuses it).
        """
        self._require()
        if self.ocr_dir is None:
            return []
        with _CWD_LOCK:
            try:
                if os.path.abspath(str(Resources.get_local_path())) != str(self.ocr_dir):
                    Resources.set_local_path(str(self.ocr_dir), False)
                names = {str(n) for n in Resources.list_local()}
            except RuntimeError as exc:
                if "does not exist" in str(exc):
                    raise ModelDirNotFound(f"OCR resources folder not found: {self.ocr_dir}") from exc
                raise
        try:
            entries = os.listdir(self.ocr_dir)
        except FileNotFoundError:
            raise ModelDirNotFound(f"OCR resources folder not found: {self.ocr_dir}") from None
        return sorted(e for e in entries if e.lower().endswith(".ocr") and e[:-4] in names)

    def free(self) -> bool:
        """Free both stores' resources; afterwards the session refuses further use. Idempotent.

        ``freed`` is true only when both engines were freed (``AsposeAI.free_resources`` and
        ``Resources.release_memory``); the second runs in a ``finally``, so a failing first one
        still releases the OCR engine's models.
        """
        ai, self._ai = self._ai, None
        if ai is not None:
            try:
                ai.free_resources()
            finally:
                # Always: the OCR engine of this process may hold models whatever store we walked.
                Resources.release_memory()
            self.freed = True
        return self.freed

    def close(self) -> None:
        self.free()

    def __enter__(self) -> AsposeSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.free()

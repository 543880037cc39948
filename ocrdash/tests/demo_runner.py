"""scripts/demo.py, imported for the tests (scripts/ is not a package on purpose)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = ROOT / "scripts" / "demo.py"


def load():
    if "ocrdash_demo" in sys.modules:
        return sys.modules["ocrdash_demo"]
    spec = importlib.util.spec_from_file_location("ocrdash_demo", DEMO_SCRIPT)
    assert spec is not None and spec.loader is not None, DEMO_SCRIPT
    module = importlib.util.module_from_spec(spec)
    sys.modules["ocrdash_demo"] = module
    spec.loader.exec_module(module)
    return module


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment or command names ``text``.

    Every process the demo starts, and every process those start, inherits the demo folder in
    its environment: this finds them all, whichever session or group they ended up in.
    """
    found = []
    needle = text.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes() or needle in (proc / "cmdline").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie is already dead; its parent just has not reaped it
                    found.append(
                        (int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
                    )
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found

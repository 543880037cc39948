"""The README tells the truth about the code: every setting it reads, every command it runs.

These fail when someone adds an environment variable, a benchmark or a make target without
telling the reader, which is how a README goes stale.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SOURCES = ("ocrdash", "models_admin", "workers")
# A name in quotes that the code looks up in the environment (settings, agent config).
ENV_NAME = re.compile(r"""["']((?:OCRDASH|DJANGO|CELERY)_[A-Z0-9_]+|DATABASE_URL|XDG_STATE_HOME)["']""")
# Django's own plumbing, not a setting of ocrdash.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def _documented() -> set[str]:
    """Variables in a row of one of the README's tables (first column)."""
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", README, re.M))


def _read_by_code() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            if "tests" in path.relative_to(ROOT).parts or "migrations" in path.parts:
                continue
            for name in ENV_NAME.findall(path.read_text()):
                if name not in NOT_SETTINGS:
                    found.setdefault(name, path.relative_to(ROOT))
    return found


def test_every_environment_variable_the_code_reads_is_in_the_configuration_tables():
    read = _read_by_code()
    assert {"DJANGO_SECRET_KEY", "OCRDASH_BROKER_URL", "OCRDASH_TEST_DATABASE_URL"} <= set(read)
    missing = {name: str(where) for name, where in read.items() if name not in _documented()}
    assert not missing, f"read by the code but not in the README's configuration tables: {missing}"


def test_the_tables_document_nothing_that_does_not_exist():
    read = set(_read_by_code()) | {"OCRDASH_TEST_REDIS_URL"}  # read by the agent's worker tests
    stale = _documented() - read
    assert not stale, f"in the README but read nowhere: {sorted(stale)}"


def test_ci_runs_exactly_the_readmes_test_command():
    assert "make test   #" in README
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "make test"
    assert commands[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']


def test_every_make_target_the_readme_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][a-z-]*)", README))
    assert {"demo", "test", "test-fast", "lint"} <= named
    assert named <= targets, f"the README names make targets that do not exist: {named - targets}"


def test_the_screenshot_is_a_png():
    assert "(docs/screenshot.png)" in README
    assert (ROOT / "docs" / "screenshot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_benchmark_script_is_explained():
    for script in sorted((ROOT / "scripts").glob("bench_*.py")):
        assert f"scripts/{script.name}" in README, f"{script.name} is not in the README's benchmarks"
    for named in re.findall(r"scripts/(bench_\w+\.py)", README):
        assert (ROOT / "scripts" / named).exists(), f"the README names a missing {named}"


def test_management_commands_the_readme_names_exist():
    commands = ROOT / "models_admin" / "management" / "commands"
    for name in ("create_user", "accept_host", "retire_host"):
        assert name in README
        assert (commands / f"{name}.py").exists(), name

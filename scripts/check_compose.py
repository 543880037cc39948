#!/usr/bin/env python3
"""Validate docker-compose.yml the way compose reads it, on a machine without a container engine.

    python3 scripts/check_compose.py [--file docker-compose.yml] [--env-file .env.example]

``docker-compose config -q`` (Debian's docker-compose package) parses the file against
compose's schema, resolves the ``x-`` anchors and every ``${VARIABLE}``, and needs no daemon.
It runs in a scratch folder holding the file and ``.env.example`` copied to ``.env`` (an
operator's first step), so the ``env_file: .env`` of the dashboard's services and the agents'
interpolated values resolve as they will on a real install. Any warning counts as a failure:
compose only warns about a variable it does not know, and then gives the service an empty
string. Exit status 0 when valid, 1 with compose's message when not, 2 without docker-compose.

Only the standard library: CI runs it with the system's python3, before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def docker_compose() -> str | None:
    """The docker-compose program on PATH, or None."""
    return shutil.which("docker-compose")


def check(compose_file: Path, env_file: Path) -> tuple[bool, str]:
    """(valid, what compose said) for ``compose_file`` with ``env_file`` as the project's .env."""
    program = docker_compose()
    if program is None:
        raise FileNotFoundError("docker-compose is not installed (Debian: apt-get install docker-compose)")
    with tempfile.TemporaryDirectory(prefix="ocrdash-compose-") as scratch:
        project = Path(scratch)
        shutil.copyfile(compose_file, project / "docker-compose.yml")
        shutil.copyfile(env_file, project / ".env")
        done = subprocess.run(
            [
                program,
                "--project-directory",
                str(project),
                "-f",
                str(project / "docker-compose.yml"),
                "config",
                "-q",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
    said = (done.stdout + done.stderr).strip()
    return done.returncode == 0 and not said, said


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / "docker-compose.yml")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env.example")
    args = parser.parse_args(argv)
    try:
        valid, said = check(args.file, args.env_file)
    except FileNotFoundError as exc:
        print(f"compose: {exc}", file=sys.stderr)
        return 2
    if not valid:
        print(
            f"compose: {args.file.name} is not valid with {args.env_file.name} as .env:\n{said}",
            file=sys.stderr,
        )
        return 1
    print(f"compose: {args.file.name} is valid (docker-compose config, {args.env_file.name} as .env)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

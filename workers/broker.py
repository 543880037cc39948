"""Broker options both sides share, so the dashboard and the agents meet on the same queues.

The demo runs without a broker server: kombu's filesystem transport keeps messages as files in
one folder that every process on the machine points at. Its exchange bindings live in
``control_folder``, so a message published by one process reaches a queue that another
process declared.
"""

from pathlib import Path
from typing import Any


def filesystem_transport_options(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    queue_dir = folder / "queue"
    control_dir = folder / "control"
    for d in (queue_dir, control_dir):
        d.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "control_folder": str(control_dir),
    }

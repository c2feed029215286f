"""The job's metrics file, sent to the server after the steps (docs/agent-protocol.md,
"Metrics"). The agent only reads the bytes (at most ``max_bytes``, never outside the
workspace); the server parses them and answers the lines for the log. Nothing here fails
the job: a file that cannot be sent is a line in the log."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from app.agent.transfer import JobTransfers
from app.protocol import MetricsPayload


def read_metrics(workspace: Path, metrics: MetricsPayload) -> dict[str, Any]:
    """The body of the metrics call: ``{file, data (base64) | problem, size}``."""
    body: dict[str, Any] = {"file": metrics.file, "data": None, "problem": None, "size": 0}
    root = workspace.resolve()
    path = workspace / metrics.file
    try:
        real = path.resolve()
        real.relative_to(root)
    except (ValueError, OSError, RuntimeError):
        body["problem"] = "outside"
        return body
    try:
        size = real.stat().st_size
        if not real.is_file():
            body["problem"] = "missing"
            return body
        body["size"] = size
        if size > metrics.max_bytes:
            body["problem"] = "too_big"
            return body
        with real.open("rb") as f:
            data = f.read(metrics.max_bytes + 1)
    except FileNotFoundError:
        body["problem"] = "missing"
        return body
    except OSError as e:
        body["problem"] = f"unreadable: {e.strerror or e}"
        return body
    if len(data) > metrics.max_bytes:  # it grew while read
        body["problem"] = "too_big"
        body["size"] = len(data)
        return body
    body["data"] = base64.b64encode(data).decode("ascii")
    body["size"] = len(data)
    return body


async def send_metrics(xfer: JobTransfers, metrics: MetricsPayload | None) -> None:
    if metrics is None:
        return
    try:
        body = await asyncio.to_thread(read_metrics, xfer.workspace, metrics)
        answer = await xfer._call("/metrics", body)
        lines = answer.get("lines")
        for line in lines if isinstance(lines, list) else []:
            await xfer.log(f"metrics: {line}\n")
    except asyncio.CancelledError:
        raise
    except Exception as e:
        await xfer.log(f"metrics: could not send {metrics.file} ({e})\n")

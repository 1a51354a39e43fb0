"""Run a short-lived command and fail with its output when it fails."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


class CommandFailed(AssertionError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        super().__init__(f"command failed (rc={returncode}): {' '.join(argv)}\n{output}")
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output


def run(
    argv: Sequence[str],
    timeout: float = 300,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """stdout and stderr captured as text; raise CommandFailed on a non-zero exit if `check`."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise CommandFailed(argv, result.returncode, result.stdout + result.stderr)
    return result

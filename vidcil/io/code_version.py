"""The code a model was trained with: the git commit of the checkout (``-dirty`` with local changes)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version(root: Path) -> str:
    """``<sha>`` or ``<sha>-dirty`` of the git checkout at ``root``; ``unknown`` outside one (an image)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=root).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=root).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

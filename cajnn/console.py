"""The one progress-bar style of the command-line stages: tqdm on stderr, redrawn twice a second
on a terminal and every 30 s into a log file (so CI logs stay short)."""

from __future__ import annotations

import shutil
import sys
from typing import Any


def progress(iterable: Any = None, **kwargs: Any):
    """`tqdm(iterable, **kwargs)` with the project's defaults (any of them can be overridden)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    # A pseudo-terminal without a size (`script`, some CI runners) reports 0 columns, and tqdm
    # then draws nothing; shutil falls back to 100 columns there.
    defaults = {
        "file": sys.stderr,
        "mininterval": 0.5 if tty else 30.0,
        "ncols": shutil.get_terminal_size((100, 24)).columns,
    }
    return tqdm(iterable, **{**defaults, **kwargs})

"""Headless Chromium for the tests that look at a page as a person would (Debian's `chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# No sandbox: Chromium refuses to start as root otherwise (containers, CI runners). No background
# networking: this machine's closed network refuses Chromium's own connections, many at a time.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


def _chromium(page: Path, *flags: str) -> str:
    done = subprocess.run(
        [CHROMIUM, *FLAGS, *flags, page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-500:]}"
    return done.stdout


def drawn(page: Path) -> tuple[int, int]:
    """(charts vega drew, <img> elements) in the page as Chromium leaves it after running its
    scripts: a chart counts once vega has drawn its marks canvas."""
    dom = _chromium(page, "--dump-dom")
    return len(re.findall(r'<canvas[^>]*class="marks"', dom)), len(re.findall(r'<img src="static/', dom))


def screenshot(page: Path, png: Path, width: int = 1300, height: int = 2700) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium(page, f"--window-size={width},{height}", f"--screenshot={png.resolve()}")
    assert png.is_file(), f"chromium wrote no screenshot at {png}"

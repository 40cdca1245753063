"""`dvc plots show` as a page that renders without the internet, and a screenshot of it.

    python -m mnistbench.plots_page                       # -> dvc_plots/index.html
    python -m mnistbench.plots_page --screenshot dvc_plots/page.png   # + headless Chromium

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so offline it shows no chart.
This writes an HTML template with the same three libraries inlined (the versions DVC 3.67's
renderer asks for), taken from the npm registry once, checked against their pinned SHA-512 and
kept in .cache/npm/, and hands it to `dvc plots show --html-template`. The PNG plots are copied
next to the page by DVC as usual. --screenshot then loads the page in headless Chromium (Debian's
`chromium` package) and saves what a person would see.
"""

from __future__ import annotations

import argparse
import base64
import re
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from mnistbench.cli import run_command
from mnistbench.files import write_bytes, write_text

# name, version, npm's `dist.integrity` (SHA-512 of the .tgz): what dvc_render's VegaRenderer loads
LIBRARIES = [
    ("vega", "5.20.2", "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="),
    ("vega-lite", "5.2.0", "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="),
    ("vega-embed", "6.18.2", "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=="),
]
REGISTRY = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
CACHE = Path(".cache/npm")

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>DVC plots</title>
    {inlined}
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        img { max-width: 900px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


class PageError(RuntimeError):
    """A library could not be obtained or verified, or a tool is missing; one line."""


def integrity(blob: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()


def library(name: str, version: str, pinned: str, cache: Path = CACHE, registry: str = REGISTRY) -> str:
    """The minified browser build of an npm package, from the cache or the registry, verified."""
    tgz = cache / f"{name}-{version}.tgz"
    if tgz.is_file() and integrity(tgz.read_bytes()) == pinned:
        blob = tgz.read_bytes()
    else:
        url = f"{registry}/{name}/-/{name}-{version}.tgz"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                blob = response.read()
        except OSError as e:
            raise PageError(f"cannot download {url} ({e}); set NPM_CONFIG_REGISTRY to a reachable npm registry") from None
        if integrity(blob) != pinned:
            raise PageError(f"{url}: integrity {integrity(blob)[:30]}..., expected {pinned[:30]}...; refusing it")
        write_bytes(tgz, blob)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return tar.extractfile(f"package/build/{name}.min.js").read().decode("utf-8")


def template(cache: Path = CACHE, registry: str = REGISTRY, libraries: list = LIBRARIES) -> str:
    scripts = "\n    ".join(f'<script type="text/javascript">\n{library(n, v, i, cache, registry)}\n</script>'
                           for n, v, i in libraries)
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):  # DVC fills these wherever they are
        if placeholder in scripts:
            raise PageError(f"an inlined library contains DVC's placeholder {placeholder}")
    return PAGE.replace("{inlined}", scripts)


def _chromium(page: Path, *flags: str) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise PageError("no chromium on PATH: `apt-get install chromium` (Debian) for --screenshot")
    # --no-sandbox: Chromium refuses to start as root otherwise (containers, CI runners)
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=15000", *flags, page.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PageError(f"chromium exited {done.returncode}: {' '.join(done.stderr.split())[-300:]}")
    return done.stdout


def drawn(page: Path) -> tuple[int, int]:
    """(charts vega drew, <img> elements) in the page as headless Chromium leaves it after running
    its scripts: a chart counts once vega has drawn its marks canvas."""
    dom = _chromium(page, "--dump-dom")
    charts = len(re.findall(r'<canvas[^>]*class="marks"', dom))
    images = len(re.findall(r'<img src="static/', dom))
    return charts, images


def screenshot(page: Path, png: Path, width: int = 1300, height: int = 2700) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium(page, f"--window-size={width},{height}", f"--screenshot={png.resolve()}")
    if not png.is_file():
        raise PageError(f"chromium wrote no screenshot at {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dvc_plots"), help="folder for index.html (default dvc_plots)")
    parser.add_argument("--screenshot", type=Path, help="also save a headless-Chromium screenshot of the page here")
    args = parser.parse_args()
    try:
        if not Path("dvc.yaml").is_file():  # before anything is fetched or written
            raise PageError("no dvc.yaml here: run this in the repository's root, after `dvc repro`")
        page_template = args.out / "offline_template.html"
        write_text(page_template, template())
        shown = subprocess.run(["dvc", "plots", "show", "--html-template", str(page_template), "-o", str(args.out)],
                               capture_output=True, text=True)
        if shown.returncode != 0:
            raise PageError(f"dvc plots show exited {shown.returncode}: {' '.join(shown.stderr.split())[:300]}")
        page = args.out / "index.html"
        if not page.is_file():  # outside a DVC repository dvc says so and still exits 0
            said = " ".join((shown.stderr + shown.stdout).split())[:300]
            raise PageError(f"dvc plots show wrote no {page}" + (f": {said}" if said else "") +
                            "; run this in the repository's root, after `dvc repro`")
        print(f"plots_page: {page} renders offline ({page.stat().st_size:,} bytes, libraries inlined)")
        if args.screenshot:
            charts, images = drawn(page)
            if charts == 0:
                raise PageError(f"{page}: headless Chromium drew no chart (vega did not run)")
            screenshot(page, args.screenshot)
            print(f"plots_page: Chromium drew {charts} charts and {images} images; screenshot {args.screenshot}")
    except PageError as e:
        raise SystemExit(f"plots_page: error: {e}") from None


if __name__ == "__main__":
    run_command("plots_page", main)

"""Rebuild the page template that makes `dvc plots show` and `dvc plots diff` work offline.

    mnistbench plots-template            # -> .dvc/plots/offline.html, the libraries inlined
    mnistbench plots-template --check    # exit 1 if the committed template is not what DVC needs

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so offline it shows no chart.
.dvc/config names this repository's template instead (`plots.html_template`), so every
`dvc plots show` / `dvc plots diff` writes a page with the three libraries inlined: the versions
dvc_render's VegaRenderer asks for, taken from the npm registry (or .cache/npm), checked against
their pinned SHA-512. The template is committed; rebuild it when DVC's renderer changes versions
(`--check` says so, and tests/test_plots.py runs it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import tarfile
import urllib.request
from pathlib import Path

from mnistbench.entry import run_command
from mnistbench.files import write_bytes, write_text

# name, version, npm's `dist.integrity` (SHA-512 of the .tgz): what dvc_render's VegaRenderer loads
LIBRARIES = [
    (
        "vega",
        "5.20.2",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
    ),
    (
        "vega-lite",
        "5.2.0",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
    ),
    (
        "vega-embed",
        "6.18.2",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
    ),
]
REGISTRY = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
CACHE = Path(".cache/npm")
TEMPLATE = Path(".dvc/plots/offline.html")  # .dvc/config: plots.html_template = plots/offline.html
MARK = "<!-- {name} {version}, inlined by commands/plots_template.py -->"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
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
    """A library could not be obtained or verified; one line."""


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
            raise PageError(
                f"cannot download {url} ({e}); set NPM_CONFIG_REGISTRY to a reachable npm registry"
            ) from None
        if integrity(blob) != pinned:
            raise PageError(f"{url}: integrity {integrity(blob)[:30]}..., expected {pinned[:30]}...; refusing it")
        write_bytes(tgz, blob)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return tar.extractfile(f"package/build/{name}.min.js").read().decode("utf-8")


def template(cache: Path = CACHE, registry: str = REGISTRY, libraries: list = LIBRARIES) -> str:
    """The page, each library inlined after a marker naming it. DVC fills {plot_divs} and
    {refresh_tag}; it would fill {scripts} with its CDN tags, so the page has none."""
    scripts = "\n    ".join(
        f'{MARK.format(name=n, version=v)}\n    <script type="text/javascript">\n'
        f"{library(n, v, i, cache, registry)}\n</script>"
        for n, v, i in libraries
    )
    for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):  # DVC fills these wherever they are
        if placeholder in scripts:
            raise PageError(f"an inlined library contains DVC's placeholder {placeholder}")
    return PAGE.replace("{inlined}", scripts)


def wanted() -> list[tuple[str, str]]:
    """(name, version) of each script dvc_render's VegaRenderer loads from its CDN."""
    from dvc_render.vega import VegaRenderer

    return re.findall(r"npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS)


def problems(page: str) -> list[str]:
    """What is wrong with a template for the installed DVC: a library it needs that the page does
    not inline at that version, or a CDN reference left."""
    found = re.findall(r"<!-- ([a-z-]+) ([\d.]+), inlined by", page)
    said = [
        f"{n} {v} is not inlined (the page has {', '.join(' '.join(f) for f in found) or 'none'})"
        for n, v in wanted()
        if (n, v) not in found
    ]
    if "{plot_divs}" not in page:
        said.append("no {plot_divs} placeholder")
    if "cdn.jsdelivr" in page or "{scripts}" in page:
        said.append("it loads scripts from a CDN")
    return said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the committed template; exit 1 if stale")
    args = parser.parse_args()
    if not Path("dvc.yaml").is_file():
        raise PageError("no dvc.yaml here: run this in the repository's root")
    if args.check:
        page = TEMPLATE.read_text() if TEMPLATE.is_file() else ""
        said = problems(page) if page else [f"{TEMPLATE} is missing"]
        if said:
            raise SystemExit(f"plots-template: {TEMPLATE}: {'; '.join(said)}; rebuild it: mnistbench plots-template")
        print(f"plots-template: {TEMPLATE} inlines what dvc_render {', '.join(' '.join(w) for w in wanted())} needs")
        return
    if wanted() != [(n, v) for n, v, _ in LIBRARIES]:
        raise PageError(f"DVC's renderer now loads {wanted()}: pin those versions' integrity in LIBRARIES first")
    write_text(TEMPLATE, template())
    print(f"plots-template: {TEMPLATE} written ({TEMPLATE.stat().st_size:,} bytes, libraries inlined)")


def run() -> None:
    try:
        main()
    except PageError as e:
        raise SystemExit(f"plots-template: error: {e}") from None


if __name__ == "__main__":
    run_command("plots-template", run)

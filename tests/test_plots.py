"""`dvc plots show` and `dvc plots diff` work offline: .dvc/config names a page template with the
chart libraries inlined (commands/plots_template.py), checked here against what DVC's renderer
needs, and, in the slow tier, drawn by a real browser from a real `dvc plots show`."""

import io
import shutil
import tarfile

import pytest
from ruamel.yaml import YAML

from commands import plots_template
from tests import browser
from tests.helpers import ROOT


def fake_package(name: str, script: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = script.encode()
        info = tarfile.TarInfo(f"package/build/{name}.min.js")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_the_committed_template_is_what_dvc_renders_with_and_dvc_config_names_it():
    page = plots_template.TEMPLATE
    assert plots_template.problems((ROOT / page).read_text()) == []
    assert plots_template.wanted() == [(n, v) for n, v, _ in plots_template.LIBRARIES]
    config = (ROOT / ".dvc/config").read_text()
    assert "[plots]\n    html_template = plots/offline.html" in config  # relative to .dvc/, as DVC reads it


def test_a_template_missing_a_library_or_loading_a_cdn_is_found_out():
    page = (ROOT / plots_template.TEMPLATE).read_text()
    assert plots_template.problems(page.replace("<!-- vega-lite 5.2.0,", "<!-- vega-lite 5.1.0,")) == [
        "vega-lite 5.2.0 is not inlined (the page has vega 5.20.2, vega-lite 5.1.0, vega-embed 6.18.2)"
    ]
    assert plots_template.problems("{plot_divs} {scripts}")[-1] == "it loads scripts from a CDN"


def test_a_cached_package_is_used_only_when_its_integrity_matches(tmp_path):
    blob = fake_package("vega", "window.vega = 1;")
    (tmp_path / "vega-5.20.2.tgz").write_bytes(blob)
    assert (
        plots_template.library(
            "vega", "5.20.2", plots_template.integrity(blob), tmp_path, registry="http://127.0.0.1:9"
        )
        == "window.vega = 1;"
    )
    # Another file under that name is not trusted: it is fetched again, and here the registry is unreachable.
    with pytest.raises(
        plots_template.PageError, match=r"cannot download http://127\.0\.0\.1:9/vega/-/vega-5\.20\.2\.tgz"
    ):
        plots_template.library("vega", "5.20.2", "sha512-other", tmp_path, registry="http://127.0.0.1:9")


def test_the_template_inlines_each_library_and_keeps_dvcs_placeholders(tmp_path):
    for name, version, _ in plots_template.LIBRARIES:
        (tmp_path / f"{name}-{version}.tgz").write_bytes(fake_package(name, f"/* {name} */"))
    pinned = [
        (n, v, plots_template.integrity((tmp_path / f"{n}-{v}.tgz").read_bytes()))
        for n, v, _ in plots_template.LIBRARIES
    ]
    page = plots_template.template(tmp_path, registry="http://127.0.0.1:9", libraries=pinned)
    assert "{plot_divs}" in page and "{refresh_tag}" in page and "cdn" not in page.lower()
    assert page.index("/* vega */") < page.index("/* vega-lite */") < page.index("/* vega-embed */")
    assert plots_template.problems(page) == []


@pytest.mark.slow
@pytest.mark.skipif(browser.CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_dvc_plots_show_and_diff_draw_every_chart_offline_in_a_real_browser(e2e, tmp_path):
    """As a DVC user runs them, in a repository of this project after `dvc repro`: every plot
    dvc.yaml declares is drawn, with no network (the page has no address to fetch from)."""
    from tests.helpers import sh

    path, env = e2e
    pipeline = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())
    stage_plots = [
        next(iter(p)) if isinstance(p, dict) else p for s in pipeline["stages"].values() for p in s.get("plots", [])
    ]
    images = sum(p.endswith(".png") for p in stage_plots)
    charts = len(pipeline["plots"]) + len(stage_plots) - images
    for command, revisions in (
        (["dvc", "plots", "show", "-o", str(tmp_path / "show")], 1),
        (["dvc", "plots", "diff", "HEAD", "-o", str(tmp_path / "diff")], 2),
    ):
        sh(path, env, *command)
        page = tmp_path / command[2] / "index.html"
        html = page.read_text()
        assert "cdn.jsdelivr" not in html and "<script src=" not in html
        # each chart draws every revision; each image shows once per revision
        assert browser.drawn(page) == (charts, images * revisions), command
    browser.screenshot(tmp_path / "show/index.html", tmp_path / "shot.png")
    shutil.copy(tmp_path / "shot.png", path / "plots-offline.png")  # for a person to look at, beside the repo

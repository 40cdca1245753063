"""The offline `dvc plots show` page: libraries verified before use; drawn in a real browser."""

import io
import shutil
import tarfile
from pathlib import Path

import pytest

from mnistbench import plots_page


def fake_package(name: str, script: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = script.encode()
        info = tarfile.TarInfo(f"package/build/{name}.min.js")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_cached_package_is_used_only_when_its_integrity_matches(tmp_path):
    blob = fake_package("vega", "window.vega = 1;")
    (tmp_path / "vega-5.20.2.tgz").write_bytes(blob)
    assert plots_page.library("vega", "5.20.2", plots_page.integrity(blob), tmp_path,
                              registry="http://127.0.0.1:9") == "window.vega = 1;"
    # Another file under that name is not trusted: it is fetched again, and here the registry is unreachable.
    with pytest.raises(plots_page.PageError, match=r"cannot download http://127\.0\.0\.1:9/vega/-/vega-5\.20\.2\.tgz"):
        plots_page.library("vega", "5.20.2", "sha512-other", tmp_path, registry="http://127.0.0.1:9")


def test_the_template_inlines_each_library_and_keeps_dvcs_placeholder(tmp_path):
    for name, version, _ in plots_page.LIBRARIES:
        (tmp_path / f"{name}-{version}.tgz").write_bytes(fake_package(name, f"/* {name} */"))
    pinned = [(n, v, plots_page.integrity((tmp_path / f"{n}-{v}.tgz").read_bytes())) for n, v, _ in plots_page.LIBRARIES]
    page = plots_page.template(tmp_path, registry="http://127.0.0.1:9", libraries=pinned)
    assert "{plot_divs}" in page and "cdn" not in page.lower()
    assert page.index("/* vega */") < page.index("/* vega-lite */") < page.index("/* vega-embed */")


ROOT = Path(__file__).resolve().parent.parent
HAVE_BROWSER = shutil.which("chromium") is not None and all(
    (ROOT / ".cache/npm" / f"{n}-{v}.tgz").is_file() for n, v, _ in plots_page.LIBRARIES)


@pytest.mark.skipif(not HAVE_BROWSER, reason="needs Debian's chromium and the npm libraries in .cache/npm "
                                             "(python -m mnistbench.plots_page fetches them)")
def test_headless_chromium_draws_a_vega_chart_and_shows_an_image(tmp_path):
    (tmp_path / "static").mkdir()
    shutil.copy(ROOT / "plots/confusion_matrix.png", tmp_path / "static/cm.png")
    spec = ('{"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "data": {"values": [{"x": 1, "y": 2}, '
            '{"x": 2, "y": 3}]}, "mark": "line", "encoding": {"x": {"field": "x", "type": "quantitative"}, '
            '"y": {"field": "y", "type": "quantitative"}}}')
    divs = (f'<div id="c"><script>vegaEmbed("#c", {spec});</script></div>'
            '<img src="static/cm.png">')
    page = tmp_path / "index.html"
    page.write_text(plots_page.template(ROOT / ".cache/npm").replace("{plot_divs}", divs))
    assert plots_page.drawn(page) == (1, 1)
    plots_page.screenshot(page, tmp_path / "shot.png", width=600, height=400)
    assert (tmp_path / "shot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

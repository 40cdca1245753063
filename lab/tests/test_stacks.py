"""lab.stacks' lock check, on a small lock and PyPI's files stood in by the test (no network): a pin
whose hash-listed wheels install on a platform passes there, one with none is named."""

from __future__ import annotations

from lab import stacks

LOCK = """\
numpy==2.4.6 ; python_full_version < '3.12' \\
    --hash=sha256:aaa \\
    --hash=sha256:bbb
    # via torch
numpy==2.5.5 ; python_full_version >= '3.12' \\
    --hash=sha256:ccc
nvidia-cublas==13.1.1.3 ; sys_platform == 'linux' \\
    --hash=sha256:ddd
tqdm==4.67.1 \\
    --hash=sha256:eee
"""
FILES = {
    "numpy": [
        {"filename": "numpy-2.4.6-cp311-cp311-macosx_14_0_arm64.whl", "hashes": {"sha256": "aaa"}},
        {
            "filename": "numpy-2.4.6-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
            "hashes": {"sha256": "bbb"},
        },
        {"filename": "numpy-2.5.5-cp312-cp312-macosx_14_0_arm64.whl", "hashes": {"sha256": "ccc"}},
        {"filename": "numpy-2.5.5-cp312-cp312-manylinux_2_28_aarch64.whl", "hashes": {"sha256": "unlisted"}},
    ],
    "nvidia-cublas": [
        {"filename": "nvidia_cublas-13.1.1.3-py3-none-manylinux_2_27_x86_64.whl", "hashes": {"sha256": "ddd"}}
    ],
    "tqdm": [{"filename": "tqdm-4.67.1-py3-none-any.whl", "hashes": {"sha256": "eee"}}],
}


def test_the_lock_check_names_a_pin_with_no_build_for_a_platform(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text(LOCK)
    monkeypatch.setattr(stacks, "ROOT", tmp_path)
    monkeypatch.setattr(stacks, "files", lambda name: FILES[name])
    platforms = stacks.lock_case()["platforms"]
    assert platforms["macOS arm64, Python 3.11"] == "every pinned requirement has a wheel there"  # cublas: linux only
    assert platforms["macOS arm64, Python 3.12"] == "every pinned requirement has a wheel there"
    assert platforms["Linux aarch64, Python 3.11"] == "no wheel: nvidia-cublas==13.1.1.3"  # an x86_64 wheel only
    assert platforms["Linux aarch64, Python 3.12"] == "no wheel: numpy==2.5.5, nvidia-cublas==13.1.1.3"  # hash unlisted

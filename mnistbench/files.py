"""Atomic, byte-reproducible file output and safe tensor loading.

Every output of the pipeline goes through `write_bytes` (temp file in the same folder, fsync,
rename), so a killed stage leaves the previous file or none, never half of one.
"""

from __future__ import annotations

import errno
import glob
import io
import json
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch


class FileFormatError(ValueError):
    """A file a user handed in (data, checkpoint) is not what it should be."""


class WriteError(OSError):
    """The OS refused to write an output (disk full, read-only, permissions); names the output."""


def write_bytes(path: str | Path, data: bytes) -> None:
    """`data` as the whole of `path`, or, should anything fail, `path` as it was and no temp file:
    a temp file beside it, fsync, then an atomic rename. A refusal by the OS is a WriteError
    naming `path` (not the temp file), with the OS's errno and reason."""
    path = Path(path)
    if path.is_dir():  # else os.replace fails naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file's path", str(path))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a SIGKILLed writer
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs should read like any other file
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def json_bytes(obj) -> bytes:
    """`obj` as every JSON file here is written: indented by 2, keys in their order, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def write_json(path: str | Path, obj) -> None:
    write_bytes(path, json_bytes(obj))


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def save_tensors(path: str | Path, obj) -> None:
    """torch.save to a buffer first: the zip's inner folder is then always "archive", so the
    bytes do not depend on the file's name (saving to `x.tmp` and renaming would change them)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def load_tensors(path: str | Path, what: str):
    """torch.load with weights_only=True: tensors and plain types only, never arbitrary pickles."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: {what} not found; run `dvc repro` (or `dvc pull`) to make it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message advises weights_only=False; we never do that, so we do not repeat it.
        wanted = re.search(r"unsupported GLOBAL (\S+)", str(e))
        if wanted:
            raise FileFormatError(
                f"{path}: refused to load {what}: it asks to import {wanted.group(1)}, "
                f"and only tensors and plain types may load; use files this pipeline wrote"
            ) from None
        raise FileFormatError(
            f"{path}: {what} is unreadable or truncated (not a torch file of tensors); delete it and rerun `dvc repro`"
        ) from None
    except Exception as e:  # noqa: BLE001 - arbitrary bytes make torch.load raise KeyError, EOFError, ...
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise FileFormatError(
            f"{path}: {what} is unreadable or truncated ({type(e).__name__}: {first}); delete it and rerun `dvc repro`"
        ) from None

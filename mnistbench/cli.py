"""Stage entry-point wrapper: a user's mistake becomes one line on stderr, not a traceback."""

from __future__ import annotations

import sys
from typing import Callable

from mnistbench.data import DataError
from mnistbench.files import FileFormatError
from mnistbench.params import ParamsError


def run_stage(name: str, main: Callable[[], None]) -> None:
    try:
        main()
    except (ParamsError, DataError, FileFormatError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"{name}: interrupted; outputs already written are complete, the rest were not written",
              file=sys.stderr)
        raise SystemExit(130) from None
    except OSError as e:  # disk full, read-only folder, permissions: the user's to fix, not our bug
        print(f"{name}: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(1) from None

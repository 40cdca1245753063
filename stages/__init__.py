"""The pipeline's stages, one module each, which dvc runs as `python -m stages.<name>` (dvc.yaml).

Started that way, this package runs first, before the stage's module and its imports (torch takes
seconds to load): it makes the process a stage at once (mnistbench.entry.begin_stage), so that a
signal in those seconds is handled too, and the stage ends when dvc ends. Imported any other way
(a test calling a stage's main()), it does nothing.
"""

import sys

OUTPUTS_KEPT = {"validate", "benchmark_validate"}  # their output is `persist: true`: DVC never deletes it

_args = sys.orig_argv
if "-m" in _args and _args.index("-m") + 1 < len(_args) and _args[_args.index("-m") + 1].startswith(f"{__name__}."):
    from mnistbench.entry import begin_stage

    _stage = _args[_args.index("-m") + 1].removeprefix(f"{__name__}.")
    begin_stage(_stage, outputs_kept=_stage in OUTPUTS_KEPT)

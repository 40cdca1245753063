"""The train stage's per-epoch metrics through DVCLive, DVC's logger.

    with epoch_logger(Path("dvclive")) as log_epoch:
        fit(..., on_epoch=log_epoch)   # each history row, as its epoch ends

Each epoch's train and validation loss and accuracy become DVCLive metrics `train/loss`,
`train/accuracy`, `val/loss`, `val/accuracy` (rounded to 6 decimals, as the metrics files):
dvclive/metrics.json holds the latest epoch, rewritten as each ends, so `dvc exp show`, the VS Code
extension and Studio show a running experiment's progress; dvclive/plots/metrics/<split>/<name>.tsv
hold the history, one row per epoch (DVCLive's step 0 is epoch 1), for `dvc plots`. DVCLive is told
not to write dvc.yaml (dvcyaml=None: dvc.yaml declares these files itself) and not to make
experiments (save_dvc_exp=False: DVC does, under `dvc exp run`); its files hold no timestamps.

One workaround, contained here: DVCLive 3.49 reads git's HEAD when it starts and raises scmrepo's
SCMError ("Empty git repo") in a repository without a commit yet, where `dvc repro` itself works.
_Live catches exactly that in Live._init_dvc, DVCLive's step that attaches to the DVC repository,
and goes on unattached: the files are written the same (tests/test_pipeline.py runs the stage both
before and after the first commit and checks the same bytes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

METRICS = ("loss", "accuracy")
SPLITS = ("train", "val")


def _live_class():
    from scmrepo.exceptions import SCMError

    from dvclive import Live  # 0.3 s after torch: imported only by the stage that logs

    class _Live(Live):
        def _init_dvc(self):
            try:
                super()._init_dvc()
            except SCMError:  # no commit yet: nothing for DVCLive to attach to
                pass

    return _Live


@contextlib.contextmanager
def epoch_logger(folder: Path) -> Iterator[Callable[[dict], None]]:
    """A callback taking one history row (mnistbench.train.fit's) per epoch, logging it to `folder`.
    DVCLive starts, clearing `folder` and writing an empty metrics.json, when the first epoch ends:
    a run that fails before (a model too large for memory, a bad data file) leaves `folder` as it was."""
    with contextlib.ExitStack() as stack:
        live = None

        def log_epoch(row: dict) -> None:
            nonlocal live
            if live is None:
                live = stack.enter_context(_live_class()(str(folder), dvcyaml=None, save_dvc_exp=False, report=None))
            for split in SPLITS:
                for name in METRICS:
                    live.log_metric(f"{split}/{name}", round(row[f"{split}_{name}"], 6))
            live.next_step()

        yield log_epoch

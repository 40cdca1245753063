import math

import numpy as np
import pytest
import torch

from mnistbench import evaluate as ev
from mnistbench.models import predict_logits


def logits_for(y_pred: list[int]) -> torch.Tensor:
    """Logits whose softmax puts 1/2 on the predicted class and 1/18 on each other class."""
    logits = torch.zeros(len(y_pred), 10, dtype=torch.float64)
    logits[torch.arange(len(y_pred)), torch.tensor(y_pred)] = math.log(9)
    return logits


Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = [0, 0, 1, 1, 1, 2]


def test_score_matches_hand_computed_metrics():
    summary, per_class = ev.score(Y_TRUE, logits_for(Y_PRED))
    # class 0: tp 2, fn 1 -> P 1, R 2/3, F1 0.8; class 1: tp 2, fp 1 -> P 2/3, R 1, F1 0.8; class 2: all 1.
    assert summary["accuracy"] == round(5 / 6, 6)
    assert summary["macro_f1"] == round((0.8 + 0.8 + 1.0) / 3, 6)
    assert summary["loss"] == round((5 * math.log(2) + math.log(18)) / 6, 6)
    assert per_class["0"] == {"precision": 1.0, "recall": round(2 / 3, 6), "f1": 0.8, "support": 3}
    assert per_class["1"] == {"precision": round(2 / 3, 6), "recall": 1.0, "f1": 0.8, "support": 2}
    assert per_class["2"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert per_class["9"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert list(per_class) == [str(c) for c in range(10)]


def test_perfect_predictions():
    y = np.arange(10).repeat(3)
    summary, _ = ev.score(y, logits_for(y.tolist()))
    assert summary["accuracy"] == 1.0 and summary["macro_f1"] == 1.0
    assert summary["loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_predictions_csv_has_one_row_per_image():
    assert ev.predictions_csv(Y_TRUE, np.array(Y_PRED)) == "actual,predicted\n0,0\n0,0\n0,1\n1,1\n1,1\n2,2\n"


def test_predict_logits_does_not_depend_on_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Linear(784, 10)
    x = torch.randn(25, 784)
    assert torch.allclose(predict_logits(model, x, 4), predict_logits(model, x, 25), atol=1e-6)


@pytest.mark.parametrize(
    "draw",
    [
        lambda: ev.confusion_png(Y_TRUE, np.array(Y_PRED), [str(c) for c in range(10)]),
        lambda: ev.report_png(Y_TRUE, np.array(Y_PRED), [str(c) for c in range(10)]),
        lambda: ev.misclassified_png(torch.zeros(6, 28, 28, dtype=torch.uint8), Y_TRUE, np.array(Y_PRED), limit=5),
        lambda: ev.misclassified_png(torch.zeros(6, 28, 28, dtype=torch.uint8), Y_TRUE, Y_TRUE, limit=5),  # none wrong
    ],
)
def test_pictures_are_pngs_with_repeatable_bytes(draw):
    first, second = draw(), draw()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first == second

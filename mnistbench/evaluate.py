"""Test-set scoring with scikit-learn, and the pictures made from it.

logits = predict_logits(model, x, batch_size)           # (N, 10)
scores = score(y_true, logits)                          # dict of plain floats
"""

from __future__ import annotations

import io
import statistics
import time

import matplotlib

matplotlib.use("Agg")  # headless, and the same PNG bytes everywhere
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from mnistbench.data import IMAGE_SIZE, NUM_CLASSES  # noqa: E402

CLASSES = list(range(NUM_CLASSES))
DECIMALS = 6  # metrics are rounded when written; accuracy on 10,000 images needs 4


@torch.inference_mode()
def latency_ms(model: torch.nn.Module, x: torch.Tensor, images: int = 200, warmup: int = 20) -> float:
    """Median milliseconds to classify one image alone (batch of 1), over the first `images` of x
    after `warmup` untimed ones: what serving one request costs. A measurement, not a result."""
    model.eval()
    for i in range(warmup):
        model(x[i : i + 1])
    times = []
    for i in range(min(images, len(x))):
        started = time.perf_counter()
        model(x[i : i + 1]).argmax(1)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def class_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy and macro-F1 of predicted classes, rounded as every metric here: what a benchmark
    cell's predictions file is scored with, again, by `mnistbench spot-check`."""
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), DECIMALS),
        # Macro over the classes present in y_true or y_pred (sklearn's default): all 10 on MNIST.
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), DECIMALS),
    }


def score(y_true: np.ndarray, logits: torch.Tensor) -> tuple[dict, dict]:
    """(summary, per_class) metrics of argmax predictions; labels 0..9 always all present as keys."""
    y_pred = logits.argmax(1).numpy()
    loss = F.cross_entropy(logits, torch.as_tensor(y_true), reduction="mean").item()
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=CLASSES, zero_division=0)
    summary = {**class_scores(y_true, y_pred), "loss": round(loss, DECIMALS)}
    per_class = {
        str(c): {
            "precision": round(float(precision[c]), DECIMALS),
            "recall": round(float(recall[c]), DECIMALS),
            "f1": round(float(f1[c]), DECIMALS),
            "support": int(support[c]),
        }
        for c in CLASSES
    }
    return summary, per_class


def predictions_csv(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    """One row per test image, the shape DVC's `confusion` template counts."""
    return "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in zip(y_true.tolist(), y_pred.tolist()))


def png(fig, **savefig) -> bytes:
    """The figure as PNG bytes, closed; no version stamp, so the same bytes everywhere."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None}, **savefig)  # no version stamp in the bytes
    plt.close(fig)
    return buf.getvalue()


def confusion_png(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> bytes:
    """`names`: the 10 class names, in label order (datasets.json)."""
    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(confusion_matrix(y_true, y_pred, labels=CLASSES), display_labels=names).plot(
        ax=ax,
        cmap="Blues",
        values_format="d",
        colorbar=False,
        xticks_rotation=45 if max(map(len, names)) > 2 else "horizontal",
    )
    ax.set(title=f"Confusion matrix: {len(y_true):,} test images", xlabel="Predicted", ylabel="Actual")
    fig.tight_layout()
    return png(fig)


def report_png(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> bytes:
    text = classification_report(y_true, y_pred, labels=CLASSES, target_names=names, digits=4, zero_division=0)
    fig = plt.figure(figsize=(6, 4))
    fig.text(0, 1, "Classification report (test)\n\n" + text, family="monospace", fontsize=10, va="top")
    return png(fig, bbox_inches="tight", pad_inches=0.2)  # crop to the text


def misclassified_png(images: torch.Tensor, y_true: np.ndarray, y_pred: np.ndarray, limit: int) -> bytes:
    """The first `limit` misclassified test digits in test-set order, labelled #index: true→predicted.
    One tiled image rather than an axes per digit: 0.1 s instead of 1 s."""
    wrong = np.flatnonzero(y_true != y_pred)[:limit]
    cols = min(max(len(wrong), 1), 10)
    rows = max(1, -(-len(wrong) // cols))
    cell_w, cell_h, band = 34, 42, 12  # pixels per tile; the top band holds the label
    canvas = np.zeros((rows * cell_h, cols * cell_w), dtype=np.uint8)
    fig, ax = plt.subplots(figsize=(0.8 * cols, 0.99 * rows + 0.35))
    for k, i in enumerate(wrong):
        top, left = (k // cols) * cell_h, (k % cols) * cell_w
        canvas[top + band : top + band + IMAGE_SIZE, left + 3 : left + 3 + IMAGE_SIZE] = images[i].numpy()
        ax.text(
            left + cell_w / 2,
            top + band - 1,
            f"#{i}: {y_true[i]}→{y_pred[i]}",
            ha="center",
            va="bottom",
            fontsize=6.5,
            color="firebrick",
        )
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    ax.set_title(
        f"Misclassified test digits (first {len(wrong)} of {int((y_true != y_pred).sum())}; "
        f"#test index: true→predicted)",
        fontsize=8,
    )
    fig.tight_layout(pad=0.3)
    return png(fig)

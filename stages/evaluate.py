"""Stage evaluate: score the checkpoint on the 10,000 test images; write metrics and plots.

    dvc repro evaluate  # or: python -m stages.evaluate --data data/prepared --model models/model.pt ...

The only stage that reads test.pt. Everything it writes is reproducible to the byte except --time,
the measured inference latency.
"""

import argparse
from pathlib import Path

from mnistbench import data
from mnistbench import evaluate as ev
from mnistbench.entry import run_stage
from mnistbench.files import write_bytes, write_json, write_text
from mnistbench.models import load_checkpoint, predict_logits
from mnistbench.params import load_params
from mnistbench.runtime import configure_torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding test.pt")
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to score")
    for name in ("metrics", "per-class", "predictions", "confusion-png", "report-png", "misclassified-png", "time"):
        parser.add_argument(f"--{name}", type=Path, required=True, help="output file")
    args = parser.parse_args()
    params = load_params()
    configure_torch(params.train.threads, "cpu")

    model, norm = load_checkpoint(args.model)
    images, labels = data.load_split(args.data / "test.pt")
    x = data.normalize(images, norm["mean"], norm["std"])
    logits = predict_logits(model, x, params.evaluate.batch_size)
    y_true, y_pred = labels.numpy(), logits.argmax(1).numpy()
    summary, per_class = ev.score(y_true, logits)
    names = list(data.pinned(params.prepare.dataset).classes)

    write_json(args.metrics, summary)
    write_json(args.per_class, per_class)
    write_text(args.predictions, ev.predictions_csv(y_true, y_pred))
    write_bytes(args.confusion_png, ev.confusion_png(y_true, y_pred, names))
    write_bytes(args.report_png, ev.report_png(y_true, y_pred, names))
    write_bytes(
        args.misclassified_png, ev.misclassified_png(images, y_true, y_pred, params.evaluate.misclassified_shown)
    )
    latency = ev.latency_ms(model, x)
    write_json(args.time, {"latency_ms_per_image": round(latency, 4), "threads": params.train.threads})
    print(
        f"evaluate: {latency:.3f} ms per image alone; test accuracy {summary['accuracy']:.4f}  "
        f"macro-F1 {summary['macro_f1']:.4f}  loss {summary['loss']:.4f}"
    )


if __name__ == "__main__":
    run_stage("evaluate", main)

"""predict: MNIST-style preprocessing of drawn images, a whole run on a model trained on drawn
shapes, and one clear line for each kind of bad file."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from commands import predict
from mnistbench.data import normalize
from mnistbench.models import build_model, save_checkpoint
from mnistbench.train import train_epoch
from tests.helpers import model_params

MEAN, STD = 0.1307, 0.3081


def draw(shape: str, rng: random.Random, dark_on_light: bool) -> Image.Image:
    """A 'digit' at a random size and place on a canvas of random size: 0 a ring, 1 a bar, 7 a seven."""
    w, h = rng.randint(120, 400), rng.randint(120, 400)
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", (w, h), paper)
    pen = ImageDraw.Draw(image)
    size = rng.randint(60, min(w, h) - 20)
    x, y = rng.randint(5, w - size - 5), rng.randint(5, h - size - 5)
    width = max(4, size // rng.randint(6, 10))
    if shape == "0":
        pen.ellipse([x + size // 5, y, x + size - size // 5, y + size], outline=ink, width=width)
    elif shape == "1":
        pen.line([x + size // 2, y, x + size // 2, y + size], fill=ink, width=width)
    else:
        pen.line([x + size // 6, y + width // 2, x + size - size // 6, y + width // 2], fill=ink, width=width)
        pen.line([x + size - size // 6, y, x + size // 3, y + size], fill=ink, width=width)
    return image


def test_to_mnist_centres_a_20_pixel_digit_light_on_black():
    image = Image.new("L", (300, 400), 255)
    ImageDraw.Draw(image).rectangle([20, 30, 60, 230], fill=0)  # a dark bar, far off-centre
    digit = predict.to_mnist(image).numpy().astype(float)
    assert digit.shape == (28, 28)
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # background black after inversion
    rows, cols = np.nonzero(digit)
    assert rows.max() - rows.min() + 1 == 20  # the longer side fills MNIST's 20-pixel box
    centre = (np.indices(digit.shape) * digit).sum(axis=(1, 2)) / digit.sum()
    assert np.allclose(centre, [14, 14], atol=1.0)


def test_polarity_does_not_matter():
    rng = random.Random(3)
    dark = draw("7", rng, dark_on_light=True)
    light = Image.eval(dark, lambda v: 255 - v)
    assert torch.equal(predict.to_mnist(dark), predict.to_mnist(light))


def test_a_blank_page_gives_a_blank_digit():
    assert predict.to_mnist(Image.new("RGB", (50, 80), "white")).sum() == 0


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """An MLP trained on drawn shapes through to_mnist: the whole predict path, learnable in a second."""
    rng = random.Random(0)
    labels = [rng.choice("017") for _ in range(360)]
    digits = torch.stack([predict.to_mnist(draw(c, rng, dark_on_light=rng.random() < 0.5)) for c in labels])
    x, y = normalize(digits, MEAN, STD), torch.tensor([int(c) for c in labels])
    torch.manual_seed(0)
    model = build_model(model_params(hidden=(64,)))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        train_epoch(model, optimizer, x, y, batch_size=32, generator=generator)
    path = tmp_path_factory.mktemp("model") / "shapes.pt"
    save_checkpoint(path, model, model_params(hidden=(64,)), MEAN, STD)
    return path


def test_predict_names_the_drawn_digits(shapes_model, tmp_path, capsys):
    rng = random.Random(42)
    files, expected = [], []
    for i, (shape, fmt) in enumerate(
        [("0", "png"), ("1", "jpeg"), ("7", "png"), ("0", "jpeg"), ("1", "png"), ("7", "jpeg")]
    ):
        path = tmp_path / f"digit{i}.{fmt}"
        draw(shape, rng, dark_on_light=i % 2 == 0).convert("RGB").save(path, format=fmt.upper())
        files.append(str(path))
        expected.append(shape)
    assert predict.main(["--model", str(shapes_model), *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(": ")[1].split()[0] for line in lines] == expected
    probabilities = [float(part.split(":")[1]) for part in lines[0].split("(")[1].rstrip(")").split()]
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 0.01


def test_each_bad_file_gets_one_line_and_the_good_ones_still_run(shapes_model, tmp_path, capsys):
    good = tmp_path / "good.png"
    draw("1", random.Random(1), dark_on_light=True).save(good)
    (tmp_path / "notes.png").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    Image.new("L", (8000, 6000)).save(tmp_path / "bomb.png")  # 48 Mpx of zeros: a small file
    Image.new("L", (30, 30)).save(tmp_path / "anim.gif")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:200])
    bad = ["notes.png", "empty.png", "folder", "bomb.png", "anim.gif", "cut.png", "absent.png"]
    code = predict.main(["--model", str(shapes_model), str(good), *[str(tmp_path / name) for name in bad]])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.startswith(f"{good}: ")
    errors = err.strip().splitlines()
    assert len(errors) == len(bad)
    for name, line, words in zip(
        bad,
        errors,
        [
            "not a readable PNG or JPEG",
            "empty file",
            "is a directory",
            "over the limit",
            "give PNG or JPEG",
            "damaged",
            "no such file",
        ],
    ):
        assert line.startswith(f"predict: error: {tmp_path / name}: ") and words in line, line


def test_a_missing_model_says_what_to_run(tmp_path, capsys):
    assert predict.main(["--model", str(tmp_path / "none.pt"), str(tmp_path / "x.png")]) == 1
    assert "run `dvc repro` (or `dvc pull`)" in capsys.readouterr().err

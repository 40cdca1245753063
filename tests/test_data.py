import dataclasses
import functools
import gzip
import http.server
import json
import shutil
import struct
import threading
from pathlib import Path

import pytest
import torch
import torchvision

from mnistbench import data, mirrors
from mnistbench.files import FileFormatError, save_tensors
from mnistbench.params import ParamsError, check_val_size
from tests.helpers import ROOT, synthetic_digits, write_mirror


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
def test_pinned_checksums_match_torchvisions_md5s(name):
    dataset = data.pinned(name)
    base = getattr(torchvision.datasets, data.TORCHVISION_CLASSES[name])
    assert [(f.name, f.md5) for f in dataset.files] == [tuple(r) for r in base.resources]
    assert (dataset.train_size, dataset.test_size) == (60_000, 10_000)
    assert len(dataset.classes) == 10
    if name != "kmnist":  # no copy of KMNIST was reachable to pin its content from (datasets.json)
        assert all(len(f.sha256) == 64 for f in dataset.files)


def test_every_dataset_params_yaml_allows_is_declared():
    import dataclasses as dc

    from mnistbench.params import PrepareParams

    allowed = next(f for f in dc.fields(PrepareParams) if f.name == "dataset").metadata["choices"]
    manifest = json.loads(data.DATASETS_FILE.read_text())
    assert set(allowed) == set(manifest) - {"_comment"} == set(data.TORCHVISION_CLASSES)


@pytest.mark.parametrize(
    "value, roots",
    [
        (None, []),
        ("", []),
        ("../shared/datasets", ["../shared/datasets"]),
        ("/a:/b", ["/a", "/b"]),
        ("https://example.org/data:/mnt/m", ["https://example.org/data", "/mnt/m"]),
        ("/m:http://host:8080/x/y:file:///srv/d", ["/m", "http://host:8080/x/y", "file:///srv/d"]),
    ],
)
def test_parse_mirrors_keeps_url_colons(value, roots):
    assert mirrors.parse_mirrors(value) == roots


def test_unobtainable_names_the_first_file_no_folder_holds_and_defers_to_downloads(tmp_path):
    (tmp_path / "a" / "mnist").mkdir(parents=True)
    (tmp_path / "b" / "mnist").mkdir(parents=True)
    (tmp_path / "a" / "mnist" / "x.gz").write_bytes(b"")
    (tmp_path / "b" / "mnist" / "y.gz").write_bytes(b"")
    roots = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert mirrors.unobtainable("mnist", ["x.gz", "y.gz"], roots) is None  # each in some folder
    assert mirrors.unobtainable("mnist", ["x.gz", "z.gz", "w.gz"], roots) == "z.gz"
    assert mirrors.unobtainable("kmnist", ["x.gz"], roots) == "x.gz"
    assert mirrors.unobtainable("mnist", ["z.gz"], roots + ["https://example.invalid/d"]) is None
    assert mirrors.unobtainable("mnist", ["z.gz"], []) is None  # torchvision's mirrors


def test_absolute_makes_folder_roots_absolute_and_keeps_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        mirrors.absolute("../m:https://example.org:8080/d:/srv/x")
        == f"{tmp_path.parent}/m:https://example.org:8080/d:/srv/x"
    )


def test_fetch_parses_idx_files_from_a_directory_mirror(tmp_path, mirror):
    root, files = mirror
    train_images, train_labels, test_images, test_labels = data.fetch(tmp_path / "work", [str(root)], files)
    expected_train, expected_test = synthetic_digits(300, seed=1), synthetic_digits(100, seed=2)
    assert train_images.dtype == torch.uint8 and train_images.shape == (300, 28, 28)
    assert train_labels.dtype == torch.int64
    assert torch.equal(train_images, expected_train[0]) and torch.equal(train_labels, expected_train[1])
    assert torch.equal(test_images, expected_test[0]) and torch.equal(test_labels, expected_test[1])


def test_fetch_falls_through_to_the_next_mirror(tmp_path, mirror):
    root, files = mirror
    empty = tmp_path / "empty"
    (empty / "mnist").mkdir(parents=True)
    result = data.fetch(tmp_path / "work", [str(empty), str(root)], files)
    assert len(result[0]) == 300


def test_corrupt_file_is_refused_with_expected_and_actual_checksum(tmp_path, mirror):
    root, files = mirror
    target = root / "mnist" / files[2].name
    content = bytearray(gzip.decompress(target.read_bytes()))
    content[-1] ^= 0xFF  # one pixel changed, still a valid gzip of a valid IDX file
    target.write_bytes(gzip.compress(bytes(content)))
    actual = data.digests(target)[1]
    with pytest.raises(data.DataError) as err:
        data.fetch(tmp_path / "work", [str(root)], files)
    message = str(err.value)
    assert files[2].name in message and files[2].sha256 in message and actual in message
    assert "\n" not in message


def test_truncated_file_is_refused_as_incomplete(tmp_path, mirror):
    root, files = mirror
    target = root / "mnist" / files[2].name
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(data.DataError, match=rf"{files[2].name}: not a complete gzip file"):
        data.fetch(tmp_path / "work", [str(root)], files)


def test_a_recompressed_mirror_passes_on_its_content(tmp_path, mirror):
    # Debian's fashion-mnist: the same content, compressed again, so other .gz bytes and MD5s.
    root, files = mirror
    for f in files:
        target = root / "mnist" / f.name
        target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes()), compresslevel=1, mtime=12345))
        assert data.digests(target)[0] != f.md5
    assert len(data.fetch(tmp_path / "work", [str(root)], files)[0]) == 300


def test_without_a_pinned_content_hash_the_published_md5_decides(tmp_path, mirror):
    root, files = mirror
    md5_only = tuple(dataclasses.replace(f, sha256=None) for f in files)
    assert len(data.fetch(tmp_path / "work", [str(root)], md5_only)[0]) == 300
    target = root / "mnist" / files[0].name
    target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes()), compresslevel=1))
    with pytest.raises(data.DataError, match=r"MD5 \w+, expected \w+ \(no content SHA-256 is pinned"):
        data.fetch(tmp_path / "work2", [str(root)], md5_only)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
def test_each_dataset_comes_from_its_own_folder_and_torchvision_reads_what_fetch_parsed(tmp_path, name):
    files = write_mirror(tmp_path / "mirror", n_train=40, n_test=20, dataset=name, seed=9)
    images, labels, test_images, test_labels = data.fetch(tmp_path / "work", [str(tmp_path / "mirror")], files, name)
    assert images.shape == (40, 28, 28) and len(test_labels) == 20
    assert torch.equal(labels, synthetic_digits(40, seed=9)[1])
    # the verified files, left where the dataset's torchvision class reads them (bench's seed loop)
    cls = getattr(torchvision.datasets, data.TORCHVISION_CLASSES[name])
    train, test = cls(str(tmp_path / "work"), train=True), cls(str(tmp_path / "work"), train=False)
    assert torch.equal(train.data, images) and torch.equal(train.targets, labels)
    assert torch.equal(test.data, test_images) and torch.equal(test.targets, test_labels)
    if name != "mnist":
        with pytest.raises(data.DataError, match=r"not found intact.*/mnist/train-images-idx3-ubyte\.gz: no such file"):
            data.fetch(tmp_path / "work2", [str(tmp_path / "mirror")], files, "mnist")


@pytest.mark.skipif(
    not (ROOT.parent / "shared/datasets/mnist").is_dir(), reason="no MNIST mirror at ../shared/datasets"
)
def test_parse_idx_reads_real_mnist_as_torchvision_does(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for f in data.pinned("mnist").files[2:]:  # the test set: 10,000 images and labels
        src = ROOT.parent / "shared/datasets/mnist" / f.name
        content = data.verified_content(src, f, shown=src)
        (tmp_path / f.name).with_suffix("").write_bytes(content)
        reference = (read_image_file if "-images-" in f.name else read_label_file)(
            str((tmp_path / f.name).with_suffix(""))
        )
        parsed = data.parse_idx(content, reference.dim(), shown=src)
        assert torch.equal(parsed.long() if reference.dim() == 1 else parsed, reference)


@pytest.mark.parametrize(
    "content, ndim, message",
    [
        (b"", 3, r"not an IDX file of 3-dimensional unsigned bytes \(starts with nothing\)"),
        (
            struct.pack(">IIII", 2051, 1, 28, 28) + bytes(784),
            1,
            r"not an IDX file of 1-dimensional .*starts with 00000803",
        ),
        (struct.pack(">IIII", 0x0D03, 1, 28, 28) + bytes(4 * 784), 3, r"not an IDX file of 3-dim.*00000d03"),  # floats
        (
            struct.pack(">IIII", 2051, 2, 28, 28) + bytes(784),
            3,
            r"declares 1568 bytes of data \(2, 28, 28\), it holds 784",
        ),
        (struct.pack(">IIII", 2051, 1, 32, 32) + bytes(1024), 3, r"images are 32x32 pixels, expected 28x28"),
    ],
)
def test_parse_idx_refuses_what_is_not_the_expected_idx_file(content, ndim, message):
    with pytest.raises(data.DataError, match=message) as err:
        data.parse_idx(content, ndim, shown=Path("mnist/x.gz"))
    assert str(err.value).startswith("mnist/x.gz: ") and "\n" not in str(err.value)


@pytest.fixture
def http_mirror(mirror):
    """The mirror fixture, served over HTTP on loopback: (URL root, files)."""
    root, files = mirror
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", files
    server.shutdown()
    server.server_close()


def test_files_missing_from_directory_mirrors_are_downloaded_through_torchvision(tmp_path, mirror, http_mirror):
    root, files = mirror
    url, _ = http_mirror
    partial = tmp_path / "partial"
    (partial / "mnist").mkdir(parents=True)
    shutil.copy(root / "mnist" / files[0].name, partial / "mnist")  # only the training images
    result = data.fetch(tmp_path / "work", [str(partial), url], files)
    assert torch.equal(result[0], synthetic_digits(300, seed=1)[0]) and len(result[3]) == 100
    downloaded = sorted(p.name for p in (tmp_path / "work/MNIST/raw").glob("*.gz"))
    assert downloaded == sorted(f.name for f in files[1:])  # torchvision fetched only the other three
    # a download with the pinned MD5 but other content is refused on the content's SHA-256
    wrong = dataclasses.replace(files[3], sha256="0" * 64)
    with pytest.raises(data.DataError, match=rf"work2/MNIST/raw/{files[3].name}: SHA-256 of the content"):
        data.fetch(tmp_path / "work2", [url], (*files[:3], wrong))


def test_the_next_run_with_the_good_file_succeeds(tmp_path, mirror):
    root, files = mirror
    target = root / "mnist" / files[0].name
    good = target.read_bytes()
    target.write_bytes(good[:100])
    with pytest.raises(data.DataError):
        data.fetch(tmp_path / "work", [str(root)], files)
    target.write_bytes(good)
    assert len(data.fetch(tmp_path / "work", [str(root)], files)[1]) == 300  # same workdir, reused


def test_declared_sizes_are_checked():
    dataset = data.Dataset("mnist", train_size=60_000, test_size=10_000, files=())
    with pytest.raises(data.DataError, match="parsed 300 training and 100 test images, datasets.json declares 60000"):
        data.check_sizes(dataset, torch.zeros(300), torch.zeros(100))
    with pytest.raises(ParamsError, match=r"prepare\.val_size = 60000: must be between 1 and 59999"):
        check_val_size(60_000, dataset.train_size)


def test_checksums_are_never_skipped(tmp_path, mirror):
    # A well-formed file that is not the pinned one must be refused too.
    root, files = mirror
    wrong = dataclasses.replace(files[0], sha256="0" * 64)
    with pytest.raises(data.DataError, match="SHA-256"):
        data.fetch(tmp_path / "work", [str(root)], (wrong, *files[1:]))


def test_missing_file_names_the_file_and_where_it_looked(tmp_path, mirror):
    root, files = mirror
    (root / "mnist" / files[1].name).unlink()
    with pytest.raises(data.DataError, match=rf"{files[1].name} not found intact.*no such file"):
        data.fetch(tmp_path / "work", [str(root)], files)


def test_unreachable_url_mirror_is_reported_per_file(tmp_path, mirror):
    _, files = mirror
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(data.DataError, match=rf"Error downloading {files[0].name}.*127\.0\.0\.1:9"):
        data.fetch(tmp_path / "work", ["http://127.0.0.1:9/datasets"], files)


def test_unreachable_canonical_mirrors_say_how_to_work_offline(tmp_path, mirror, monkeypatch):
    import torchvision

    _, files = mirror
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # no DATA_MIRROR: these
    with pytest.raises(data.DataError, match=r"127\.0\.0\.1:9.*; offline, set DATA_MIRROR to a folder holding mnist/"):
        data.fetch(tmp_path / "work", [], files)


def test_split_is_seeded_disjoint_and_complete():
    images, labels = synthetic_digits(100, seed=3)
    images[:, 0, 0] = torch.arange(100, dtype=torch.uint8)  # tag each image with its index
    train, val = data.split(images, labels, val_size=20, seed=7)
    again = data.split(images, labels, val_size=20, seed=7)
    other = data.split(images, labels, val_size=20, seed=8)
    assert len(val["labels"]) == 20 and len(train["labels"]) == 80
    ids = lambda part: part["images"][:, 0, 0].tolist()
    assert sorted(ids(train) + ids(val)) == list(range(100))
    assert ids(val) == ids(again[1]) and ids(val) != ids(other[1])
    assert torch.equal(labels[ids(val)], val["labels"])


@pytest.mark.parametrize("val_size", [0, 100, 101])
def test_split_refuses_a_validation_set_as_large_as_the_training_set(val_size):
    images, labels = synthetic_digits(100, seed=3)
    with pytest.raises(ParamsError, match=r"prepare\.val_size"):
        data.split(images, labels, val_size=val_size, seed=0)


def test_saved_split_round_trips(tmp_path):
    images, labels = synthetic_digits(30, seed=4)
    data.save_split(tmp_path / "s.pt", images, labels)
    loaded_images, loaded_labels = data.load_split(tmp_path / "s.pt")
    assert torch.equal(loaded_images, images) and torch.equal(loaded_labels, labels)


def test_load_split_refuses_wrong_shapes_and_labels(tmp_path):
    images, labels = synthetic_digits(30, seed=4)
    save_tensors(tmp_path / "flat.pt", {"images": images.reshape(30, -1), "labels": labels})
    save_tensors(tmp_path / "labels.pt", {"images": images, "labels": labels + 10})
    save_tensors(tmp_path / "keys.pt", {"x": images})
    with pytest.raises(FileFormatError, match=r"expected uint8 \(N, 28, 28\)"):
        data.load_split(tmp_path / "flat.pt")
    with pytest.raises(FileFormatError, match=r"labels outside 0\.\.9"):
        data.load_split(tmp_path / "labels.pt")
    with pytest.raises(FileFormatError, match=r"not a prepared split"):
        data.load_split(tmp_path / "keys.pt")
    with pytest.raises(FileFormatError, match=r"not found; run `dvc repro`"):
        data.load_split(tmp_path / "absent.pt")


def test_mirror_helper_writes_what_it_claims(tmp_path):
    files = write_mirror(tmp_path, n_train=20, n_test=10)
    assert all(data.digests(tmp_path / "mnist" / f.name) == (f.md5, f.sha256) for f in files)

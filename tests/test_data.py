import dataclasses
import gzip
import json

import pytest
import torch
import torchvision

from conftest import synthetic_digits, write_mirror
from mnistbench import data
from mnistbench.files import FileFormatError, save_tensors


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
    from mnistbench.params import PrepareParams
    import dataclasses as dc
    allowed = next(f for f in dc.fields(PrepareParams) if f.name == "dataset").metadata["choices"]
    manifest = json.loads(data.DATASETS_FILE.read_text())
    assert set(allowed) == set(manifest) - {"_comment"} == set(data.TORCHVISION_CLASSES)


@pytest.mark.parametrize("value, roots", [
    (None, []),
    ("", []),
    ("../shared/datasets", ["../shared/datasets"]),
    ("/a:/b", ["/a", "/b"]),
    ("https://example.org/data:/mnt/m", ["https://example.org/data", "/mnt/m"]),
    ("/m:http://host:8080/x/y:file:///srv/d", ["/m", "http://host:8080/x/y", "file:///srv/d"]),
])
def test_parse_mirrors_keeps_url_colons(value, roots):
    assert data.parse_mirrors(value) == roots


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


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_other_datasets_come_from_their_own_folder_through_their_torchvision_class(tmp_path, name):
    files = write_mirror(tmp_path / "mirror", n_train=40, n_test=20, dataset=name, seed=9)
    images, labels, _, test_labels = data.fetch(tmp_path / "work", [str(tmp_path / "mirror")], files, name)
    assert images.shape == (40, 28, 28) and len(test_labels) == 20
    assert torch.equal(labels, synthetic_digits(40, seed=9)[1])
    assert (tmp_path / "work" / data.TORCHVISION_CLASSES[name] / "raw").is_dir()
    with pytest.raises(data.DataError, match=r"not found intact.*/mnist/train-images-idx3-ubyte\.gz: no such file"):
        data.fetch(tmp_path / "work2", [str(tmp_path / "mirror")], files, "mnist")


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
    with pytest.raises(data.DataError, match=r"prepare\.val_size = 60000: must be between 1 and 59999"):
        data.check_val_size(60_000, dataset.train_size)


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
    with pytest.raises(data.DataError, match=r"prepare\.val_size"):
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

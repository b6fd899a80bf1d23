"""Proxy data: the CIFAR-10 reader on fake on-disk data, digits, normalisation, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_nos.core.errors import NOSError
from proxy.data import (
    Augmentation,
    batch_indices,
    batches_per_pass,
    load_cifar10,
    load_digits,
    normalization,
    normalize,
    training_batches,
)

PER_BATCH = 8  # images per fake data_batch file; 5 files -> 40 training images


def _write_pickle(path: Path, payload: dict) -> None:
    with path.open("wb") as handle:
        pickle.dump(payload, handle)


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """CIFAR-10's python format: data_batch_1..5, test_batch, batches.meta (pickled dicts).

    Returns the root, the training images as [N, 3, 32, 32] uint8 in file order, and labels.
    """
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    images, labels = [], []
    for b in range(1, 6):
        data = rng.integers(0, 256, size=(PER_BATCH, 3 * 32 * 32), dtype=np.uint8)
        batch_labels = [int(v) for v in rng.integers(0, 10, size=PER_BATCH)]
        _write_pickle(
            folder / f"data_batch_{b}",
            {"data": data, "labels": batch_labels, "batch_label": f"training batch {b} of 5"},
        )
        images.append(data)
        labels.extend(batch_labels)
    test = rng.integers(0, 256, size=(4, 3 * 32 * 32), dtype=np.uint8)
    _write_pickle(folder / "test_batch", {"data": test, "labels": [0, 1, 2, 3]})
    _write_pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    # CIFAR-10 rows hold the 1024 red, then green, then blue values of one image, row-major.
    stacked = np.concatenate(images).reshape(-1, 3, 32, 32)
    return root, stacked, np.asarray(labels)


# -- CIFAR-10 -----------------------------------------------------------------------------------


def test_cifar10_split_in_official_order(fake_cifar: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, images, labels = fake_cifar
    data = load_cifar10(root, val_size=10, verify_checksums=False)
    assert data.image_shape == (3, 32, 32)
    assert len(data.train) == 30 and len(data.val) == 10
    assert data.train.images.dtype == torch.uint8
    np.testing.assert_array_equal(data.train.images.numpy(), images[:30])
    np.testing.assert_array_equal(data.val.images.numpy(), images[30:])
    np.testing.assert_array_equal(data.train.labels.numpy(), labels[:30])
    np.testing.assert_array_equal(data.val.labels.numpy(), labels[30:])
    assert data.num_classes == 10 and data.max_value == 255.0


def test_cifar10_stats_cover_the_whole_training_pool(
    fake_cifar: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    root, images, _ = fake_cifar
    data = load_cifar10(root, val_size=10, verify_checksums=False)
    pixels = images.astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(data.channel_mean, pixels.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(data.channel_std, pixels.std(axis=1, ddof=0), rtol=1e-12)


def test_cifar10_normalisations(fake_cifar: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, images, _ = fake_cifar
    data = load_cifar10(root, val_size=10, verify_checksums=False)
    raw = data.train.images[:5]
    scaled = normalize(raw, normalization(data, "scale"), torch.float64)
    np.testing.assert_allclose(scaled.numpy(), images[:5] / 255.0, rtol=1e-12)
    standard = normalize(raw, normalization(data, "standardize"), torch.float64)
    pool = images.astype(np.float64)
    mean = pool.mean(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    std = pool.std(axis=(0, 2, 3)).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(standard.numpy(), (images[:5] - mean) / std, rtol=1e-10)
    with pytest.raises(NOSError, match="normalization"):
        normalization(data, "minmax")


def test_cifar10_checksums_reject_fake_files(
    fake_cifar: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    root, _, _ = fake_cifar
    with pytest.raises(NOSError, match="missing or corrupted"):
        load_cifar10(root, val_size=10)


def test_cifar10_missing_data(
    tmp_path: Path, fake_cifar: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    with pytest.raises(NOSError, match="not a directory"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(NOSError, match="missing or corrupted"):
        load_cifar10(tmp_path, verify_checksums=False)
    root, _, _ = fake_cifar
    with pytest.raises(NOSError, match="val_size"):
        load_cifar10(root, verify_checksums=False)  # 5,000 validation images of 40
    with pytest.raises(NOSError, match="val_size"):
        load_cifar10(root, val_size=0, verify_checksums=False)


def test_cifar10_stream_shapes(fake_cifar: tuple[Path, np.ndarray, np.ndarray]) -> None:
    root, _, _ = fake_cifar
    data = load_cifar10(root, val_size=10, verify_checksums=False)
    stream = training_batches(
        data.train,
        normalization(data, "standardize"),
        Augmentation(),
        batch_size=8,
        shuffle=True,
        seed=3,
    )
    for size in (8, 8, 8, 6, 8):  # 30 training images: the pass ends with a partial batch
        images, labels = next(stream)
        assert images.shape == (size, 3, 32, 32) and images.dtype == torch.float32
        assert labels.shape == (size,) and labels.dtype == torch.int64


# -- digits -------------------------------------------------------------------------------------


def test_digits_stratified_split() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    data = load_digits(val_fraction=0.2, seed=0)
    assert data.image_shape == (1, 8, 8) and data.max_value == 16.0
    assert len(data.train) + len(data.val) == 1797
    assert len(data.val) == 360
    val_counts = torch.bincount(data.val.labels, minlength=10).numpy()
    all_counts = np.bincount(sklearn_digits().target, minlength=10)
    assert np.all(np.abs(val_counts - 0.2 * all_counts) <= 1)
    # Both splits are images of the bundled set, with matching labels, and disjoint.
    reference = sklearn_digits()
    bundled = {
        (bytes(img.astype(np.uint8).tobytes()), int(t))
        for img, t in zip(reference.images, reference.target, strict=True)
    }
    pairs = [
        (bytes(img[0].numpy().tobytes()), int(t))
        for split in (data.train, data.val)
        for img, t in zip(split.images, split.labels, strict=True)
    ]
    assert set(pairs) <= bundled
    assert load_digits(seed=0).val.labels.tolist() == data.val.labels.tolist()
    assert load_digits(seed=1).val.labels.tolist() != data.val.labels.tolist()
    with pytest.raises(NOSError, match="val_fraction"):
        load_digits(val_fraction=1.0)


# -- augmentation -------------------------------------------------------------------------------


def _images(batch: int = 16, side: int = 32, seed: int = 0) -> torch.Tensor:
    """Distinct positive values everywhere, so no crop, flip or zero occurs by accident."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, side, side, generator=generator, dtype=torch.float64) + 1.0


def test_crop_is_a_window_of_the_reflect_padded_image() -> None:
    images = _images()
    out = Augmentation(pad=4, flip=False, cutout=0)
    result = _augment(images, out, seed=0)
    assert result.shape == images.shape
    offsets = set()
    for image, crop in zip(images.numpy(), result.numpy(), strict=True):
        padded = np.pad(image, ((0, 0), (4, 4), (4, 4)), mode="reflect")
        matches = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if np.array_equal(padded[:, dy : dy + 32, dx : dx + 32], crop)
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 4  # offsets are drawn per image


def test_flip_mirrors_about_half_of_the_images() -> None:
    images = _images(batch=200)
    result = _augment(images, Augmentation(pad=0, flip=True, cutout=0), seed=1)
    flipped = [bool(torch.equal(r, i.flip(2))) for r, i in zip(result, images, strict=True)]
    same = [bool(torch.equal(r, i)) for r, i in zip(result, images, strict=True)]
    assert all(f != s for f, s in zip(flipped, same, strict=True))
    assert 70 < sum(flipped) < 130


def test_cutout_zeroes_one_clipped_square() -> None:
    images = _images(batch=300)
    result = _augment(images, Augmentation(pad=0, flip=False, cutout=8), seed=2)
    clipped = 0
    for image, out in zip(images, result, strict=True):
        zero = out == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])
        rows = torch.nonzero(zero[0].any(dim=1)).flatten()
        cols = torch.nonzero(zero[0].any(dim=0)).flatten()
        height, width = len(rows), len(cols)
        assert 4 <= height <= 8 and 4 <= width <= 8
        assert int(zero[0].sum()) == height * width  # one solid rectangle
        assert rows.max() - rows.min() + 1 == height and cols.max() - cols.min() + 1 == width
        # The square's centre cy satisfies rows [cy - 4, cy + 4) clipped to 0..31.
        if height < 8:
            clipped += 1
            assert rows.min() == 0 or rows.max() == 31
        assert torch.equal(out[~zero], image[~zero])
    assert clipped > 0  # centres are uniform over all positions, borders included


def test_augmentation_is_seeded() -> None:
    images = _images()
    aug = Augmentation()
    assert torch.equal(_augment(images, aug, seed=5), _augment(images, aug, seed=5))
    assert not torch.equal(_augment(images, aug, seed=5), _augment(images, aug, seed=6))


def test_augmentation_validation() -> None:
    with pytest.raises(NOSError, match="pad"):
        Augmentation(pad=-1)
    with pytest.raises(NOSError, match="cutout"):
        Augmentation(cutout=1.5)  # type: ignore[arg-type]
    with pytest.raises(NOSError, match="smaller than the image side"):
        _augment(_images(side=4), Augmentation(pad=4, cutout=0), seed=0)


def _augment(images: torch.Tensor, aug: Augmentation, seed: int) -> torch.Tensor:
    from proxy.data import augment

    return augment(images, aug, torch.Generator().manual_seed(seed))


# -- batch streams ------------------------------------------------------------------------------


def test_fixed_order_passes_keep_the_partial_batch() -> None:
    stream = batch_indices(10, 4, shuffle=False)
    batches = [next(stream).tolist() for _ in range(6)]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] * 2


def test_cifar_sized_pass_has_352_batches_ending_with_72() -> None:
    assert batches_per_pass(45_000, 128) == 352
    stream = batch_indices(45_000, 128, shuffle=False)
    sizes = [len(next(stream)) for _ in range(353)]
    assert sizes[:351] == [128] * 351 and sizes[351] == 72 and sizes[352] == 128


def test_shuffled_passes_are_seeded_permutations() -> None:
    def passes(seed: int) -> list[list[int]]:
        stream = batch_indices(10, 4, shuffle=True, generator=torch.Generator().manual_seed(seed))
        out = []
        for _ in range(3):
            out.append(sum((next(stream).tolist() for _ in range(3)), []))
        return out

    first = passes(0)
    for order in first:
        assert sorted(order) == list(range(10))
    assert first[0] != first[1]
    assert passes(0) == first and passes(1) != first
    with pytest.raises(NOSError, match="generator"):
        next(batch_indices(10, 4, shuffle=True))


def test_training_batches_pair_images_with_labels() -> None:
    data = load_digits()
    norm = normalization(data, "scale")
    stream = training_batches(data.train, norm, None, batch_size=50, shuffle=True, seed=4)
    labels_of: dict[bytes, set[int]] = {}
    for img, label in zip(data.train.images, data.train.labels, strict=True):
        labels_of.setdefault(bytes(img.numpy().tobytes()), set()).add(int(label))
    for _ in range(3):
        images, labels = next(stream)
        raw = torch.round(images * 16).to(torch.uint8)
        for image, label in zip(raw, labels, strict=True):
            assert int(label) in labels_of[bytes(image.numpy().tobytes())]


def test_training_streams_with_one_seed_are_identical() -> None:
    data = load_digits()
    norm = normalization(data, "standardize")
    aug = Augmentation(pad=1, flip=True, cutout=2)
    streams = [training_batches(data.train, norm, aug, batch_size=64, seed=s) for s in (7, 7, 8)]
    for _ in range(30):  # crosses pass boundaries
        (a, la), (b, lb), (c, _) = (next(s) for s in streams)
        assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)


def test_cifar10_objective_trains_on_fake_files(
    fake_cifar: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    from optuna_nos.space.parse import parse_equation
    from proxy.fitness import measure_fitness
    from proxy.tasks import cifar10

    root, _, _ = fake_cifar
    tiny = {
        "width": 2,
        "total_steps": 20,
        "warmup_steps": 2,
        "final_epochs": 2,
        "final_steps_per_epoch": 2,
        "screen_epochs": 3,
        "screen_steps_per_epoch": 2,
    }
    objective = cifar10(
        data_root=str(root),
        val_size=10,
        verify_checksums=False,
        device="cpu",
        batch_size=8,
        evolution=tiny,
    )
    genome = parse_equation("None ~ (v hat) / (sqrt(|s hat|))")
    result = measure_fitness(genome, objective.task, "evolution")
    # Random labels: whatever the outcome, every screen run trained on 3x32x32 batches.
    assert len(result.screen) in (3, 7)
    assert all(run.train_acc or run.stop for run in result.screen)
    assert result.failed or result.final is not None


def test_batches_prepared_together_equal_batches_made_one_by_one() -> None:
    data = load_digits()
    norm = normalization(data, "scale")
    streams = [
        training_batches(data.train, norm, None, batch_size=100, shuffle=False, prepare=p)
        for p in (1, 4, 64)
    ]
    for _ in range(40):  # 15 batches per pass, the last of 37: crosses passes and chunks
        batches = [next(s) for s in streams]
        for images, labels in batches[1:]:
            assert torch.equal(images, batches[0][0]) and torch.equal(labels, batches[0][1])
    grouped = batch_indices(10, 4, shuffle=False, group=2)
    assert [next(grouped).tolist() for _ in range(3)] == [list(range(8)), [8, 9], list(range(8))]

"""The transfer harness: loaders on fake data in each data set's own on-disk layout, the
EfficientNetV2-S paths, optimizer resolution, the fairness of the protocol, the report files,
the character LM, the CLI and the CPU suite (tiny budgets)."""

from __future__ import annotations

import csv
import math
import pickle
import statistics
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Subset

from optuna_nos.core.errors import NOSError
from transfer.datasets import IMAGENET_MEAN, IMAGENET_STD, load_image_data
from transfer.optimizers import (
    BASELINE_FLOOR,
    PUBLISHED,
    TRANSFER_BASELINES,
    Lion,
    ScheduleSteps,
    file_spec,
    resolve_optimizer,
)
from transfer.report import CSV_COLUMNS, markdown_table, plot_curves, summarize, write_csv
from transfer.runner import (
    Record,
    TransferProtocol,
    TransferRun,
    lr_grid,
    screen_and_train,
    train_run,
)
from transfer.tasks import Task

scipy_io = pytest.importorskip(
    "scipy.io", reason="the Flowers102/StanfordCars .mat files need scipy"
)

RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one thread, above all on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _jpeg(path: Path, size: int = 12) -> np.ndarray:
    pixels = RNG.integers(0, 256, (size, size + 3, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG")
    return pixels


def _reference_tensor(hwc: np.ndarray) -> torch.Tensor:
    """ToTensor + ImageNet Normalize written out: (x / 255 - mean) / std, CHW."""
    x = torch.tensor(hwc, dtype=torch.float32).permute(2, 0, 1) / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


# -- fake data sets, each in its own published layout ---------------------------------------------


def _cifar_batch(path: Path, n: int, label_key: str, classes: int) -> tuple[np.ndarray, list]:
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = RNG.integers(0, classes, n).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(
            {
                "batch_label": "fake",
                label_key: labels,
                "data": data,
                "filenames": [f"{i}.png" for i in range(n)],
            },
            handle,
            protocol=2,
        )
    return data, labels


def make_cifar10(root: Path) -> dict[str, list]:
    base = root / "cifar-10-batches-py"
    train = [_cifar_batch(base / f"data_batch_{i}", 2, "labels", 10) for i in range(1, 6)]
    test = _cifar_batch(base / "test_batch", 3, "labels", 10)
    with (base / "batches.meta").open("wb") as handle:
        pickle.dump(
            {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, handle, protocol=2
        )
    return {"train": train, "test": [test]}


def make_cifar100(root: Path) -> None:
    base = root / "cifar-100-python"
    for name, n in (("train", 4), ("test", 2)):
        _cifar_batch(base / name, n, "fine_labels", 100)
    with (base / "meta").open("wb") as handle:
        pickle.dump(
            {
                "fine_label_names": [f"f{i}" for i in range(100)],
                "coarse_label_names": [f"k{i}" for i in range(20)],
            },
            handle,
            protocol=2,
        )


def make_flowers(root: Path) -> None:
    base = root / "flowers-102"
    labels = np.array([1, 2, 3, 1, 2, 3, 102, 5], dtype=np.uint8)  # 1-based, image i+1
    for image_id in range(1, len(labels) + 1):
        _jpeg(base / "jpg" / f"image_{image_id:05d}.jpg")
    scipy_io.savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    scipy_io.savemat(
        base / "setid.mat",
        {
            "trnid": np.array([[1, 2, 3]]),
            "valid": np.array([[4, 5]]),
            "tstid": np.array([[6, 7, 8]]),
        },
    )


def _annotations(records: list[tuple[str, int]]) -> np.ndarray:
    table = np.zeros(
        len(records),
        dtype=[
            ("bbox_x1", "O"),
            ("bbox_y1", "O"),
            ("bbox_x2", "O"),
            ("bbox_y2", "O"),
            ("class", "O"),
            ("fname", "O"),
        ],
    )
    for i, (fname, label) in enumerate(records):
        table[i] = (0, 0, 5, 5, label, fname)
    return table


def make_cars(root: Path) -> None:
    base = root / "stanford_cars"
    names = np.array([f"Car {i}" for i in range(1, 8)], dtype=object)
    (base / "devkit").mkdir(parents=True)
    scipy_io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": names[None, :]})
    train = [("00001.jpg", 1), ("00002.jpg", 7), ("00003.jpg", 3)]
    test = [("00001.jpg", 2), ("00002.jpg", 7)]
    for name, _ in train:
        _jpeg(base / "cars_train" / name)
    for name, _ in test:
        _jpeg(base / "cars_test" / name)
    scipy_io.savemat(
        base / "devkit" / "cars_train_annos.mat", {"annotations": _annotations(train)[None, :]}
    )
    scipy_io.savemat(
        base / "cars_test_annos_withlabels.mat", {"annotations": _annotations(test)[None, :]}
    )


def make_caltech(root: Path) -> dict[str, int]:
    base = root / "caltech101" / "101_ObjectCategories"
    counts = {"BACKGROUND_Google": 2, "accordion": 5, "airplanes": 1, "zebra": 3}
    for category, n in counts.items():
        for i in range(1, n + 1):
            _jpeg(base / category / f"image_{i:04d}.jpg")
    # Caltech101 holds some grey images: the loader must give 3 channels.
    Image.fromarray(RNG.integers(0, 256, (10, 10), dtype=np.uint8), mode="L").save(
        base / "zebra" / "image_0003.jpg"
    )
    return counts


def make_tinyimagenet(root: Path, official_val: bool) -> None:
    base = root / "tiny-imagenet-200"
    wnids = ["n001", "n002", "n003"]
    for wnid in wnids:
        for i in range(2):
            folder = base / "train" / wnid / "images" if official_val else base / "train" / wnid
            _jpeg(folder / f"{wnid}_{i}.JPEG")
    if official_val:
        lines = []
        for i, wnid in enumerate(["n003", "n001"]):
            _jpeg(base / "val" / "images" / f"val_{i}.JPEG")
            lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t10\t10")
        (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    else:
        _jpeg(base / "val" / "n002" / "v.JPEG")


# -- loaders --------------------------------------------------------------------------------------


def test_cifar10_reads_the_python_pickles_exactly(tmp_path: Path) -> None:
    written = make_cifar10(tmp_path)
    data = load_image_data("cifar10", tmp_path, image_size=32, augment=False)
    assert (len(data.train), len(data.evaluation), data.num_classes) == (10, 3, 10)
    raw, labels = written["train"][2]
    image, label = data.train[4]  # first image of data_batch_3
    hwc = raw[0].reshape(3, 32, 32).transpose(1, 2, 0)
    torch.testing.assert_close(image, _reference_tensor(hwc))
    assert label == labels[0]
    test_raw, test_labels = written["test"][0]
    image, label = data.evaluation[2]
    torch.testing.assert_close(
        image, _reference_tensor(test_raw[2].reshape(3, 32, 32).transpose(1, 2, 0))
    )
    assert label == test_labels[2]


def test_cifar100_and_augmented_shapes(tmp_path: Path) -> None:
    make_cifar100(tmp_path)
    data = load_image_data("cifar100", tmp_path, image_size=16, augment=True)
    assert (len(data.train), len(data.evaluation), data.num_classes) == (4, 2, 100)
    image, label = data.train[0]
    assert image.shape == (3, 16, 16) and 0 <= label < 100


def test_cifar_loader_refuses_pickles_that_would_run_code(tmp_path: Path) -> None:
    make_cifar10(tmp_path)

    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("unpickled!",))

    with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("wb") as handle:
        pickle.dump({"data": Payload(), "labels": [0]}, handle)
    with pytest.raises(NOSError, match="refusing to unpickle builtins.print"):
        load_image_data("cifar10", tmp_path, image_size=32)


def test_flowers102_layout(tmp_path: Path) -> None:
    make_flowers(tmp_path)
    data = load_image_data("flowers102", tmp_path, image_size=32, augment=False)
    assert (len(data.train), len(data.evaluation), data.num_classes) == (5, 3, 102)
    # train = trnid + valid = images 1..5; test = images 6..8 with labels 3, 102, 5 (1-based)
    assert [data.evaluation[i][1] for i in range(3)] == [2, 101, 4]
    assert [data.train[i][1] for i in range(5)] == [0, 1, 2, 0, 1]
    assert data.train[0][0].shape == (3, 32, 32)


def test_stanfordcars_layout(tmp_path: Path) -> None:
    make_cars(tmp_path)
    data = load_image_data("stanfordcars", tmp_path, image_size=32, augment=True)
    assert (len(data.train), len(data.evaluation), data.num_classes) == (3, 2, 7)
    assert [data.train[i][1] for i in range(3)] == [0, 6, 2]
    assert [data.evaluation[i][1] for i in range(2)] == [1, 6]
    assert data.evaluation[0][0].shape == (3, 32, 32)


def test_caltech101_layout_and_fixed_split(tmp_path: Path) -> None:
    counts = make_caltech(tmp_path)
    data = load_image_data("caltech101", tmp_path, image_size=32, augment=False)
    again = load_image_data("caltech101", tmp_path, image_size=32, augment=False)
    real = sum(n for c, n in counts.items() if c != "BACKGROUND_Google")
    assert data.num_classes == 3  # categories minus BACKGROUND_Google
    assert len(data.train) + len(data.evaluation) == real
    # 20 % of each class held out (at least 1 when a class has 2+ images)
    assert len(data.evaluation) == 1 + 0 + 1
    assert isinstance(data.evaluation, Subset) and isinstance(again.evaluation, Subset)
    assert isinstance(data.train, Subset)
    assert data.evaluation.indices == again.evaluation.indices
    assert set(data.train.indices).isdisjoint(data.evaluation.indices)
    grey = [data.train[i][0] for i in range(len(data.train))]
    assert all(image.shape == (3, 32, 32) for image in grey)


@pytest.mark.parametrize("official_val", [True, False])
def test_tinyimagenet_layouts(tmp_path: Path, official_val: bool) -> None:
    make_tinyimagenet(tmp_path, official_val)
    data = load_image_data("tinyimagenet", tmp_path, image_size=32, augment=False)
    assert data.num_classes == 3 and len(data.train) == 6
    labels = [data.evaluation[i][1] for i in range(len(data.evaluation))]
    assert labels == ([2, 0] if official_val else [1])
    assert data.evaluation[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize(
    "task", ["cifar10", "cifar100", "tinyimagenet", "flowers102", "stanfordcars", "caltech101"]
)
def test_missing_data_is_a_clear_error(tmp_path: Path, task: str) -> None:
    with pytest.raises(NOSError, match="nothing is downloaded"):
        load_image_data(task, tmp_path)


def test_unknown_task_and_bad_root(tmp_path: Path) -> None:
    with pytest.raises(NOSError, match="unknown image task 'mnist'"):
        load_image_data("mnist", tmp_path)
    with pytest.raises(NOSError, match="is not a directory"):
        load_image_data("cifar10", tmp_path / "nope")


# -- EfficientNetV2-S -----------------------------------------------------------------------------


def test_efficientnet_trains_on_fake_cifar(tmp_path: Path) -> None:
    from transfer.tasks import image_task

    make_cifar10(tmp_path)
    task = image_task(
        "cifar10", tmp_path, image_size=32, batch_size=2, eval_batch_size=2, max_eval_samples=2
    )
    run = train_run(
        task,
        resolve_optimizer("Opt10"),
        0.1,
        0,
        ScheduleSteps(2, 0, 0),
        phase="final",
        eval_every=2,
        progress=False,
    )
    assert not run.diverged and len(run.train_losses) == 2
    assert 0.0 <= run.last("accuracy") <= 1.0 and math.isfinite(run.last("loss"))


def test_finetuning_without_weights_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transfer.models import efficientnet
    from transfer.tasks import image_task

    make_flowers(tmp_path / "data")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(NOSError, match="efficientnet_v2_s-dd5fe13b.pth.*nothing is downloaded"):
        image_task("flowers102", tmp_path / "data", image_size=32)
    with pytest.raises(NOSError, match="--weights"):
        efficientnet(102, pretrained=True, weights=tmp_path / "absent.pth")


def test_finetuning_loads_the_state_dict_and_replaces_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import efficientnet_v2_s

    from transfer.models import efficientnet

    torch.manual_seed(7)
    source = efficientnet_v2_s().state_dict()
    half = {
        name: (t.to(torch.bfloat16) if t.is_floating_point() else t) for name, t in source.items()
    }
    cache = tmp_path / "hub" / "checkpoints" / "efficientnet_v2_s-dd5fe13b.pth"
    cache.parent.mkdir(parents=True)
    torch.save(half, cache)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for model in (
        efficientnet(5, pretrained=True),
        efficientnet(5, pretrained=True, weights=cache),
    ):
        loaded = model.state_dict()
        assert loaded["classifier.1.weight"].shape == (5, 1280)
        for name in ("features.0.0.weight", "features.7.1.weight"):
            torch.testing.assert_close(loaded[name], half[name].float())
    torch.save({"not": "a state dict"}, tmp_path / "bad.pth")
    with pytest.raises(NOSError, match="must hold a state dict"):
        efficientnet(5, pretrained=True, weights=tmp_path / "bad.pth")


# -- optimizers -----------------------------------------------------------------------------------


def test_every_suite_optimizer_resolves_with_the_right_schedule_owner() -> None:
    for name in PUBLISHED:
        spec = resolve_optimizer(name)
        assert spec.owns_schedule, name
    for name in TRANSFER_BASELINES:
        assert not resolve_optimizer(name).owns_schedule, name


def test_unknown_optimizer_names_its_choices() -> None:
    with pytest.raises(NOSError, match="unknown optimizer 'Opt11'.*Opt10"):
        resolve_optimizer("Opt11")


def test_lion_matches_its_formula() -> None:
    w0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    grads = [
        torch.tensor([0.1, -0.3, 0.0], dtype=torch.float64),
        torch.tensor([-0.2, 0.1, 0.4], dtype=torch.float64),
    ]
    param = nn.Parameter(w0.clone())
    optimizer = Lion([param], lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
    w, m = w0.clone(), torch.zeros(3, dtype=torch.float64)
    for g in grads:
        param.grad = g.clone()
        optimizer.step()
        c = 0.9 * m + 0.1 * g
        w = w - 0.01 * (torch.sign(c) + 0.1 * w)
        m = 0.99 * m + 0.01 * g
    torch.testing.assert_close(param.detach(), w)


SPY_MODULE = textwrap.dedent('''
    import torch

    CALLS = []

    class {name}(torch.optim.Optimizer):
        """Plain SGD that records what the harness gives it."""

        def __init__(self, params, lr=0.01{schedule_args}):
            super().__init__(params, {{"lr": lr}})
            self.call = {{"lr": lr, "steps": [], "lrs": [], "first_weights": None{record}}}
            CALLS.append(self.call)

        @torch.no_grad()
        def step(self, closure=None):
            params = [p for g in self.param_groups for p in g["params"]]
            if self.call["first_weights"] is None:
                self.call["first_weights"] = torch.cat([p.flatten() for p in params]).clone()
                self.call["first_grad"] = torch.cat([p.grad.flatten() for p in params]).clone()
            self.call["lrs"].append(self.param_groups[0]["lr"])
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-group["lr"])
    ''')


def _write_spy(path: Path, name: str, owns_schedule: bool) -> Path:
    schedule_args = ", *, total_steps, warmup_steps=0, hold_steps=0" if owns_schedule else ""
    record = ', "T": total_steps, "W": warmup_steps, "H": hold_steps' if owns_schedule else ""
    path.write_text(SPY_MODULE.format(name=name, schedule_args=schedule_args, record=record))
    return path


def test_file_spec_picks_the_class(tmp_path: Path) -> None:
    one = _write_spy(tmp_path / "one.py", "Exported", owns_schedule=True)
    spec = resolve_optimizer(str(one))
    assert spec.name == "Exported" and spec.owns_schedule
    two = tmp_path / "two.py"
    two.write_text(one.read_text() + "\n\nclass Other(Exported):\n    pass\n")
    with pytest.raises(NOSError, match="defines 2 Optimizer subclasses"):
        file_spec(two)
    assert file_spec(two, "Other").name == "Other"
    with pytest.raises(NOSError, match="no Optimizer subclass 'Missing'"):
        file_spec(two, "Missing")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(NOSError, match="importing .* failed: RuntimeError: boom"):
        file_spec(broken)


def _tiny_task() -> Task:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 5, generator=generator)
    targets = (inputs[:, 0] > 0).long()

    def batches(seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        while True:
            index = torch.randint(0, 64, (8,), generator=g)
            yield inputs[index], targets[index]

    return Task(
        name="tiny",
        build_model=lambda: nn.Linear(5, 2),
        train_batches=batches,
        eval_batches=lambda: [(inputs, targets)],
        steps_per_epoch=8.0,
    )


def _closed_form_schedule(lr: float, total: int, warmup: int, hold: int) -> list[float]:
    """The shared LR schedule written out: linear warmup from 0, hold at lr, cosine to 0."""
    rates = []
    for t in range(total):
        if t < warmup:
            rates.append(lr * t / warmup)
        elif hold > 0 and t <= warmup + hold:
            rates.append(lr)
        else:
            rates.append(
                0.5 * lr * (1 + math.cos(math.pi * (t - warmup - hold) / (total - warmup - hold)))
            )
    return rates


def test_protocol_is_the_same_for_every_optimizer(tmp_path: Path) -> None:
    owner = file_spec(_write_spy(tmp_path / "owner.py", "OwnsSchedule", owns_schedule=True))
    plain = file_spec(_write_spy(tmp_path / "plain.py", "PlainSGD", owns_schedule=False))
    protocol = TransferProtocol(
        steps=30,
        screen_steps=15,
        eval_every=10,
        lr_grid=(1e-3, 1e-2, 1e-1),
        seeds=(3, 4),
        warmup_fraction=0.2,
        hold_fraction=0.2,
    )
    task = _tiny_task()
    owner_runs = screen_and_train(task, owner, protocol, progress=False)
    plain_runs = screen_and_train(task, plain, protocol, progress=False)
    owner_calls = sys.modules[owner.factory.__module__].CALLS  # type: ignore[attr-defined]
    plain_calls = sys.modules[plain.factory.__module__].CALLS  # type: ignore[attr-defined]

    for runs in (owner_runs, plain_runs):
        assert [(r.phase, r.seed) for r in runs] == [("screen", 0)] * 3 + [
            ("final", 3),
            ("final", 4),
        ]
        assert [r.lr for r in runs[:3]] == [1e-3, 1e-2, 1e-1]
        assert len({r.lr for r in runs[3:]}) == 1
    # The schedule-owning optimizer gets T, W, H; the other gets eta_t + 1e-7 through LambdaLR.
    assert [(c["T"], c["W"], c["H"]) for c in owner_calls] == [(15, 3, 3)] * 3 + [(30, 6, 6)] * 2
    for call, run in zip(plain_calls, plain_runs, strict=True):
        total = 15 if run.phase == "screen" else 30
        expected = [
            r + BASELINE_FLOOR
            for r in _closed_form_schedule(run.lr, total, total // 5, total // 5)
        ]
        assert call["lrs"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # Same seed -> same initial weights and same first batch for every optimizer.
    for a, b in zip(owner_calls, plain_calls, strict=True):
        torch.testing.assert_close(a["first_weights"], b["first_weights"])
        torch.testing.assert_close(a["first_grad"], b["first_grad"])
    final_records = [r for r in owner_runs[3].records if r.split == "eval"]
    assert sorted({r.step for r in final_records}) == [10, 20, 30]


def test_lr_grid_has_the_same_size_for_every_optimizer() -> None:
    shared = TransferProtocol(steps=10, screen_steps=5, eval_every=5)
    relative = TransferProtocol(
        steps=10, screen_steps=5, eval_every=5, lr_grid=(0.1, 1.0, 10.0), relative_grid=True
    )
    for name in (*PUBLISHED, *TRANSFER_BASELINES):
        spec = resolve_optimizer(name)
        assert lr_grid(spec, shared) == shared.lr_grid
        grid = lr_grid(spec, relative)
        assert len(grid) == 3 and grid[1] == spec.default_lr
    assert resolve_optimizer("SGD").default_lr == 0.1


NAN_MODULE = textwrap.dedent('''
    import torch

    class NaNAboveOne(torch.optim.SGD):
        """SGD that poisons the weights with NaN when lr > 1."""

        def __init__(self, params, lr=0.1):
            super().__init__(params, lr=lr)
            self.poison = lr > 1.0

        @torch.no_grad()
        def step(self, closure=None):
            super().step(closure)
            if self.poison:
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(float("nan"))
    ''')


def test_screen_picks_the_lowest_training_loss_and_skips_diverged_runs(tmp_path: Path) -> None:
    (tmp_path / "nan_opt.py").write_text(NAN_MODULE)
    spec = file_spec(tmp_path / "nan_opt.py")
    task = _tiny_task()
    protocol = TransferProtocol(
        steps=6, screen_steps=20, eval_every=3, lr_grid=(1e-4, 0.5, 2.0), seeds=(0,)
    )
    runs = screen_and_train(task, spec, protocol, progress=False)
    screens = runs[:3]
    assert [r.diverged for r in screens] == [False, False, True]
    assert len(screens[2].train_losses) == 1  # stopped at the first non-finite loss
    tails = [statistics.fmean(r.train_losses[-5:]) for r in screens[:2]]
    assert runs[3].lr == screens[tails.index(min(tails))].lr == 0.5


# -- report ---------------------------------------------------------------------------------------


def _fake_run(
    task: str, optimizer: str, seed: int, accuracy: float, phase: str = "final"
) -> TransferRun:
    run = TransferRun(task, optimizer, phase, seed, 0.01)
    for step, value in ((5, accuracy / 2), (10, accuracy)):
        run.records.append(Record(step, step / 5, "eval", "accuracy", value))
        run.records.append(Record(step, step / 5, "eval", "loss", 1.0 - value))
    return run


def test_csv_table_and_plot(tmp_path: Path) -> None:
    runs = [_fake_run("digits", "Opt1", s, a) for s, a in enumerate((0.9, 0.8, 0.7))]
    runs += [_fake_run("digits", "Adam", s, a) for s, a in enumerate((0.85, 0.85, 0.88))]
    runs.append(_fake_run("digits", "Adam", 0, 0.1, phase="screen"))
    path = write_csv(runs, tmp_path / "out" / "results.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 7 * 4
    assert {
        (r["optimizer"], r["seed"], r["step"])
        for r in rows
        if r["phase"] == "final" and r["metric"] == "accuracy"
    } == {(o, str(s), str(st)) for o in ("Opt1", "Adam") for s in range(3) for st in (5, 10)}
    summaries = {s.optimizer: s for s in summarize(runs)}
    assert summaries["Opt1"].mean == pytest.approx(0.8)
    assert summaries["Opt1"].std == pytest.approx(statistics.stdev([0.9, 0.8, 0.7]))
    table = markdown_table(list(summaries.values()), baselines=["Adam"])
    lines = table.splitlines()
    adam_mean = (0.85 + 0.85 + 0.88) / 3
    assert lines[4].startswith(f"| Adam* | 0.01 | {adam_mean:.4f} ± ")
    assert lines[5].startswith("| Opt1 | 0.01 | 0.8000 ± 0.1000 | 0.7000–0.9000 |")
    assert f"| {0.8 - adam_mean:+.4f} |" in lines[5]
    png = plot_curves(runs, tmp_path / "curves.png", baselines=["Adam"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- character LM ---------------------------------------------------------------------------------


def test_stdlib_corpus_is_deterministic_public_source() -> None:
    from transfer.charlm import encode, stdlib_corpus, stdlib_files

    files = stdlib_files()
    assert files == sorted(files) and not any(f.name.startswith("_") for f in files)
    text = stdlib_corpus(20_000)
    assert len(text) == 20_000 and text == stdlib_corpus(20_000)
    assert text.startswith(files[0].read_text(encoding="utf-8", errors="replace")[:1000])
    codes = encode("aé\n")
    assert codes.tolist() == [97, 0, 10]


def test_charlm_learns_in_a_few_steps() -> None:
    from transfer.charlm import charlm_task

    for arch in ("transformer", "gru"):
        task = charlm_task(
            max_chars=8_000, seq_len=16, batch_size=8, arch=arch, width=32, max_eval_windows=16
        )
        run = train_run(
            task,
            resolve_optimizer("Adam"),
            2e-2,
            0,
            ScheduleSteps(20, 2, 0),
            phase="final",
            eval_every=20,
            progress=False,
        )
        assert run.last("loss") < math.log(128) - 1.0
        assert run.last("bits_per_char") == pytest.approx(run.last("loss") / math.log(2))


# -- CLI and suite --------------------------------------------------------------------------------


def test_cli_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transfer.__main__ import main

    code = main(
        [
            "--optimizer",
            "Opt7",
            "--baselines",
            "Adam",
            "--task",
            "digits",
            "--steps",
            "6",
            "--screen-steps",
            "3",
            "--eval-every",
            "3",
            "--lr-grid",
            "0.01,0.1",
            "--seeds",
            "0,1",
            "--output",
            str(tmp_path),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| Opt7 | " in out and "| Adam* | " in out
    assert out.count("(grid m") == 2  # a 2-point grid: every choice lies on its edge
    assert {p.name for p in tmp_path.iterdir()} == {"results.csv", "results.md", "curves.png"}
    assert main(["--optimizer", "Nope", "--task", "digits", "--output", str(tmp_path)]) == 2
    assert "error: unknown optimizer 'Nope'" in capsys.readouterr().err


def test_cli_evaluates_an_equation_and_a_trial(tmp_path: Path) -> None:
    import optuna

    from optuna_nos import parse_equation
    from transfer.__main__ import main

    equation = "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))"
    storage = f"sqlite:///{tmp_path / 'nos.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.set_user_attr("genome", parse_equation(equation).to_json())
    study.tell(trial, 0.5)
    code = main(
        [
            "--optimizer",
            equation,
            "--storage",
            storage,
            "--study",
            "s",
            "--trial",
            "0",
            "--baselines",
            "",
            "--task",
            "digits",
            "--steps",
            "4",
            "--screen-steps",
            "2",
            "--eval-every",
            "2",
            "--lr-grid",
            "1.0",
            "--seeds",
            "0",
            "--output",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert f"| {equation} |" in table and "| s#0 |" in table


def test_suite_writes_its_table(tmp_path: Path) -> None:
    from transfer.suite import run_suite, suite_optimizers

    assert suite_optimizers()[:15] == [
        *(f"Opt{k}" for k in range(1, 11)),
        *(f"A{k}" for k in range(1, 6)),
    ]
    assert suite_optimizers()[15:] == list(TRANSFER_BASELINES)
    # The character LM has its own test above; here the suite runs on digits only.
    tiny = {"digits": TransferProtocol(steps=4, screen_steps=2, eval_every=2, lr_grid=(0.1, 1.0))}
    lines: list[str] = []
    result = run_suite(
        tmp_path,
        optimizers=["A1", "SGD"],
        tasks=["digits"],
        seeds=(0, 1, 2),
        jobs=1,
        protocols=tiny,
        progress=False,
        log=lines.append,
    )
    assert [(r.optimizer, r.phase) for r in result.results] == [
        (name, phase) for name in ("A1", "SGD") for phase in ("screen",) * 2 + ("final",) * 3
    ]
    assert result.table_path.read_text().endswith(result.table)
    assert "**digits** (3 seeds" in result.table and "| SGD* |" in result.table
    assert lines and result.plot_path.is_file() and result.csv_path.is_file()


def test_cli_trains_efficientnet_on_an_image_task(tmp_path: Path) -> None:
    from transfer.__main__ import main

    make_cifar10(tmp_path / "data")
    code = main(
        [
            "--optimizer",
            "Adam",
            "--baselines",
            "",
            "--task",
            "cifar10",
            "--data-root",
            str(tmp_path / "data"),
            "--image-size",
            "32",
            "--batch-size",
            "2",
            "--eval-batch-size",
            "2",
            "--max-eval-samples",
            "2",
            "--num-workers",
            "0",
            "--steps",
            "2",
            "--screen-steps",
            "1",
            "--eval-every",
            "2",
            "--lr-grid",
            "0.001",
            "--seeds",
            "0",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 0
    with (tmp_path / "out" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    finals = {(r["split"], r["metric"]) for r in rows if r["phase"] == "final"}
    assert finals == {
        ("train", "loss"),
        ("train", "accuracy"),
        ("eval", "loss"),
        ("eval", "accuracy"),
    }


def test_an_exported_module_runs_like_its_genome(tmp_path: Path) -> None:
    from optuna_nos import parse_equation
    from optuna_nos.optim.export import export_source
    from transfer.optimizers import equation_spec

    equation = "Nest ~ bessel_i1e(arctan([(a13)*(a2)][g]))"
    (tmp_path / "exported.py").write_text(export_source(parse_equation(equation)))
    exported = resolve_optimizer(str(tmp_path / "exported.py"))
    assert exported.name == "EvolvedOptimizer" and exported.owns_schedule
    steps = ScheduleSteps(12, 2, 2)
    runs = [
        train_run(
            _tiny_task(), spec, 0.5, 0, steps, phase="final", eval_every=None, progress=False
        )
        for spec in (exported, equation_spec(equation))
    ]
    assert runs[0].train_losses == pytest.approx(runs[1].train_losses, rel=1e-5)

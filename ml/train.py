"""Training (paper Table 4: Adam, lr 1e-4, batch 32, cross-entropy on the main and both auxiliary heads).

``python -m ml.train --data ../shared/datasets/mpox-skin --out ml/weights/fast_mpoxnet.pt`` trains the product
model on every image of the four paper classes. ``--resume`` continues an interrupted run from ``--out``'s
``.partial`` file. The cross-validation (``ml.crossval``) calls ``train_model`` for every fold and model.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler
from tqdm import tqdm

from ml.augment import PaperAugment, normalise
from ml.checkpoint import PAPER_CLASSES, Checkpoint, Preprocessing, code_version
from ml.data import ImageCache, ImageRecord, load_dataset
from ml.model import BACKBONE_PREFIXES, FastMpoxNet, build_model, load_backbone_weights

logger = logging.getLogger(__name__)

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "mpox-skin"
DEFAULT_BACKBONE = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "weights" / "shufflenetv2_x0.5_backbone_tv.pth"
)


@dataclass(frozen=True)
class TrainSettings:
    arch: str = "fast_mpoxnet"
    pretrained: bool = True
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-4
    aux_weight: float = 1.0
    # None: one learning rate for everything (the paper). Otherwise the layers that start random (conv5, ABLGFM,
    # heads) learn at this rate while the pretrained stem and stages 2-4 keep ``learning_rate``.
    head_learning_rate: float | None = None
    augment_k: int = 6
    # Outlier exposure (Hendrycks et al., ICLR 2019), not in the paper: photos of these out-of-distribution
    # folders join training with a loss that pushes the main head towards the uniform distribution, so that the
    # inconclusive rule can catch diseases outside the model's classes. Each epoch draws ``outlier_share`` times
    # the number of class photos from them (a fixed extra cost whatever the folders' size).
    outlier_folders: tuple[str, ...] = ()
    outlier_weight: float = 0.5
    outlier_share: float = 0.25
    # Recompute the BatchNorm running statistics over the training photos after the last epoch (precise BN).
    # torchvision's MobileNetV3 averages them with momentum 0.01, tuned for ImageNet's thousands of steps per
    # epoch; with ~26 steps an epoch here they lag the weights so far that eval mode gives every photo one label.
    recalibrate_bn: bool = False
    seed: int = 0
    workers: int = 1
    backbone_weights: str = str(DEFAULT_BACKBONE)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("epochs, batch size and learning rate must be positive")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ValueError("the head learning rate must be positive")
        if self.aux_weight < 0:
            raise ValueError("the auxiliary loss weight cannot be negative")
        if self.outlier_weight < 0 or not 0 < self.outlier_share <= 1:
            raise ValueError("the outlier loss weight cannot be negative and the outlier share must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["optimizer"] = "Adam"
        data["loss"] = "cross-entropy (main + auxiliary heads)" if self.arch == "fast_mpoxnet" else "cross-entropy"
        data["outlier_folders"] = list(self.outlier_folders)
        if self.outlier_folders:
            data["loss"] += f" + {self.outlier_weight} x outlier exposure (main head towards uniform)"
        return data


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


OUTLIER = -1  # the target of an outlier-exposure photo


class AugmentedImages(Dataset[tuple[Tensor, int]]):
    def __init__(
        self, records: Sequence[ImageRecord], labels: Sequence[int], cache: ImageCache, augment: PaperAugment, seed: int
    ) -> None:
        self.records, self.labels, self.cache, self.augment = list(records), list(labels), cache, augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        # One RNG per (seed, epoch, image): augmentation is reproducible whatever the worker count or resume point.
        rng = random.Random(hash((self.seed, self.epoch, index)))
        image = self.cache.train_images[self.records[index].path]
        return self.augment(image, rng), self.labels[index]


def epoch_indices(n_known: int, n_outliers: int, share: float, *, seed: int, epoch: int) -> list[int]:
    """Every class photo, plus ``share`` x their number of outlier photos drawn afresh each epoch (the outliers sit
    after the class photos in the dataset)."""
    if not n_outliers:
        return list(range(n_known))
    draw = min(n_outliers, max(1, round(share * n_known)))
    rng = random.Random(f"outliers:{seed}:{epoch}")  # a str seed: hash() of a str differs between processes
    return [*range(n_known), *(n_known + i for i in rng.sample(range(n_outliers), draw))]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_model(settings: TrainSettings, num_classes: int) -> nn.Module:
    model = build_model(settings.arch, num_classes=num_classes, aux_heads=True)
    if settings.pretrained:
        if settings.arch not in ("fast_mpoxnet", "shufflenet_v2_x0_5"):
            raise ValueError(f"no offline ImageNet weights exist for {settings.arch}; train it from scratch")
        load_backbone_weights(model, settings.backbone_weights)
    return model


def eval_tensor(records: Sequence[ImageRecord], cache: ImageCache, pre: Preprocessing) -> Tensor:
    return torch.stack([normalise(cache.eval_arrays[r.path], mean=pre.mean, std=pre.std) for r in records])


@torch.inference_mode()
def predict_probabilities(
    model: nn.Module, inputs: Tensor, *, batch_size: int = 64, device: torch.device | None = None
) -> np.ndarray:
    """Softmax probabilities (N x classes) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    chunks = [
        torch.softmax(model(inputs[i : i + batch_size].to(device)), dim=1).cpu()
        for i in range(0, len(inputs), batch_size)
    ]
    model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, 0), dtype=np.float32)


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam; with ``head_learning_rate`` the backbone's parameters and the rest form two groups."""
    if settings.head_learning_rate is None:
        return torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    named = list(model.named_parameters())
    backbone = [p for name, p in named if name.startswith(BACKBONE_PREFIXES)]
    rest = [p for name, p in named if not name.startswith(BACKBONE_PREFIXES)]
    return torch.optim.Adam(
        [{"params": backbone, "lr": settings.learning_rate}, {"params": rest, "lr": settings.head_learning_rate}]
    )


def train_model(
    settings: TrainSettings,
    *,
    records: Sequence[ImageRecord],
    labels: Sequence[int],
    num_classes: int,
    cache: ImageCache,
    preprocessing: Preprocessing,
    val_records: Sequence[ImageRecord] = (),
    val_labels: Sequence[int] = (),
    outliers: Sequence[ImageRecord] = (),
    device: torch.device | None = None,
    resume_path: Path | None = None,
    description: str = "train",
    progress: bool = True,
) -> TrainResult:
    """Train one model. With ``resume_path`` the state is saved there after every epoch and picked up again.
    ``outliers`` are out-of-distribution photos for outlier exposure (``settings.outlier_folders``)."""
    if outliers and not settings.outlier_folders:
        raise ValueError("outlier photos were given but the settings name no outlier folders")
    device = device or pick_device()
    seed_everything(settings.seed)
    model = make_model(settings, num_classes).to(device)
    optimizer = make_optimizer(model, settings)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if resume_path is not None and resume_path.is_file():
        state = torch.load(resume_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch = state["history"], state["epoch"]
        logger.info("resuming %s at epoch %d", description, start_epoch)

    augment = PaperAugment(
        input_size=preprocessing.input_size, mean=preprocessing.mean, std=preprocessing.std, k=settings.augment_k
    )
    images = AugmentedImages(
        [*records, *outliers], [*labels, *([OUTLIER] * len(outliers))], cache, augment, settings.seed
    )
    val_inputs = eval_tensor(val_records, cache, preprocessing) if val_records else None
    criterion = nn.CrossEntropyLoss()
    started = time.perf_counter()
    bar = tqdm(
        range(start_epoch, settings.epochs),
        desc=description,
        initial=start_epoch,
        total=settings.epochs,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for epoch in bar:
        images.epoch = epoch
        indices = epoch_indices(len(records), len(outliers), settings.outlier_share, seed=settings.seed, epoch=epoch)
        # One generator for the order and the workers' seeds (torchvision's random crop draws from torch's RNG),
        # as shuffle=True used it: without outliers an epoch is what it was before outlier exposure existed.
        generator = torch.Generator().manual_seed(settings.seed * 1000 + epoch)
        loader = DataLoader(
            images,
            batch_size=settings.batch_size,
            sampler=SubsetRandomSampler(indices, generator=generator),
            drop_last=len(indices) > settings.batch_size,
            num_workers=settings.workers,
            generator=generator,
        )
        model.train()
        total, seen = 0.0, 0
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            loss = _loss(model, inputs, targets, criterion, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(targets)
            seen += len(targets)
        row = {"epoch": epoch + 1, "train_loss": total / max(seen, 1)}
        if val_inputs is not None:
            probs = predict_probabilities(model, val_inputs, device=device)
            row["val_accuracy"] = float((probs.argmax(1) == np.asarray(val_labels)).mean())
        history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if resume_path is not None:
            resume_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = resume_path.with_name(resume_path.name + ".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "epoch": epoch + 1,
                },
                tmp,
            )
            tmp.replace(resume_path)
    if settings.recalibrate_bn:
        recalibrate_batch_norm(model, eval_tensor(records, cache, preprocessing), device=device)
    model.eval()
    return TrainResult(model=model, history=history, seconds=time.perf_counter() - started)


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, inputs: Tensor, *, device: torch.device, batch_size: int = 32) -> None:
    """Replace every BatchNorm layer's running mean and variance by their plain average over ``inputs`` (the
    training photos' evaluation crops), leaving the weights alone."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over all batches
    model.train()
    for i in range(0, len(inputs), batch_size):
        model(inputs[i : i + batch_size].to(device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.eval()


def _loss(model: nn.Module, inputs: Tensor, targets: Tensor, criterion: nn.Module, settings: TrainSettings) -> Tensor:
    if isinstance(model, FastMpoxNet):
        out = model.forward_train(inputs)
        logits, aux_logits = out.logits, out.aux_logits
    else:
        logits, aux_logits = model(inputs), ()
    outlier = targets == OUTLIER
    if not outlier.any():
        loss = criterion(logits, targets)
        for aux in aux_logits:
            loss = loss + settings.aux_weight * criterion(aux, targets)
        return loss
    known = ~outlier
    loss = logits.new_zeros(())
    if known.any():
        loss = criterion(logits[known], targets[known])
        for aux in aux_logits:
            loss = loss + settings.aux_weight * criterion(aux[known], targets[known])
    # Cross-entropy from the uniform distribution: the mean over classes of -log softmax.
    uniform_ce = -torch.log_softmax(logits[outlier], dim=1).mean(dim=1).mean()
    return loss + settings.outlier_weight * uniform_ce


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder-per-class tree (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("ml/weights/fast_mpoxnet.pt"))
    parser.add_argument("--classes", default=",".join(PAPER_CLASSES), help="comma-separated class folders")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", action="store_true", help="random initialisation instead of the ImageNet backbone")
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    parser.add_argument("--device", default="auto", help="auto (a GPU if present), cpu or cuda")
    parser.add_argument("--workers", type=int, default=1, help="augmentation worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--resume", action="store_true", help="continue from OUT.partial if it exists")
    parser.add_argument(
        "--outlier-exposure",
        default="",
        metavar="FOLDERS",
        help="comma-separated out-of-distribution folders of --data to train as outliers (e.g. hfmd,other,smallpox)",
    )
    parser.add_argument(
        "--crossval",
        type=Path,
        default=None,
        help="crossval.json whose metrics and inconclusive threshold go into the checkpoint",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if args.threads:
        torch.set_num_threads(args.threads)
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    outlier_folders = tuple(f.strip() for f in args.outlier_exposure.split(",") if f.strip())
    try:
        dataset = load_dataset(args.data, class_names=classes)
        unknown = [f for f in outlier_folders if f not in dataset.ood]
        if unknown:
            raise ValueError(
                f"--outlier-exposure: {', '.join(unknown)} is not an out-of-distribution folder of {args.data} "
                f"(those are: {', '.join(dataset.ood) or 'none'})"
            )
        settings = TrainSettings(
            pretrained=not args.scratch,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            seed=args.seed,
            workers=args.workers,
            backbone_weights=str(args.backbone),
            outlier_folders=outlier_folders,
        )
        if settings.pretrained and not args.backbone.is_file():
            raise FileNotFoundError(f"backbone weights not found at {args.backbone} (or pass --scratch)")
        if args.crossval:  # checked now rather than after hours of training
            from ml.crossval import read_crossval, variant_of

            read_crossval(args.crossval, variant_of(settings.arch, settings.to_dict()))
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    preprocessing = Preprocessing()
    # Photos filed under a model class as well (same manifest group) are never trained as outliers.
    known_groups = set(dataset.groups)
    outliers = [r for f in outlier_folders for r in dataset.ood[f] if r.group not in known_groups]
    cache = ImageCache([*dataset.records, *outliers])
    partial = args.out.with_name(args.out.name + ".partial")
    if not args.resume and partial.exists():
        partial.unlink()
    result = train_model(
        settings,
        records=dataset.records,
        labels=list(dataset.labels),
        num_classes=len(classes),
        cache=cache,
        preprocessing=preprocessing,
        outliers=outliers,
        device=pick_device(args.device),
        resume_path=partial,
    )
    checkpoint = Checkpoint(
        arch=settings.arch,
        class_names=classes,
        state_dict={k: v.cpu() for k, v in result.model.state_dict().items() if not k.startswith("aux_heads.")},
        config={**result.model.config.to_dict(), "aux_heads": False} if isinstance(result.model, FastMpoxNet) else {},
        preprocessing=preprocessing,
        manifest_sha256=dataset.manifest_sha256,
        training={
            **settings.to_dict(),
            "images": len(dataset.records),
            "outlier_images": len(outliers),
            "data": str(args.data),
            "seconds": round(result.seconds, 1),
            "history": result.history,
        },
        code_version=code_version(),
        epoch=settings.epochs,
    )
    if args.crossval:
        from ml.crossval import apply_crossval_summary

        checkpoint = apply_crossval_summary(checkpoint, args.crossval)
    checkpoint.save(args.out)
    if partial.exists():
        partial.unlink()
    logger.info("saved %s (%d images, %.0f s)", args.out, len(dataset.records), result.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

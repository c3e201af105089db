"""Datasets (timm `create_dataset`), the model's data config (`resolve_data_config`), transforms, samplers
and loaders (plain, or timm's prefetcher / multi-epoch loader as timm's train.py builds them)."""
from __future__ import annotations

import importlib.util
import itertools
import pathlib

from timm.data import FastCollateMixup, Mixup, create_dataset, create_transform, resolve_data_config
from timm.data.distributed_sampler import RepeatAugSampler
from timm.data.loader import MultiEpochsDataLoader, PrefetchLoader, fast_collate
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler

from classification.config import ConfigError
from classification.image_files import CheckedImages
from classification.utils import barrier

_STREAMING = ("hfids/", "tfds/", "wds/")


# ---------------------------------------------------------------------------------------------- datasets
class DataError(ValueError):
    """A dataset that cannot be trained or evaluated on as it is; the message names the folder or file."""


def dataset_root(args, rank: int, need_train: bool = True) -> pathlib.Path:
    """The embedded dataset (generated once, by rank 0 first) without data_path; else data_path, checked."""
    if args.data_path is None:
        from classification.embedded_data import ensure_embedded_dataset

        if rank == 0:
            root = ensure_embedded_dataset()
        barrier()
        if rank != 0:
            root = ensure_embedded_dataset()
        return pathlib.Path(root)
    if args.dataset.startswith(_STREAMING):
        raise ConfigError(f"--dataset {args.dataset}: streaming datasets are not supported (exact distributed "
                          f"evaluation and resumable sampling need a map-style dataset: a folder, tar or hfds/)")
    root = pathlib.Path(args.data_path)
    if args.dataset.startswith("hfds/"):
        return root  # the Hugging Face cache folder (created by `datasets` if missing)
    if not root.is_dir():
        raise FileNotFoundError(f"--data-path {root}: no such directory (expected a folder with "
                                f"{args.train_split}/ and {args.val_split}/ inside, as folders or tar files)")
    for split in (args.train_split, args.val_split) if need_train else (args.val_split,):
        if not (root / split).exists():
            raise FileNotFoundError(f"--data-path {root}: missing the {split}/ folder (expected "
                                    f"{root}/{split}/<class>/*.JPEG, or a tar file {root}/{split})")
    return root


def build_datasets(args, root, need_train: bool):
    """(train or None, val) without transforms; their class maps must agree."""
    name = args.dataset if args.data_path is not None else ""
    if name.startswith("hfds/") and importlib.util.find_spec("datasets") is None:
        raise ConfigError(f"--dataset {name} needs the Hugging Face `datasets` package (pip install datasets)")
    kwargs = dict(root=str(root), class_map=args.class_map)
    if args.class_map and not pathlib.Path(args.class_map).is_file():
        raise FileNotFoundError(f"--class-map {args.class_map}: file not found")
    val = _create(name, root, args.val_split, False, kwargs)
    train = _create(name, root, args.train_split, True, kwargs) if need_train else None
    if train is not None and class_to_idx(train) != class_to_idx(val):
        raise DataError(f"{root}: {args.train_split} and {args.val_split} have different classes "
                        f"({len(class_to_idx(train))} vs {len(class_to_idx(val))})")
    classes = class_to_idx(val)
    if args.num_classes is None and len(classes) == 1:
        raise DataError(f"{root / args.val_split}: {len(classes)} class ({sorted(classes)}): a classifier needs at "
                        f"least 2, one subfolder per class ({args.val_split}/<class>/<image>)")
    return train, val


def _create(name: str, root, split: str, is_training: bool, kwargs: dict):
    """timm's create_dataset; an empty or unreadable split is a DataError naming it."""
    try:
        dataset = create_dataset(name, split=split, is_training=is_training, **kwargs)
    except RuntimeError as err:  # timm: "Found 0 images in subfolders of ..."
        raise DataError(f"{pathlib.Path(root) / split}: no usable images: {err}") from err
    if len(dataset) == 0:
        raise DataError(f"{pathlib.Path(root) / split}: no images")
    return dataset


def class_to_idx(dataset) -> dict:
    """{class name: label} of a timm dataset (folder and hfds readers: class_to_idx; tar: class_name_to_idx)."""
    reader = getattr(dataset, "reader", dataset)
    return dict(getattr(reader, "class_to_idx", None) or getattr(reader, "class_name_to_idx", None) or {})


def num_classes_of(args, dataset) -> int:
    n = args.num_classes or len(class_to_idx(dataset))
    if not n:
        raise ConfigError(f"cannot tell the number of classes of {args.dataset or 'the dataset'}: set --num-classes")
    return n


# ---------------------------------------------------------------------------------------------- transforms
def data_config(args, model) -> dict:
    """timm's resolve_data_config: mean, std, crop_pct and eval interpolation from the model's pretrained_cfg
    unless set; the input size is always the config's."""
    overrides = {"img_size": args.input_size, "mean": args.mean, "std": args.std, "crop_pct": args.crop_pct,
                 "interpolation": args.eval_interpolation}
    cfg = resolve_data_config({k: v for k, v in overrides.items() if v is not None}, model=model)
    cfg["input_size"] = (3, args.input_size, args.input_size)
    return cfg


def set_transforms(args, cfg: dict, train, val):
    common = dict(mean=cfg["mean"], std=cfg["std"], use_prefetcher=args.prefetcher)
    val.transform = create_transform(cfg["input_size"], is_training=False, interpolation=cfg["interpolation"],
                                     crop_pct=cfg["crop_pct"], **common)
    if train is not None:
        train.transform = create_transform(
            cfg["input_size"], is_training=True, no_aug=args.no_aug, scale=tuple(args.scale),
            color_jitter=args.color_jitter, auto_augment=args.aa, interpolation=args.train_interpolation,
            re_prob=args.reprob, re_mode=args.remode, re_count=args.recount, **common)


# ---------------------------------------------------------------------------------------------- loaders
def aug_repeats(args) -> int:
    return args.aug_repeats or (3 if args.repeated_aug else 0)


def train_sampler(args, dataset, rank: int, world: int):
    """RepeatAugSampler (DeiT's RASampler) or a seeded DistributedSampler, also for one process: the sample
    order then depends only on the seed, so 2 processes x batch B see what 1 process x 2B sees (tested).
    (timm's create_loader uses a plain random sampler without a process group.)"""
    if aug_repeats(args):
        return RepeatAugSampler(dataset, num_replicas=world, rank=rank, shuffle=True, num_repeats=aug_repeats(args))
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)


def eval_sampler(args, dataset, rank: int, world: int):
    """Exact split over processes without padding (timm's OrderedDistributedSampler pads with duplicates)."""
    if args.dist_eval and world > 1:
        return list(range(rank, len(dataset), world))
    return SequentialSampler(dataset)


def mixup_args(args, num_classes: int) -> dict | None:
    if not (args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None):
        return None
    return dict(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                label_smoothing=args.smoothing, num_classes=num_classes)


class SkippableSampler(Sampler):
    """A training sampler whose next pass can start after the samples a resumed epoch has already done
    (`skip_next(n)`); its length stays the whole epoch's, as the loop counts batches from the epoch's start."""

    def __init__(self, inner):
        self.inner, self._skip = inner, 0

    def set_epoch(self, epoch: int):
        self.inner.set_epoch(epoch)

    def skip_next(self, n: int):
        self._skip = n

    def __iter__(self):
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self):
        return len(self.inner)


def _loader(args, dataset, sampler, batch_size, collate_fn, drop_last, multi_epoch=False):
    loader_class = MultiEpochsDataLoader if multi_epoch else DataLoader
    return loader_class(dataset, sampler=sampler, batch_size=batch_size, num_workers=args.num_workers,
                        pin_memory=args.pin_mem, drop_last=drop_last, collate_fn=collate_fn,
                        persistent_workers=args.num_workers > 0)


def build_loaders(args, cfg: dict, train, val, rank: int, world: int, device, num_classes: int):
    """({'train': ..., 'val': ...}, mixup_fn). With the prefetcher, batches arrive normalised on `device` and
    mixup happens in the collate (timm's FastCollateMixup), so mixup_fn is None."""
    mix = mixup_args(args, num_classes)
    mixup_fn = Mixup(**mix) if mix and not args.prefetcher else None
    collate = (FastCollateMixup(**mix) if mix else fast_collate) if args.prefetcher else None
    loaders = {}
    if train is not None:
        sampler = SkippableSampler(train_sampler(args, train, rank, world))
        checked = CheckedImages(train, args.bad_images, train=True, split=args.train_split)
        loaders["train"] = _loader(args, checked, sampler, args.batch_size, collate, drop_last=True,
                                   multi_epoch=args.use_multi_epochs_loader)
        if len(loaders["train"]) == 0:
            raise DataError(f"training set of {len(train)} images gives no full batch of {args.batch_size} "
                            f"per process x {world} processes; lower --batch-size")
    checked = CheckedImages(val, args.bad_images, train=False, split=args.val_split)
    loaders["val"] = _loader(args, checked, eval_sampler(args, val, rank, world), args.eval_batch_size or args.batch_size,
                             fast_collate if args.prefetcher else None, drop_last=False)
    if args.prefetcher:
        re = dict(re_prob=args.reprob if not args.no_aug else 0.0, re_mode=args.remode, re_count=args.recount)
        for split in loaders:
            extra = re if split == "train" else {}
            loaders[split] = PrefetchLoader(loaders[split], mean=cfg["mean"], std=cfg["std"], device=device, **extra)
    return loaders, mixup_fn


def paper_updates_per_epoch(args, world: int, num_images: int) -> int:
    """Optimizer updates per epoch of a run on `world` processes over `num_images` training images, from the
    trainer's own sampler (no data is read): what the schedule of that run is built with."""
    batches = len(train_sampler(args, range(num_images), 0, world)) // args.batch_size
    return -(-batches // args.accum_iter)

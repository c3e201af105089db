"""Unreadable image files inside a dataset (--bad-images skip|stop): named, counted, skipped or fatal.

timm's ImageDataset replaces an image it cannot open by the next one with only a logging warning (and a
broken PNG that raises SyntaxError crashes it), so one bad JPEG either silently changes the data, also in
evaluation, or ends a 300-epoch run. `CheckedImages` decodes as timm does and, on a decode error,
- with `stop`, raises BadImageError naming the file;
- with `skip`, prints the file once per process and marks it in a shared flag array (visible across loader
  workers), then in training takes the next readable image in its place (batch shapes and mixup stay as
  they are), in evaluation returns a stand-in with target -1 that `engine.evaluate` leaves out of the counts.
`unreadable(device)` gathers the marked files of all processes for the per-epoch count.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import Dataset

from classification.utils import is_dist

MAX_IN_A_ROW = 50  # unreadable files in a row that mean "this is not an image folder", not "a bad file"
UNREADABLE_TARGET = -1


class BadImageError(RuntimeError):
    """An image file of the dataset cannot be decoded (or too many in a row); the message names it."""


class CheckedImages(Dataset):
    """A timm ImageDataset (folder, tar or hfds reader) whose unreadable files are handled by `policy`."""

    def __init__(self, dataset, policy: str, train: bool, split: str):
        self.dataset, self.policy, self.train, self.split = dataset, policy, train, split
        self.flags = torch.zeros(len(dataset), dtype=torch.uint8).share_memory_()
        self._warned: set[int] = set()
        self._stand_in = None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        n = len(self.dataset)
        for k in range(min(MAX_IN_A_ROW, n)):
            j = (index + k) % n
            try:
                img, target = self._decode(j)
            except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
                self._unreadable(j, err)
                if not self.train:
                    return self._placeholder()
                continue
            return self._transform(img, target)
        raise BadImageError(f"{self.split}: {min(MAX_IN_A_ROW, n)} unreadable image files in a row from "
                            f"{self.name(index)}: is this an image folder?")

    def name(self, index: int) -> str:
        try:
            return str(self.dataset.filename(index, absolute=True))
        except Exception:  # a reader without file names
            return f"sample {index}"

    def _decode(self, index: int):
        """timm's ImageDataset.__getitem__ up to the decoded image, without its silent retry."""
        f, target, *_ = self.dataset.reader[index]
        try:
            img = Image.open(f)
            mode = self.dataset.input_img_mode
            img = img.convert(mode) if mode else img  # convert decodes the pixels: decode errors surface here
            img.load()
        finally:
            if hasattr(f, "close"):  # the folder reader hands over an open file
                f.close()
        return img, target

    def _transform(self, img, target):
        if self.dataset.transform is not None:
            img = self.dataset.transform(img)
        if target is None:
            target = -1
        elif self.dataset.target_transform is not None:
            target = self.dataset.target_transform(target)
        return img, target

    def _unreadable(self, index: int, err: Exception):
        path = self.name(index)
        if self.policy == "stop":
            raise BadImageError(f"unreadable image file {path} in {self.split} ({type(err).__name__}: {err}); "
                                f"--bad-images skip skips such files with a warning") from err
        self.flags[index] = 1
        if index not in self._warned:
            self._warned.add(index)
            what = "the next readable image takes its place" if self.train else "left out of the evaluation"
            print(f"warning: unreadable image file {path} in {self.split} ({type(err).__name__}: {err}); "
                  f"skipped: {what} (--bad-images stop to stop instead)", flush=True)

    def _placeholder(self):
        """A black image through the evaluation transform (its tensor type and size), target -1."""
        if self._stand_in is None:
            self._stand_in = self._transform(Image.new("RGB", (64, 64)), None)[0]
        return self._stand_in, UNREADABLE_TARGET

    def unreadable(self, device) -> list[str]:
        """The files marked unreadable by any process so far (a collective when distributed)."""
        flags = self.flags
        if is_dist():
            count = torch.tensor([float(flags.sum())], device=device)
            dist.all_reduce(count)
            if count.item() == 0:
                return []
            flags = flags.to(device=device, dtype=torch.int32)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return [self.name(i) for i in flags.nonzero().flatten().tolist()]

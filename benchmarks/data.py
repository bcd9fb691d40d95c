"""Data for the VAE problems, read from disk only (nothing is downloaded).

- ``digits``: scikit-learn's handwritten digits (1797 images of 8x8, shipped
  inside the scikit-learn package), scaled to [0, 1], split 1497 / 300 by a
  fixed permutation.
- ``mnist``, ``fashion-mnist``: the standard IDX files in a directory the user names
  (``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte``, gzip or not; Fashion-MNIST's
  have the same names), scaled to [0, 1].
- ``omniglot``: ``chardata.mat`` of Burda, Grosse & Salakhutdinov (2016), 24,345 training and
  8,070 test images of 28x28 in [0, 1], read with scipy (a dependency of scikit-learn).

``estbench data fetch NAME --dir DIR`` downloads the files of the last three (benchmarks.fetch);
a missing file names that command.

The binary VAEs (``vae-digits-binary``, ``vae-mnist-binary``) read the same images,
**binarized once**: each pixel becomes 1 with probability its grey level, drawn with a
fixed seed (``BINARIZE_SEED``, the same for every run and every seed of a run), as in
Salakhutdinov & Murray (2008)'s binarized MNIST. So a pixel of grey level 0 is always 0
and one of level 1 always 1; the data set is the same on every machine and every run.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DIGITS_TEST = 300
DIGITS_SPLIT_SEED = 20131220  # Kingma & Welling's arXiv date; fixed forever
BINARIZE_SEED = 20080705  # Salakhutdinov & Murray's binarized MNIST (ICML 2008); fixed forever


class DataError(ValueError):
    """Missing or malformed data; the message names the file."""


@dataclass(frozen=True)
class Dataset:
    name: str
    train: torch.Tensor  # [N, D] in [0, 1], float32
    test: torch.Tensor  # [M, D]
    shape: tuple[int, int]  # image height, width

    @property
    def dim(self) -> int:
        return self.train.shape[1]


DIGITS_SHAPE = (1797, 64)


def digits_pixels() -> np.ndarray:
    """scikit-learn's digits, [1797, 64] pixel values 0..16 (float64), as ``sklearn.datasets.load_digits().data``:
    read from the file the package ships (``datasets/data/digits.csv.gz``, 64 pixels and the label a row), found
    without importing scikit-learn, whose import takes about a second; from ``load_digits`` where that file is
    not where this expects it or not as this expects it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            rows = np.loadtxt(Path(folder) / "datasets" / "data" / "digits.csv.gz", delimiter=",", dtype=np.float64)
        except (OSError, ValueError):
            continue
        if rows.shape == (DIGITS_SHAPE[0], DIGITS_SHAPE[1] + 1):
            return rows[:, :-1]
    from sklearn.datasets import load_digits as sk_load_digits

    return sk_load_digits().data


def load_digits() -> Dataset:
    images = digits_pixels().astype(np.float32) / 16.0  # [1797, 64], pixel values 0..16
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
    return Dataset("digits", torch.from_numpy(images[train]), torch.from_numpy(images[test]), (8, 8))


IDX_IMAGE_MAGIC = 2051
MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX3 image file (gzip or not) into uint8 [N, rows, cols]."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from exc
    if len(raw) < 16:
        raise DataError(f"{path}: too short for an IDX image file ({len(raw)} bytes, header needs 16)")
    magic, n, rows, cols = struct.unpack(">iiii", raw[:16])
    if magic != IDX_IMAGE_MAGIC:
        raise DataError(f"{path}: not an IDX image file (magic number {magic}, expected {IDX_IMAGE_MAGIC})")
    if n < 1 or rows < 1 or cols < 1:
        raise DataError(f"{path}: header says {n} images of {rows}x{cols}; need at least one image of at least 1x1")
    expected = 16 + n * rows * cols
    if len(raw) != expected:
        raise DataError(f"{path}: header says {n} images of {rows}x{cols} ({expected} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


#: data sets' names in messages
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "omniglot": "Omniglot"}


def missing_hint(kind: str) -> str:
    """How to get data set ``kind``'s files: what a missing file's message ends with."""
    return f"get them with: estbench data fetch {kind} --dir DIR, then pass --data-dir DIR"


def _find(data_dir: Path, stem: str, kind: str = "mnist") -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx3", ".idx3"), stem.replace("-idx3", ".idx3") + ".gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"missing {TITLES.get(kind, kind)} file {data_dir / stem}[.gz] (expected {stem} or {stem}.gz in {data_dir}); "
                    f"{missing_hint(kind)}")


def load_mnist(data_dir: str | Path, kind: str = "mnist") -> Dataset:
    """MNIST, or (``kind`` "fashion-mnist") Fashion-MNIST, whose IDX files have the same names."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{TITLES.get(kind, kind)} data directory {data_dir} does not exist; {missing_hint(kind)}")
    arrays = {split: read_idx_images(_find(data_dir, stem, kind)) for split, stem in MNIST_FILES.items()}
    rows, cols = arrays["train"].shape[1:]
    if arrays["test"].shape[1:] != (rows, cols):
        raise DataError(f"{data_dir}: train images are {rows}x{cols} but test images are {arrays['test'].shape[1:]}")
    flat = {k: torch.from_numpy(v.reshape(len(v), -1).astype(np.float32) / 255.0) for k, v in arrays.items()}
    return Dataset(kind, flat["train"], flat["test"], (rows, cols))


OMNIGLOT_FILE = "chardata.mat"


def load_omniglot(data_dir: str | Path) -> Dataset:
    """Omniglot's ``chardata.mat`` (its arrays ``data`` [784, 24345] and ``testdata`` [784, 8070], grey levels in
    [0, 1], each column an image stored column-major)."""
    path = Path(data_dir) / OMNIGLOT_FILE
    if not path.is_file():
        raise DataError(f"missing Omniglot file {path}; {missing_hint('omniglot')}")
    from scipy.io import loadmat  # scipy comes with scikit-learn

    try:
        mat = loadmat(path)
        train, test = (np.asarray(mat[k], dtype=np.float32).T for k in ("data", "testdata"))
    except (ValueError, KeyError, OSError, TypeError) as exc:
        raise DataError(f"{path}: not Omniglot's chardata.mat ({' '.join(str(exc).split())})") from None
    if train.ndim != 2 or train.shape[1] != 784 or test.shape[1:] != (784,) or not (0 <= train.min() <= train.max() <= 1):
        raise DataError(f"{path}: expected arrays data [784, N] and testdata [784, M] of grey levels in [0, 1], got "
                        f"{train.T.shape} and {test.T.shape}")
    # column-major 28x28 images: transposed here so that pixel order is row-major like the IDX files
    def rows(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, 784)))

    return Dataset("omniglot", rows(train), rows(test), (28, 28))


def load(kind: str, data_dir: str | Path | None) -> Dataset:
    """Data set ``kind`` (digits, mnist, fashion-mnist, omniglot), the last three from ``data_dir``."""
    if kind == "digits":
        return load_digits()
    if data_dir is None:
        raise DataError(f"{kind} needs --data-dir DIR; {missing_hint(kind)}")
    return load_omniglot(data_dir) if kind == "omniglot" else load_mnist(data_dir, kind)


def binarize(data: Dataset) -> Dataset:
    """The data set with each pixel drawn once as Bernoulli(grey level), from ``BINARIZE_SEED``
    (train and test from separate streams, so a change to one split leaves the other as it is)."""
    def draw(images: torch.Tensor, stream: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(BINARIZE_SEED + stream)
        return (torch.rand(images.shape, generator=gen) < images).to(images.dtype)

    return Dataset(data.name + "-binary", draw(data.train, 0), draw(data.test, 1), data.shape)

"""``estbench data fetch NAME --dir DIR``: the data files of the papers' binary-VAE protocol (MNIST,
Fashion-MNIST, Omniglot) from their canonical addresses, each checked against its published digest
before it is kept. Nothing in estbench downloads otherwise; a problem whose files are missing names
this command.

A file is written as ``DIR/NAME.part`` and renamed into place only once its size and digest match,
so ``DIR`` never holds a partial or wrong file under the real name; a file already there with the
right digest is kept and not downloaded again; one there with another digest is refused (the
command names it) rather than overwritten.

Digests: SHA-256 for the MNIST and Fashion-MNIST files (as published by TensorFlow Datasets,
torchvision and the Fashion-MNIST repository). Omniglot's ``chardata.mat`` (Burda, Grosse &
Salakhutdinov's 28x28 split, the one the VAE papers use) is served from a git repository, which
records its content's identity as a git blob id (SHA-1 of ``blob <size>\\0<content>``); no SHA-256
of it is published, so that blob id is what is checked.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .data import DataError


@dataclass(frozen=True)
class Remote:
    name: str  # the file's name in DIR
    url: str
    digest: str  # hex
    kind: str = "sha256"  # or "git-blob-sha1"
    size: int | None = None


MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the mirror TensorFlow and torchvision use
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # the Fashion-MNIST README's address
OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/"

#: what ``estbench data fetch NAME`` downloads
SOURCES: dict[str, list[Remote]] = {
    "mnist": [
        Remote("train-images-idx3-ubyte.gz", MNIST_URL + "train-images-idx3-ubyte.gz",
               "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", size=9912422),
        Remote("t10k-images-idx3-ubyte.gz", MNIST_URL + "t10k-images-idx3-ubyte.gz",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", size=1648877),
    ],
    "fashion-mnist": [
        Remote("train-images-idx3-ubyte.gz", FASHION_URL + "train-images-idx3-ubyte.gz",
               "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", size=26421880),
        Remote("t10k-images-idx3-ubyte.gz", FASHION_URL + "t10k-images-idx3-ubyte.gz",
               "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", size=4422102),
    ],
    "omniglot": [
        Remote("chardata.mat", OMNIGLOT_URL + "chardata.mat", "016a3536ffe5e1d38e42563a18d7a78bfaf643ec",
               kind="git-blob-sha1"),
    ],
}
#: the largest file fetched, and the most any download may write
MAX_BYTES = 100 << 20


def digest(path: Path, kind: str) -> str:
    if kind == "sha256":
        h = hashlib.sha256()
    else:  # git's blob id: SHA-1 over a header that names the content's size, then the content
        h = hashlib.sha1(usedforsecurity=False)
        h.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, folder: str | Path, say: Callable[[str], None] = lambda _: None,
          timeout: float = 60.0) -> list[Path]:
    """Download data set ``name``'s files into ``folder`` (made if missing), each checked; returns their
    paths. DataError (one line) for an unknown name, a failed download or a digest that does not match."""
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}; valid: {', '.join(SOURCES)}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--dir {folder} is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for remote in SOURCES[name]:
        path = folder / remote.name
        if path.exists():
            found = digest(path, remote.kind)
            if found != remote.digest:
                raise DataError(f"{path} exists with another {remote.kind} ({found}, expected {remote.digest}); remove "
                                f"it or choose another --dir")
            say(f"{path}: present, {remote.kind} checked")
            out.append(path)
            continue
        part = path.with_name(path.name + ".part")
        say(f"{remote.url} -> {path}")
        try:
            _download(remote.url, part, timeout)
            if remote.size is not None and part.stat().st_size != remote.size:
                raise DataError(f"{remote.url}: got {part.stat().st_size} bytes, expected {remote.size}; nothing kept")
            found = digest(part, remote.kind)
            if found != remote.digest:
                raise DataError(f"{remote.url}: {remote.kind} {found} does not match the published {remote.digest}; "
                                f"nothing kept")
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        out.append(path)
    return out


def _download(url: str, to: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, to.open("wb") as f:  # noqa: S310 - fixed addresses
            written = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                written += len(block)
                if written > MAX_BYTES:
                    raise DataError(f"{url}: more than {MAX_BYTES >> 20} MB; nothing kept")
                f.write(block)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot download {url}: {reason}; nothing kept") from None


__all__ = ["SOURCES", "Remote", "digest", "fetch"]

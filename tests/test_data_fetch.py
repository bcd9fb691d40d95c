"""``estbench data fetch`` against a local HTTP server serving small fixture files (never the internet),
and the papers' binary-VAE protocol on the data it fetches: Fashion-MNIST's IDX files, Omniglot's
chardata.mat, the linear and nonlinear architectures, dynamic binarization."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import struct
import subprocess
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import fetch as fetching
from benchmarks.fetch import Remote, digest
from estbench.cli import main


def idx_gz(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return gzip.compress(struct.pack(">iiii", 2051, n, rows, cols) + images.astype(np.uint8).tobytes(), mtime=0)


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/served; yields (folder, base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requested.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/", requested
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def sources(server, monkeypatch):
    """Fixture files for fashion-mnist (two IDX files, SHA-256) and omniglot (chardata.mat, git blob id), served
    locally; SOURCES pointed at them."""
    from scipy.io import savemat

    served, url, _ = server
    rng = np.random.default_rng(0)
    (served / "train-images-idx3-ubyte.gz").write_bytes(idx_gz(rng.integers(0, 256, (40, 28, 28))))
    (served / "t10k-images-idx3-ubyte.gz").write_bytes(idx_gz(rng.integers(0, 256, (12, 28, 28))))
    savemat(served / "chardata.mat", {"data": rng.random((784, 40)), "testdata": rng.random((784, 12))})
    table = {
        "fashion-mnist": [Remote(n, url + n, hashlib.sha256((served / n).read_bytes()).hexdigest(),
                                 size=(served / n).stat().st_size)
                          for n in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")],
        "omniglot": [Remote("chardata.mat", url + "chardata.mat", git_blob_id((served / "chardata.mat").read_bytes()),
                            kind="git-blob-sha1")],
    }
    monkeypatch.setattr(fetching, "SOURCES", table)
    return served, table


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def test_the_published_digests_are_well_formed():
    for name, remotes in fetching.SOURCES.items():
        for r in remotes:
            assert len(r.digest) == (64 if r.kind == "sha256" else 40) and int(r.digest, 16) >= 0, (name, r)
            assert r.url.endswith(r.name) and r.url.startswith(("http://", "https://")), r


def test_a_git_blob_id_is_what_git_computes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"some content\n\x00\x01")
    assert digest(path, "git-blob-sha1") == git_blob_id(path.read_bytes())
    if shutil.which("git"):
        assert digest(path, "git-blob-sha1") == subprocess.run(["git", "hash-object", str(path)], capture_output=True,
                                                                text=True, check=True).stdout.strip()


def test_fetch_downloads_checks_and_does_not_download_a_checked_file_again(sources, server, tmp_path, capsys):
    _, _, requested = server
    out = tmp_path / "data"
    assert main(["data", "fetch", "fashion-mnist", "--dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"]
    assert len(requested) == 2
    assert main(["data", "fetch", "fashion-mnist", "--dir", str(out)]) == 0
    assert len(requested) == 2 and "present, sha256 checked" in capsys.readouterr().err
    assert main(["data", "fetch", "omniglot", "--dir", str(out)]) == 0
    assert (out / "chardata.mat").is_file()


def test_a_file_whose_digest_differs_is_not_kept_and_the_error_is_one_line(sources, tmp_path, capsys):
    served, _ = sources
    (served / "t10k-images-idx3-ubyte.gz").write_bytes(idx_gz(np.zeros((12, 28, 28))))  # another file, same name
    out = tmp_path / "data"
    capsys.readouterr()
    assert main(["data", "fetch", "fashion-mnist", "--dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("estbench data: error: ") and "nothing kept" in err[-1] and "Traceback" not in "".join(err)
    assert sorted(p.name for p in out.iterdir()) == ["train-images-idx3-ubyte.gz"]  # no .part, no wrong file
    (out / "train-images-idx3-ubyte.gz").write_bytes(b"edited")  # a file there with other content: refused
    assert main(["data", "fetch", "fashion-mnist", "--dir", str(out)]) == 2
    assert "exists with another sha256" in capsys.readouterr().err
    assert (out / "train-images-idx3-ubyte.gz").read_bytes() == b"edited"


def test_an_unreachable_address_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(fetching, "SOURCES", {"mnist": [Remote("a.gz", "http://127.0.0.1:9/a.gz", "0" * 64)]})
    assert main(["data", "fetch", "mnist", "--dir", str(tmp_path / "d")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # the progress line, then the error in one line
    assert lines[-1].startswith("estbench data: error: cannot download http://127.0.0.1:9/a.gz") and len(lines) == 2


@pytest.mark.parametrize("problem,name", [("vae-fashion-mnist-binary", "fashion-mnist"), ("vae-omniglot-binary", "omniglot")])
def test_a_missing_data_file_names_the_fetch_command(problem, name, tmp_path, capsys):
    assert main(["run", "--problem", problem, "--estimator", "disarm", "--data-dir", str(tmp_path), "--quiet",
                 "--out", str(tmp_path / "r.csv")]) == 2
    assert f"estbench data fetch {name} --dir DIR" in capsys.readouterr().err


@pytest.mark.parametrize("name,problem", [("fashion-mnist", "vae-fashion-mnist-binary"), ("omniglot", "vae-omniglot-binary")])
def test_the_papers_protocol_runs_on_fetched_data(sources, tmp_path, name, problem):
    """The fetched files feed their problem: the linear and nonlinear models with dynamic binarization, the
    encoder gradient exact by enumeration at latent 3, training curves that improve."""
    out = tmp_path / "data"
    assert main(["data", "fetch", name, "--dir", str(out)]) == 0
    results = tmp_path / "r.csv"
    assert main(["run", "--problem", problem, "--estimator", "disarm", "exact", "--data-dir", str(out),
                 "--architecture", "linear", "nonlinear", "--binarization", "dynamic", "--hidden", "16", "--latent", "3",
                 "--batch", "5", "--checkpoint", "untrained", "--replicates", "200", "--train-steps", "30",
                 "--train-seeds", "1", "--quiet", "--out", str(results)]) == 0
    rows = pd.read_csv(results)
    assert set(rows["architecture"]) == {"linear", "nonlinear"} and (rows["status"] == "ok").all()
    assert (rows["reference"] == "exact").all() and rows.loc[rows["estimator"] == "disarm", "bias_z"].abs().max() < 4.5
    curves = pd.read_csv(results.with_name("r-training.csv"))
    assert set(curves["architecture"]) == {"linear", "nonlinear"}


def test_the_architectures_have_the_layers_they_declare():
    from benchmarks.problems.binary_vae import BinaryVAE

    sizes = {a: [tuple(p.shape) for p in BinaryVAE(784, 200, 200, a).encoder.parameters()]
             for a in ("linear", "nonlinear", "mlp")}
    assert sizes["linear"] == [(200, 784), (200,)]
    assert sizes["nonlinear"] == [(200, 784), (200,), (200, 200), (200,), (200, 200), (200,)]
    assert sizes["mlp"] == [(200, 784), (200,), (200, 200), (200,)]
    layers = [type(m).__name__ for m in BinaryVAE(784, 200, 200, "nonlinear").decoder]
    assert layers == ["Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"]


def test_dynamic_binarization_draws_each_batch_anew_from_the_grey_levels():
    import estimators
    from benchmarks.data import Dataset
    from benchmarks.problems.binary_vae import BinaryVAE
    from benchmarks.problems.training import train

    grey = torch.full((20, 6), 0.5)
    fixed = Dataset("g", (grey > 0.25).float(), (grey > 0.25).float(), (2, 3))  # every pixel 1 when fixed
    seen = []

    model = BinaryVAE(6, 4, 2)
    real = model.encoder.forward

    def spy(x):
        seen.append(x.clone())
        return real(x)

    model.encoder.forward = spy
    train(model, fixed, estimators.get("exact"), steps=4, batch=10, n_samples=1, seed=0, grey=grey)
    batches = [x for x in seen if len(x) == 10]  # the training steps' inputs (the evaluations read the 20 test images)
    assert len(batches) == 4
    # 240 Bernoulli(1/2) pixels: their mean within 6 standard deviations (0.032) of 1/2; the fixed set is all ones
    assert 0.3 < torch.cat(batches).mean().item() < 0.7
    assert not torch.equal(batches[0], batches[1])


def test_an_interrupted_fetch_leaves_no_partial_file(sources, tmp_path, monkeypatch, capsys):
    def interrupted(url, to, timeout):
        to.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetching, "_download", interrupted)
    out = tmp_path / "data"
    assert main(["data", "fetch", "omniglot", "--dir", str(out)]) == 130
    assert list(out.iterdir()) == []
    assert "no partial one" in capsys.readouterr().err


def test_a_dir_that_is_a_file_is_refused_before_any_download(tmp_path, monkeypatch, capsys):
    def no_network(url, to, timeout):
        raise AssertionError("downloaded")

    monkeypatch.setattr(fetching, "_download", no_network)
    target = tmp_path / "notes.txt"
    target.write_text("x")
    assert main(["data", "fetch", "mnist", "--dir", str(target)]) == 2
    assert capsys.readouterr().err.strip() == f"estbench data: error: --dir {target} is not a directory"

"""Fetch published dataset files: progress bar, resumable, verified, atomic.

``download_file`` streams a URL into ``<destination>.part``, resuming a previous partial
download with an HTTP ``Range`` request, verifies the result (sha256 when one is known,
else the byte count the server announced and any known size) and only then renames it to
``destination``, so a file under its final name is always complete.

From the command line::

    python -m reference_models.data.download shapes3d --data-dir ~/data

Datasets published only behind Google Drive or an archive (``mpi3d`` = MPI3D-complex,
``isaac3d``) cannot be fetched this way; the command prints where to get them.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .base import DatasetError, resolve_data_dir
from .registry import list_datasets

__all__ = ["DownloadError", "download_dataset", "download_file"]

_CHUNK = 1 << 20


class DownloadError(DatasetError):
    """A download failed or produced a file that does not verify."""


def _sha256_of(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest


def _total_size(response, offset: int) -> int | None:
    """Full file size from ``Content-Range: bytes a-b/total`` or ``Content-Length``."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        return offset + int(length)
    return None


def download_file(url: str, destination, *, sha256: str | None = None,
                  expected_size: int | None = None, timeout: float = 60.0,
                  progress: bool | None = None) -> Path:
    """Download ``url`` to ``destination``, resuming and verifying.

    Parameters
    ----------
    url : str
    destination : path-like
        Final path; its folder is created.  An existing file there is kept as is
        (after checking it against ``sha256``/``expected_size`` when given).
    sha256 : str, optional
        Expected hex digest.  A mismatch deletes the partial file and raises.
    expected_size : int, optional
        Expected size in bytes, checked when no digest is given (and against what the
        server announces).
    timeout : float, default 60
        Socket timeout in seconds.
    progress : bool or None, default None
        Show a tqdm bar on stderr; ``None`` shows it only on a terminal.

    Returns
    -------
    Path
        ``destination``.

    Raises
    ------
    DownloadError
        Network failure (the partial file is kept for the next try), a size mismatch, or a
        checksum mismatch.
    """
    destination = Path(destination)
    if destination.is_file():
        _verify(destination, sha256, expected_size, url, partial=False, name=destination.name)
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.is_file() else 0

    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing left to fetch: the partial file may already be complete.
            return _finish(partial, destination, sha256, expected_size, url)
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"download of {url} failed: {getattr(exc, 'reason', exc)}") from None

    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start again
        total = _total_size(response, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(f"{url} is {total} bytes, expected {expected_size}")
        mode = "ab" if offset else "wb"
        try:
            with open(partial, mode) as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=destination.name, disable=None if progress is None else not progress,
                    file=sys.stderr) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"download of {url} interrupted after {partial.stat().st_size} bytes ({exc}); "
                f"run again to resume from {partial}") from None
    received = partial.stat().st_size
    if total is not None and received != total:
        raise DownloadError(f"download of {url} stopped at {received} of {total} bytes; "
                            f"run again to resume from {partial}")
    return _finish(partial, destination, sha256, expected_size, url)


def _verify(path: Path, sha256: str | None, expected_size: int | None, url: str, *,
            partial: bool, name: str) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        if partial and size < expected_size:
            raise DownloadError(f"{path} has {size} of {expected_size} bytes; run again to resume")
        if partial:
            path.unlink()
        raise DownloadError(f"{path} is {size} bytes, expected {expected_size} ({url})")
    if sha256 is not None:
        digest = _sha256_of(path).hexdigest()
        if digest != sha256.lower():
            if partial:
                path.unlink()  # corrupt: resuming it would never verify
            advice = "the download was deleted" if partial else "delete it and download again"
            raise DownloadError(f"checksum mismatch for {name}: sha256 {digest}, expected "
                                f"{sha256.lower()} ({url}); {advice}")


def _finish(partial: Path, destination: Path, sha256, expected_size, url) -> Path:
    _verify(partial, sha256, expected_size, url, partial=True, name=destination.name)
    os.replace(partial, destination)
    return destination


def download_dataset(name: str, data_dir=None, *, progress: bool | None = None) -> Path:
    """Download the published file of dataset ``name`` into the data dir.

    Raises
    ------
    DatasetError
        ``name`` has no direct download (the message says where to get it), or the
        download failed.
    """
    infos = {info.name: info for info in list_datasets()}
    if name not in infos or not infos[name].needs_download:
        downloadable = [n for n, info in infos.items() if info.url]
        raise DatasetError(f"{name!r} is not a published dataset; downloadable: "
                           f"{', '.join(downloadable)}")
    info = infos[name]
    destination = resolve_data_dir(data_dir) / info.files[0]
    if info.url is None:
        raise DatasetError(f"{name} has no direct download: get {info.files[0]} from "
                           f"{info.homepage} and put it in {destination.parent}")
    # No checksums are recorded: none could be verified against the publishers' files
    # here.  The byte count announced by the server is checked instead.
    return download_file(info.url, destination, progress=progress)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reference_models.data.download",
        description="Download a published dataset file into the data dir.",
        epilog="Example: python -m reference_models.data.download shapes3d --data-dir ~/data")
    parser.add_argument("name", help="dataset name, e.g. shapes3d, mpi3d_toy")
    parser.add_argument("--data-dir", default=None,
                        help="target folder (default $DISENTANGLE_EVAL_DATA or "
                             "~/.cache/disentangle-eval/data)")
    args = parser.parse_args(argv)
    try:
        path = download_dataset(args.name, args.data_dir)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

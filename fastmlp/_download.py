"""Downloading one file with a pinned SHA-256, through pooch.

pooch keeps a file that is already there with the right hash, fetches a corrupt one again,
streams a download into a temporary file beside the target (removed on any failure, Ctrl-C
included), checks the hash before moving it into place, and retries with a growing pause.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

from .errors import InvalidInputError, StorageError

__all__ = ["fetch"]

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _check_url(url):
    """https only; plain http is allowed for a server on this machine (tests, local mirrors)."""
    parsed = urlparse(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS):
        return
    raise InvalidInputError(f"refusing to download {url}: only https URLs are allowed")


def fetch(url, target, sha256, *, retries=3, timeout=30, offline=False):
    """Make ``target`` a file whose SHA-256 is ``sha256``, downloading it from ``url`` if needed."""
    target = Path(target)
    _check_url(url)
    try:
        import pooch
    except ImportError:  # pragma: no cover - pooch is a dependency
        raise StorageError("downloading needs the package pooch: pip install pooch") from None
    pooch.get_logger().setLevel(logging.WARNING)
    if offline:  # the caller made sure the file is there; check it, never fetch
        digest = pooch.file_hash(str(target))
        if digest != sha256:
            raise StorageError(
                f"the cached file {target} is corrupt (SHA-256 {digest}, expected {sha256}) and "
                "FASTMLP_OFFLINE=1 forbids fetching it again; unset it, or pass --data PATH"
            )
        return target
    store = pooch.create(
        path=target.parent,
        base_url=url.rsplit("/", 1)[0] + "/",
        registry={target.name: f"sha256:{sha256}"},
        retry_if_failed=retries - 1,
    )
    downloader = pooch.HTTPDownloader(timeout=timeout, progressbar=False)
    hint = "download the files by hand and pass --data PATH or set FASTMLP_DATA"
    try:
        return Path(store.fetch(target.name, downloader=downloader))
    except ValueError as exc:  # pooch: hash mismatch ("... does not match the known hash ...")
        raise StorageError(
            f"the file downloaded from {url} is not the expected one: {exc}. "
            f"It was deleted and {target} was left as it was; {hint}"
        ) from None
    except OSError as exc:  # requests' errors are OSErrors: connection, timeout, HTTP status
        raise StorageError(f"could not download {url} after {retries} attempts: {exc}; {hint}") from None

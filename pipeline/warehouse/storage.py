"""Files in a local folder or in Cloud Storage (``gs://bucket/path``), through fsspec (gcsfs for
``gs://``): the raw box scores and slates (:mod:`pipeline.warehouse.source`) and the backups
(:mod:`pipeline.backup.folder`) are read and written the same way wherever they live.

Google Cloud Storage takes Application Default Credentials; an ``endpoint_url`` points at an
emulator instead, with anonymous credentials. Credentials never appear in a URL, a log or an error.
"""

from __future__ import annotations

import os

import fsspec
from fsspec.implementations.local import LocalFileSystem

GCS_SCHEME = "gs://"


def is_remote(url: str) -> bool:
    return str(url).startswith(GCS_SCHEME)


def open_filesystem(url: str, endpoint_url: str | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system of ``url`` and the path in it fsspec uses: a local folder or ``gs://``.
    Any other scheme is a :class:`ValueError` naming it."""
    if is_remote(url):
        # Another process (a backup, a scraper adding files) may have changed the bucket since
        # this one last listed it: list it afresh every time.
        options = {"use_listings_cache": False}
        if endpoint_url:
            # gcsfs's default class (its experimental zonal/HNS bucket support, switched by
            # GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT when gcsfs is imported) probes each bucket over
            # gRPC first; an emulator serves no gRPC and the probe waits 60 s. The core class
            # speaks JSON over HTTP only, which is all an emulator serves.
            from gcsfs.core import GCSFileSystem

            fs = GCSFileSystem(endpoint_url=endpoint_url, token="anon", **options)
        else:
            fs = fsspec.filesystem("gs", **options)  # Application Default Credentials
        return fs, fs._strip_protocol(url).rstrip("/")
    if "://" in str(url):
        raise ValueError(f"{url!r}: a local path or gs://bucket/path")
    return LocalFileSystem(), os.path.abspath(url)

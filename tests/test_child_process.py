"""Local services started as child processes (pipeline/child_process.py): each binds its own
port and reports it, so two started at once never share one, and a child that does not report
is stopped with an error that names it."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.child_process import start_reporting
from pipeline.storage_emulator import StorageEmulatorProcess


def has_bucket(url: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/storage/v1/b/{name}", timeout=10):
            return True
    except urllib.error.HTTPError as missing:
        assert missing.code == 404
        return False


def test_storage_emulators_started_at_once_each_serve_their_own_buckets():
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda bucket: StorageEmulatorProcess.start(buckets=(bucket,)), ["first", "second"])
    with first, second:
        assert first.url != second.url
        assert (has_bucket(first.url, "first"), has_bucket(first.url, "second")) == (True, False)
        assert (has_bucket(second.url, "second"), has_bucket(second.url, "first")) == (True, False)


def test_a_child_that_does_not_say_where_it_serves_is_stopped_and_named():
    chatty = "print('listening, probably', flush=True); import time; time.sleep(600)"
    with pytest.raises(RuntimeError, match=r"a chatty service did not start \(exit code -9\): 'listening, probably'"):
        start_reporting([sys.executable, "-c", chatty], "a chatty service", 30)
    with pytest.raises(RuntimeError, match=r"a silent service did not start \(exit code -9\): nothing said within 1 s"):
        start_reporting([sys.executable, "-c", "import time; time.sleep(600)"], "a silent service", 1)

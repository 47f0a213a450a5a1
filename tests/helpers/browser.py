"""Headless Chromium for tests: render a local HTML page to a PNG and list what it asked of the network.

``render(html_path, png_path, width, height, workdir)`` runs Debian's ``chromium`` (installed by ``.ci/run``
when absent) with every network service off and every host name unresolvable, takes a screenshot of the
viewport and returns the URLs the *page* requested (from Chromium's net log: requests whose network
isolation key is the ``file://`` page; Chromium's own background requests to its services are not the
page's). ``external_references(html)`` is the static check: URLs in src/href/url()/@import that leave the
file. ``needs_chromium`` skips a test, with the reason, only when no Chromium binary is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import NamedTuple

import numpy as np
import pytest

BINARIES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 60


def find_chromium() -> str | None:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium binary (Debian: apt-get install -y chromium; .ci/run installs it)")


class Rendered(NamedTuple):
    image: np.ndarray          # (height, width, 3) uint8 RGB screenshot
    page_requests: list[str]   # non-file, non-data URLs the page asked for


def render(html_path: str | os.PathLike, png_path: str | os.PathLike, width: int, height: int,
           workdir: str | os.PathLike) -> Rendered:
    from PIL import Image

    html_path, png_path, workdir = (os.path.abspath(os.fspath(p)) for p in (html_path, png_path, workdir))
    netlog = os.path.join(workdir, "netlog.json")
    command = [
        find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
        f"--user-data-dir={os.path.join(workdir, 'profile')}", '--host-resolver-rules=MAP * ~NOTFOUND',
        f"--log-net-log={netlog}", f"--screenshot={png_path}", f"--window-size={width},{height}",
        "file://" + html_path,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0 or not os.path.exists(png_path):
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    image = np.asarray(Image.open(png_path).convert("RGB"))
    return Rendered(image, page_requests(netlog))


def page_requests(netlog_path: str) -> list[str]:
    """URLs (not file:, data:) of the URL requests started on behalf of a file:// page."""
    with open(netlog_path, encoding="utf-8") as f:
        text = f.read()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start_job or "url" not in params:
            continue
        from_page = "file://" in str(params.get("network_isolation_key", "")) or \
            "file://" in str(params.get("site_for_cookies", ""))
        if from_page and not params["url"].startswith(("file:", "data:")):
            urls.append(params["url"])
    return urls


_REFERENCE = re.compile(
    r"""(?:\b(?:src|href|srcset|poster|action|data)\s*=\s*["']?|url\(\s*["']?|@import\s+["'])\s*([^"')\s>]+)""",
    re.IGNORECASE)


def external_references(html: str) -> list[str]:
    """References in ``html`` that would leave the file: http(s)://, protocol-relative //, other schemes
    than data: and file: (e.g. ftp:, ws:)."""
    found = []
    for target in _REFERENCE.findall(html):
        lowered = target.lower()
        if lowered.startswith(("data:", "#")):
            continue
        if lowered.startswith("//") or re.match(r"^[a-z][a-z0-9+.-]*:", lowered) and \
                not lowered.startswith("file:"):
            found.append(target)
    return found

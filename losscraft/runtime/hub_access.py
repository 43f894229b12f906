"""Is the Hugging Face hub usable right now? Offline mode from the environment, and one bounded
probe of the endpoint, shared by every loader so that hub ids fail fast without network."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """True when the environment asks for offline mode (``HF_HUB_OFFLINE``,
    ``TRANSFORMERS_OFFLINE`` or ``HF_DATASETS_OFFLINE``), read at call time (the libraries read
    it once, at import)."""
    env = {os.environ.get(k, "").strip().upper()
           for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    return bool(env & _TRUE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """One HEAD request to the hub endpoint (``HF_ENDPOINT``), bounded by ``timeout`` seconds in
    total (DNS included): True if any server answered."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    answered: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)  # an HTTP error status is still an answer
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores socket timeouts
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def looks_like_local_path(name_or_path: str) -> bool:
    """True for names that can only be a filesystem path (a hub id is ``name`` or ``org/name``)."""
    s = str(name_or_path)
    return (s.startswith(("/", "./", "../", "~", ".\\")) or s.count("/") > 1 or "\\" in s
            or Path(s).expanduser().exists())

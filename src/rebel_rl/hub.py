"""Fail fast when a hub id cannot be fetched: with HF_HUB_OFFLINE set, or with no network (found
once, by one short connection attempt), an id that is not in the local cache is one error line at
once, instead of the libraries' half a minute of retries. With no network, the libraries are
switched to offline mode, so ids that are cached load from the cache without retrying.

Light on purpose (no torch, transformers or datasets): the command line calls it before they load.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from .errors import RebelError

_TRUE = {"1", "true", "yes", "on"}
_probe: list[str | None] = []  # the one connectivity probe's result, once made


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (HF_HUB_OFFLINE is set, or no network), or
    None."""
    if _probe and _probe[0] is not None:  # found before (and HF_HUB_OFFLINE set since, by us)
        return _probe[0]
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE or _library_offline():
        return "HF_HUB_OFFLINE is set"
    if not _probe:
        _probe.append(_probe_network())
        if _probe[0] is not None:
            go_offline()
    return _probe[0]


def check_hub_id(repo_id: str, kind: str, error: type[RebelError], hint: str) -> None:
    """Raise `error` (one line naming `repo_id`) when the hub cannot be reached and the id is not
    cached. `kind` is "model" or "dataset" (where the caches keep it); `hint` says what to give
    instead."""
    reason = hub_unreachable()
    if reason is None or is_cached(repo_id, kind):
        return
    raise error(
        f"cannot load {kind} '{repo_id}' from the Hugging Face hub: it cannot be reached "
        f"({reason}) and "
        f"the id is not in the local cache: {hint}"
    )


def is_cached(repo_id: str, kind: str) -> bool:
    """Whether the hub cache (or for a dataset, the datasets cache) holds something of `repo_id`."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    hub = Path(
        os.environ.get("HF_HUB_CACHE", os.environ.get("HUGGINGFACE_HUB_CACHE", home / "hub"))
    ).expanduser()
    folders = [hub / f"{kind}s--{repo_id.replace('/', '--')}"]
    if kind == "dataset":
        datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets")).expanduser()
        folders.append(datasets_cache / repo_id.replace("/", "___"))
    return any(folder.is_dir() for folder in folders)


def go_offline() -> None:
    """Offline mode for huggingface_hub, transformers and datasets, imported yet or not."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, name in [
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    ]:
        if module in sys.modules and hasattr(sys.modules[module], name):
            setattr(sys.modules[module], name, True)


def _library_offline() -> bool:
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _probe_network(timeout: float = 3.0) -> str | None:
    """One TCP connection to the hub's host: None if it opens, else why not."""
    if any(
        os.environ.get(name)
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
    ):
        return None  # behind a proxy a direct connection says nothing: let the libraries try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (
        443 if url.scheme == "https" else 80
    )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"no network: cannot connect to {host} ({type(exc).__name__})"
    return None

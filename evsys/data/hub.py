"""Datasets on the Hugging Face Hub (``data.hf_dataset=owner/name``), through ``datasets``.

``datasets.load_dataset`` downloads a Hub dataset once and keeps it in the normal cache
(``HF_HOME`` / ``HF_DATASETS_CACHE``); offline (``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``
or no network) it reads that cache. Here its many failure types become one :class:`DataError`
that names the dataset and the cache it was looked for in.
"""

from __future__ import annotations

from typing import Any

from evsys.errors import DataError, MissingDependencyError


def import_datasets() -> Any:
    """``datasets``, imported only when an hf_dataset source is loaded."""
    try:
        import datasets
    except ImportError:
        raise MissingDependencyError("datasets", "hf", "The hf_dataset source") from None
    return datasets


def load_hub_dataset(name: str, config: str | None, split: str) -> Any:
    """The ``split`` of Hub dataset ``name`` (its ``config``, None: the default one)."""
    datasets = import_datasets()
    where = f"data.hf_dataset={name!r}"
    try:
        return datasets.load_dataset(name, config, split=split)
    except ConnectionError:  # offline, or the Hub is unreachable, and nothing in the cache
        raise DataError(
            f"{where}: not in the local cache {datasets.config.HF_DATASETS_CACHE} and the "
            f"Hugging Face Hub cannot be reached{_offline_reason(datasets)}. Load it once where "
            "the Hub is reachable (it is cached for later runs), or point HF_HOME or "
            "HF_DATASETS_CACHE at a cache that holds it."
        ) from None
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise DataError(
            f"{where}: not found on the Hugging Face Hub ({exc}); a private or gated dataset "
            "needs a token in HF_TOKEN"
        ) from None
    except Exception as exc:  # datasets raises many types; each means "could not load it"
        raise DataError(
            f"{where}: datasets.load_dataset failed ({type(exc).__name__}: {exc})"
        ) from None


def _offline_reason(datasets: Any) -> str:
    # datasets reads both switches when it is imported; its config holds what it decided.
    if datasets.config.HF_HUB_OFFLINE:
        return " (offline mode: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)"
    return ""

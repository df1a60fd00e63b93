"""``multiplex`` log store: one run logged to several stores at once (say jsonl + tensorboard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from evsys.config import LogStoreSpec, Strict
from evsys.registry import LOG_STORES, register_log_store


@register_log_store("multiplex")
class MultiplexLogStore:
    """Fans every call out to its child stores, in the order they are listed."""

    class Config(Strict):
        stores: list[LogStoreSpec] = Field(
            min_length=1,
            description="The child log stores, each a {kind, params} block; every call reaches "
            "all of them. A child without log_dir writes where it would on its own.",
        )

    def __init__(self, *, run_dir: Path | None = None, **params: Any):
        self.cfg = self.Config(**params)
        self.stores: list[Any] = []
        try:
            for spec in self.cfg.stores:
                self.stores.append(LOG_STORES.build(spec.kind, spec.params, run_dir=run_dir))
        except BaseException:
            self.close()  # release the children already opened before reporting the failure
            raise

    @classmethod
    def of(cls, stores: list[Any]) -> MultiplexLogStore:
        """A multiplex of stores already built (the runner adds a dashboard store this way)."""
        self = cls.__new__(cls)
        self.cfg = None
        self.stores = list(stores)
        return self

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self._each("log_scalar", name, value, step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._each("log_metrics", metrics, step)

    def log_hyperparams(self, params: dict[str, Any]) -> None:
        self._each("log_hyperparams", params)

    def log_artifact(self, name: str, path: str) -> None:
        self._each("log_artifact", name, path)

    def close(self) -> None:
        self._each("close")

    def _each(self, method: str, *args: Any) -> None:
        # Every child gets the call even if an earlier one fails (one broken store must not cost
        # the others their data, or leave their files open); the first failure is then raised.
        first_error: BaseException | None = None
        for store in self.stores:
            try:
                getattr(store, method)(*args)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others ran
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

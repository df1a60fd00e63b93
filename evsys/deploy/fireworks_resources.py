"""The model and the deployment of one Fireworks deploy: found and reused, or created (and, when
the deploy fails, removed again), never created twice.

Each upload is marked, in the model's ``description``, with the run it comes from and the SHA-256
of its adapter files. Deploying a run again finds its model by id and reads the mark: the same
files, uploaded and validated, are reused; the same files half uploaded are finished; another
upload of the same run (other files: a run trained further) is replaced. A model or deployment of
that id that is not this run's is left alone: a ConfigError names it and how to pick another id.
A create that answers "already exists" is never retried: what exists is looked at again, since
it may well be this deploy's own create whose reply was lost.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evsys.deploy.cleanup import Undo
from evsys.deploy.fireworks_api import AlreadyExists, FireworksApi
from evsys.errors import BackendError, ConfigError, Problem

_MARK = re.compile(r"^evsys run (?P<run>.+), adapter sha256:(?P<digest>[0-9a-f]{64})$")
_RUN_ID_CHARS = 200  # the description must stay under 1000 characters
_DISPLAY_NAME_CHARS = 63  # Fireworks: "fewer than 64 characters"
_GONE_STATES = {"FAILED", "DELETING", "DELETED", "ERROR"}
_ROUNDS = 3  # look, act, look again: enough for "replace" and for a create that raced


def upload_mark(run_id: str, digest: str) -> str:
    """What the model's description says about the upload: its run and its files' digest."""
    return f"evsys run {run_id[:_RUN_ID_CHARS]}, adapter sha256:{digest}"


def display_name(run_id: str) -> str:
    return run_id[:_DISPLAY_NAME_CHARS]


@dataclass
class Outcome:
    """A resource this deploy uses, and whether it was there, complete, before it started."""

    resource: dict[str, Any]
    reused: bool


class FireworksResources:
    """Finds, creates and removes the account's models and deployments; every creation is
    registered with ``undo``, so that a deploy that fails removes it again."""

    def __init__(
        self,
        api: FireworksApi,
        account: str,
        undo: Undo,
        wait_until: Callable[[str, Callable[[], Any]], Any],
    ):
        """``wait_until(what, poll)`` polls until ``poll()`` returns something (the deployer's
        own wait, with its timeout and poll interval)."""
        self.api, self.account, self.undo = api, account, undo
        self._until = wait_until
        self.prefix = f"/v1/accounts/{account}"

    # -- the model -------------------------------------------------------------------------------

    def model(
        self,
        model_id: str,
        run_id: str,
        mark: str,
        spec: dict[str, Any],
        upload: Callable[[], None],
        deployment_id: str,
    ) -> Outcome:
        """The model ``model_id`` holding this upload: reused when it holds it already, else
        created (or finished, or replaced) and ``upload()`` run into it. Replacing it removes
        its deployment ``deployment_id`` first (a deployed model cannot be deleted)."""
        path = f"{self.prefix}/models/{model_id}"
        tried_to_create = False
        for _ in range(_ROUNDS):
            existing = self.api.get_or_none("look up the model", path)
            if existing is None:
                body = {"modelId": model_id, "model": {**spec, "description": mark}}
                tried_to_create = True
                # registered first: a create whose reply was lost may well have created it
                self._created_model(model_id)
                try:
                    self.api.call("create the model", "POST", f"{self.prefix}/models", body)
                except AlreadyExists:  # created meanwhile (our own create, its reply lost?)
                    self.undo.forget(self._model_what(model_id))  # not ours until looked at
                    continue
                upload()
                return Outcome(self._name("models", model_id), reused=False)
            verdict = _judge_model(existing, run_id, mark)
            if verdict == "same" and existing.get("state") == "READY" and not tried_to_create:
                return Outcome(existing, reused=True)
            if verdict == "same":  # this very upload, not finished (or ours just now): finish it
                self._created_model(model_id)
                upload()
                return Outcome(existing, reused=False)
            if verdict == "foreign":
                raise _taken(
                    "model_id", f"model accounts/{self.account}/models/{model_id}", model_id
                )
            name = f"accounts/{self.account}/models/{model_id}"
            self.remove_deployment_of(name, deployment_id)
            self.remove_model(model_id)  # an earlier upload of this run, other files: replaced
        raise BackendError(f"Fireworks: model {model_id} keeps changing under this deploy")

    def remove_model(self, model_id: str) -> None:
        path = f"{self.prefix}/models/{model_id}"
        _removed(lambda: self.api.delete("delete the model", path), self._lookup(path))

    def model_hint(self, model_id: str) -> str:
        return (
            f"firectl model delete {model_id} --account-id {self.account}, or "
            f"DELETE {self.api.base}{self.prefix}/models/{model_id}"
        )

    def _model_what(self, model_id: str) -> str:
        return f"Fireworks model accounts/{self.account}/models/{model_id}"

    def _created_model(self, model_id: str) -> None:
        self.undo.created(
            self._model_what(model_id),
            self.model_hint(model_id),
            lambda: self.remove_model(model_id),
        )

    # -- the deployment --------------------------------------------------------------------------

    def deployment(self, deployment_id: str, model_name: str, spec: dict[str, Any]) -> Outcome:
        """The deployment ``deployment_id`` of ``model_name``: reused when it serves (or is
        being created for) that model, else created; one that failed or is being deleted is
        removed first."""
        path = f"{self.prefix}/deployments/{deployment_id}"
        query = urllib.parse.urlencode({"deploymentId": deployment_id})
        tried_to_create = False
        for _ in range(_ROUNDS):
            existing = self.api.get_or_none("look up the deployment", path)
            if existing is None:
                tried_to_create = True
                self._created_deployment(deployment_id)  # first, as for the model
                try:
                    created = self.api.call(
                        "create the deployment", "POST", f"{self.prefix}/deployments?{query}", spec
                    )
                except AlreadyExists:
                    self.undo.forget(self._deployment_what(deployment_id))
                    continue
                return Outcome(created, reused=False)
            if existing.get("baseModel") != model_name:
                what = f"deployment accounts/{self.account}/deployments/{deployment_id}"
                what += f" (of {str(existing.get('baseModel'))[:200]})"
                raise _taken("deployment_id", what, deployment_id)
            if str(existing.get("state", "")) in _GONE_STATES:
                self.remove_deployment(deployment_id)  # failed, or on its way out: made anew
                continue
            if tried_to_create:
                self._created_deployment(deployment_id)
            return Outcome(existing, reused=not tried_to_create)
        raise BackendError(
            f"Fireworks: deployment {deployment_id} keeps changing under this deploy"
        )

    def remove_deployment(self, deployment_id: str) -> None:
        """Delete the deployment for good (hard: its id is free again) and wait until it is gone,
        since its model cannot be deleted while it exists."""
        path = f"{self.prefix}/deployments/{deployment_id}"
        if not _removed(
            lambda: self.api.delete("delete the deployment", f"{path}?hard=true"),
            self._lookup(path),
        ):
            return  # it was never there

        def gone() -> bool | None:
            found = self.api.get_or_none("look up the deleted deployment", path)
            return True if found is None or found.get("state") == "DELETED" else None

        self._until(f"deployment {deployment_id} to be deleted", gone)

    def remove_deployment_of(self, model_name: str, deployment_id: str) -> None:
        """Before a model is replaced: remove its deployment ``deployment_id``, if it has one."""
        found = self.api.get_or_none(
            "look up the deployment", f"{self.prefix}/deployments/{deployment_id}"
        )
        if found is not None and found.get("baseModel") == model_name:
            self.remove_deployment(deployment_id)

    def deployment_hint(self, deployment_id: str) -> str:
        return (
            f"firectl deployment delete {deployment_id} --hard --account-id {self.account}, or "
            f"DELETE {self.api.base}{self.prefix}/deployments/{deployment_id}?hard=true"
        )

    def _deployment_what(self, deployment_id: str) -> str:
        return f"Fireworks deployment accounts/{self.account}/deployments/{deployment_id}"

    def _created_deployment(self, deployment_id: str) -> None:
        self.undo.created(
            self._deployment_what(deployment_id),
            self.deployment_hint(deployment_id),
            lambda: self.remove_deployment(deployment_id),
        )

    def _lookup(self, path: str) -> Callable[[], bool]:
        return lambda: self.api.get_or_none("look up what to delete", path) is not None

    def _name(self, kind: str, resource_id: str) -> dict[str, Any]:
        return {"name": f"accounts/{self.account}/{kind}/{resource_id}"}


def _judge_model(model: dict[str, Any], run_id: str, mark: str) -> str:
    """``same``: this upload; ``ours``: another upload of this run; ``foreign``: anything else."""
    description = str(model.get("description") or "")
    if description == mark:
        return "same"
    found = _MARK.match(description)
    if found and found["run"] == run_id[:_RUN_ID_CHARS]:
        return "ours"
    if not description and model.get("displayName") == display_name(run_id):
        return "ours"  # uploaded before uploads were marked: its files are unknown
    return "foreign"


def _removed(delete: Callable[[], None], exists: Callable[[], bool]) -> bool:
    """``delete()``; True when it went through. When it failed, whether the thing is there at
    all (a create that failed may never have made it) decides: gone, False; there, the error."""
    try:
        delete()
    except BackendError:
        try:
            still_there = exists()
        except BackendError:
            still_there = True  # cannot tell: named as left behind
        if still_there:
            raise
        return False
    return True


def _taken(param: str, what: str, resource_id: str) -> ConfigError:
    return ConfigError(
        Problem(
            param,
            f"the account already has a {what} that is not this run's upload; "
            f"pick another {param}=... (or delete it if it is yours to delete)",
            value=resource_id,
        )
    )

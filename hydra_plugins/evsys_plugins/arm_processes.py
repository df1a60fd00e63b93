"""The evsys_gpus launcher's arms, one process each: what the parent knows of an arm it started,
waiting for arms to end, and the arm's own process, which runs the Hydra job and replies.
"""

# No `from __future__ import annotations` here, as in the launcher: its dataclasses keep the
# typing spellings of Hydra plugins (OmegaConf 2.3).

import logging
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, List  # noqa: UP035

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("hydra_plugins.evsys_plugins.gpu_launcher")


@dataclass
class Arm:
    position: int  # in this launch's job_overrides
    overrides: List[str]  # noqa: UP006
    config: DictConfig
    needs_gpu: bool

    @property
    def label(self) -> str:
        return f"#{self.config.hydra.job.num} {OmegaConf.select(self.config, 'hydra.sweep.subdir')}"


@dataclass
class ChildJob:
    """What an arm's process needs to run the job as Hydra would in this process."""

    hydra_context: HydraContext
    task_function: TaskFunction
    config: DictConfig
    singleton_state: Any


@dataclass
class RunningArm:
    arm: Arm
    process: Any  # multiprocessing's SpawnProcess
    conn: Any  # the parent's end of the pipe the result comes back on
    slots: List[str]  # noqa: UP006
    reply: Any = None
    replied: bool = False

    def receive(self) -> None:
        """Read the reply if there is one; a dead child's pipe only says EOF."""
        try:
            if self.conn.poll():
                self.reply = self.conn.recv()
        except (EOFError, OSError):
            pass
        self.replied = True

    def finish(self) -> JobReturn:
        """The arm's JobReturn, failed with the exit code when the process died without one."""
        code, reply = self.process.exitcode, self.reply
        self.conn.close()
        self.process.close()
        if not isinstance(reply, JobReturn):
            if reply is None:
                from evsys.errors import BackendError

                reply = BackendError(
                    f"the arm's process ended ({exit_status(code)}) before it returned a "
                    "result: it was killed, crashed, or ran out of memory"
                )
            # else an exception from Hydra itself around the task (the task's own errors come
            # back inside a JobReturn)
            reply = JobReturn(
                overrides=self.arm.overrides, status=JobStatus.FAILED, _return_value=reply
            )
        detail = "" if reply.status is JobStatus.COMPLETED else f": {reply._return_value}"
        freed = f"; GPU slots {','.join(self.slots)} free again" if self.slots else ""
        log.info(
            "%s: ended, %s, Hydra job %s%s%s",
            self.arm.label, exit_status(code), reply.status.name, detail, freed,
        )  # fmt: skip
        return reply


def exit_status(code: int) -> str:
    import signal

    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def wait_for_ends(running: List[RunningArm]) -> List[RunningArm]:  # noqa: UP006
    """Block until at least one arm's process has ended; read replies as they come.

    Replies are read as soon as they are sent: a large one fills the pipe, and its sender would
    never exit if the parent only waited for the exit.
    """
    from multiprocessing.connection import wait

    pending = {r.conn: r for r in running if not r.replied}
    sentinels = {r.process.sentinel: r for r in running}
    ready = wait([*pending, *sentinels])
    for conn in ready:
        if conn in pending:
            pending[conn].receive()
    ended = []
    for sentinel in ready:
        if sentinel in sentinels:
            arm = sentinels[sentinel]
            arm.process.join()
            if not arm.replied:
                arm.receive()  # sent just before it exited
            ended.append(arm)
    return ended


@contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def run_arm_in_child(payload: bytes, conn: Any) -> None:
    """The arm's process: restore Hydra's state as the parent had it, run the job, reply."""
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals

    from evsys.compose.resolvers import register_resolvers

    # Hydra's plugin scan re-executes every plugin module, giving its classes new identities;
    # scan once, before unpickling anything that refers to them (configs built from a plugin's
    # dataclass), and keep that scan when the parent's singletons are restored.
    plugins = Plugins.instance()
    job: ChildJob = pickle.loads(payload)
    job.singleton_state["instances"][Plugins] = plugins
    Singleton.set_state(job.singleton_state)
    setup_globals()
    register_resolvers()
    reply: Any
    try:
        reply = run_job(
            hydra_context=job.hydra_context,
            task_function=job.task_function,
            config=job.config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except BaseException as exc:  # Hydra itself failed; run_job catches the task's exceptions
        reply = exc
    try:
        conn.send(reply)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        # An exception (or return value) that does not pickle comes back as its text.
        value = reply._return_value if isinstance(reply, JobReturn) else reply
        stand_in = RuntimeError(f"{type(value).__name__}: {value} (unpicklable: {exc})")
        if isinstance(reply, JobReturn):
            reply._return_value = stand_in
            conn.send(reply)
        else:
            conn.send(stand_in)
    conn.close()

"""One exception tree for evsys.

Every category also subclasses the builtin a caller would naturally catch (``ConfigError`` is a
``ValueError``), and every exception pickles, because submitit ships failures back from workers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from evsys.redaction import REDACTED, is_secret_key, redact_override


class EvsysError(Exception):
    """Base of every error evsys raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration, phrased for the person (or agent) who must fix it."""

    path: str
    """Dotted path of the offending key, e.g. ``algorithm.params.learning_rate``."""
    message: str
    """What is wrong, in one sentence."""
    value: Any = None
    """The offending value (``None`` when the key is missing)."""
    expected: str | None = None
    """What would have been accepted."""
    suggestion: str | None = None
    """The closest valid name, for misspelt keys, kinds and options."""
    source: str | None = None
    """Where the value came from: a command-line override, or a conf file and group option."""

    def __post_init__(self) -> None:
        # A misplaced secret (backend.params.api_key=tml-…) must not be echoed back.
        if self.value is not None and is_secret_key(self.path):
            object.__setattr__(self, "value", REDACTED)
        if self.source and self.source.startswith("override '"):
            line = self.source.removeprefix("override '").removesuffix("'")
            object.__setattr__(self, "source", f"override '{redact_override(line)}'")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "value"}


class ConfigError(EvsysError, ValueError):
    """A configuration that cannot run. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem | str, *, header: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(path="", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.header = header
        super().__init__(self._summary())

    def _summary(self) -> str:
        lines = [self.header] if self.header else []
        for p in self.problems:
            where = f"{p.path}: " if p.path else ""
            hint = f" (did you mean '{p.suggestion}'?)" if p.suggestion else ""
            lines.append(f"{where}{p.message}{hint}")
        return "\n".join(lines)

    def __reduce__(self):
        return (_rebuild_config_error, (self.problems, self.header))


def _rebuild_config_error(problems: list[Problem], header: str | None) -> ConfigError:
    return ConfigError(problems, header=header)


class UnknownExtensionError(ConfigError, LookupError):
    """A ``kind`` (or group option) that no registry holds."""


class DataError(EvsysError, ValueError):
    """Input data that cannot be read: a missing file, a broken JSONL line, a wrong row shape."""


class BackendError(EvsysError, RuntimeError):
    """A training or inference engine that failed or cannot be reached."""


class TrainingError(EvsysError, RuntimeError):
    """Training that cannot go on: a phase that did not complete, no usable samples."""


class CallbackError(EvsysError, RuntimeError):
    """A callback that failed, and declared (``on_error: fail``) that the run fails with it."""


class MissingDependencyError(EvsysError, ImportError):
    """An optional dependency that is not installed; the message says which extra provides it."""

    def __init__(self, package: str, extra: str, purpose: str):
        self.package, self.extra, self.purpose = package, extra, purpose
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'evsys[{extra}]'"
        )

    def __reduce__(self):
        return (MissingDependencyError, (self.package, self.extra, self.purpose))

"""Alias matching: a prediction is right when it names the expected answer or one of its aliases.

Tool slugs, entity names and units are often spelt more than one way (``GMAIL_SEND_EMAIL`` and
``gmail.send_email``; ``NYC`` and ``New York City``). An alias file lists the accepted spellings::

    {"GMAIL_SEND_EMAIL": ["gmail.send_email", "send_email"], "NYC": ["New York City"]}

(JSON or YAML; a list of groups, ``[["NYC", "New York City"], …]``, works too). Each entry is a
group of names that all mean the same; a name in two groups means what both mean. A row may carry
its own verified aliases in ``aliases`` (or ``metadata.aliases``). Names are compared after
:func:`evsys.answers.normalize` (case, whitespace, wrapping quotes, a trailing period).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from evsys.answers import normalize
from evsys.errors import DataError

MatchKind = Literal["exact", "alias"]


class AliasMatcher:
    """Answers and the other names they go by."""

    def __init__(self, groups: Mapping[str, Iterable[str]] | Iterable[Iterable[str]] = ()):
        self._names: dict[str, set[str]] = {}  # normalized name → every name of its groups
        items = groups.items() if isinstance(groups, Mapping) else ((None, g) for g in groups)
        for canonical, aliases in items:
            if isinstance(aliases, str):
                aliases = [aliases]
            group = {normalize(str(a)) for a in aliases}
            if canonical is not None:
                group.add(normalize(str(canonical)))
            group.discard("")
            for name in group:
                self._names.setdefault(name, set()).update(group)

    @classmethod
    def from_file(cls, path: str | Path) -> AliasMatcher:
        """Read an alias file (JSON, or YAML for ``.yaml``/``.yml``); DataError names the problem."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such alias file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # JSONDecodeError or YAMLError: either way the file is broken
            raise DataError(f"{path}: not a valid alias file: {exc}") from None
        if isinstance(data, Mapping):
            bad = [k for k, v in data.items() if not isinstance(v, str | list)]
        elif isinstance(data, list):
            bad = [i for i, v in enumerate(data) if not isinstance(v, list)]
        else:
            bad = ["(top level)"]
        if bad:
            raise DataError(
                f"{path}: an alias file maps each answer to a list of aliases "
                f'({{"ANSWER": ["alias", …]}}) or lists groups ([["a", "b"], …]); '
                f"bad entry: {bad[0]!r}"
            )
        return cls(data)

    def __len__(self) -> int:
        return len(self._names)

    def names_of(self, answer: str, extra: Iterable[str] = ()) -> set[str]:
        """Every normalized name ``answer`` goes by: itself, its groups, and ``extra`` aliases."""
        key = normalize(answer)
        names = {key, *self._names.get(key, ()), *(normalize(str(a)) for a in extra)}
        for alias in list(names):  # an extra alias brings its own group along
            names |= self._names.get(alias, set())
        names.discard("")
        return names

    def match(
        self, predicted: str | None, expected: str, extra: Iterable[str] = ()
    ) -> MatchKind | None:
        """``exact`` when ``predicted`` is the answer, ``alias`` when it is another of its names."""
        if predicted is None:
            return None
        guess = normalize(predicted)
        if not guess:
            return None
        if guess == normalize(expected):
            return "exact"
        return "alias" if guess in self.names_of(expected, extra) else None

    def matches(self, predicted: str | None, expected: str, extra: Iterable[str] = ()) -> bool:
        return self.match(predicted, expected, extra) is not None


def row_aliases(row: Mapping[str, Any]) -> list[str]:
    """The verified aliases a row carries: ``aliases``, else ``metadata.aliases``."""
    aliases = row.get("aliases")
    if aliases is None:
        aliases = (row.get("metadata") or {}).get("aliases")
    if aliases is None:
        return []
    return [aliases] if isinstance(aliases, str) else [str(a) for a in aliases]

"""The names of Hugging Face datasets and configs that the schema accepts (``data.hf_dataset``,
``data.hf_config``): plain text, because ``datasets`` turns them into cache paths.

A name is parts of letters, digits, ``-``, ``_`` and ``.`` (a dataset name: parts between
``/``), never ``..``, never absolute, never ``${...}``: never a way out of a directory, never
something to resolve.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_PART = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def _plain(value: str, *, parts: bool) -> str:
    if not all(_PART.fullmatch(part) for part in (value.split("/") if parts else [value])):
        raise ValueError(
            f"{value!r} is not a plain name (a builder, a Hub id owner/name, a directory "
            "under the data store): use letters, digits, '-', '_' and '.' between '/', "
            "no '..', no absolute path"
        )
    return value


HFDatasetName = Annotated[str, AfterValidator(lambda value: _plain(value, parts=True))]
"""A builder, a Hub id (``name`` or ``owner/name``) or a directory under the data store."""
HFConfigName = Annotated[str, AfterValidator(lambda value: _plain(value, parts=False))]
"""A dataset's config: one part."""

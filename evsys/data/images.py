"""Image files a row refers to, read from its benchmark's (or data file's) ``images/`` folder.

A row names an image file by a relative path in either image block shape (:mod:`evsys.data.types`):
``{"type": "image_url", "image_url": {"url": "images/cat.png"}}`` or ``{"type": "image",
"source": {"type": "url", "url": "images/cat.png"}}``. Loading the rows replaces each such block
with the same shape holding the file inline (a ``data:`` URL, or a base64 source), so every
backend and hosted client receives the pixels and no file is opened later.

Paths are data: a path must lie inside ``<folder>/images/`` after symlinks are followed (no
``..``, no absolute path, no link out), be a regular file of at most ``MAX_IMAGE_BYTES`` and
decode as an image of at most ``MAX_IMAGE_PIXELS``; anything else is one DataError naming the row.
URLs (``https://``, ``gs://``, …; ``file://`` is refused) and inline ``data:`` URLs are left as
they are.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evsys.errors import DataError, MissingDependencyError

IMAGES_DIR = "images"
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
_URL_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
# What PIL calls each format it may find, as the media type hosted APIs expect.
_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


def inline_image_files(
    rows: list[dict[str, Any]], folder: Path, where: str
) -> list[dict[str, Any]]:
    """``rows`` with every image file reference replaced by the file's bytes, inline; ``where``
    names the rows' source (the error says ``<where> row <n>``)."""
    return [
        inline_row_images(row, folder, f"{where} row {index}") for index, row in enumerate(rows)
    ]


def inline_row_images(row: dict[str, Any], folder: Path, where: str) -> dict[str, Any]:
    """One row with its image file references inlined (metadata is not content: left alone)."""
    return {
        key: value if key == "metadata" else _inline(value, folder, where)
        for key, value in row.items()
    }


def _inline(value: Any, folder: Path, where: str) -> Any:
    if isinstance(value, Mapping):
        reference = file_reference(value)
        if reference is not None:
            return _inline_block(value, read_image_file(folder, reference, where))
        return {key: _inline(item, folder, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_inline(item, folder, where) for item in value]
    return value


def file_reference(block: Mapping[str, Any]) -> str | None:
    """The file path an image block names, or None (not an image block, or a web/inline URL)."""
    if block.get("type") == "image_url":
        image = block.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
    elif block.get("type") == "image" and isinstance(block.get("source"), Mapping):
        source = block["source"]
        url = source.get("url") if source.get("type") == "url" else None
    else:
        return None
    if not isinstance(url, str) or url.startswith("data:"):
        return None
    remote = _URL_SCHEME.match(url)
    if remote and remote["scheme"].lower() != "file":
        return None  # a web or cloud URL (https://, gs://): the hosted API's to fetch
    return url


def _inline_block(block: Mapping[str, Any], image: tuple[str, str]) -> dict[str, Any]:
    media_type, data = image
    if block.get("type") == "image_url":
        image_url = block.get("image_url")
        detail = image_url.get("detail") if isinstance(image_url, Mapping) else None
        url = {"url": f"data:{media_type};base64,{data}", **({"detail": detail} if detail else {})}
        return {**block, "image_url": url}
    return {**block, "source": {"type": "base64", "media_type": media_type, "data": data}}


def read_image_file(folder: Path, reference: str, where: str) -> tuple[str, str]:
    """``(media_type, base64 data)`` of ``<folder>/<reference>``, a file inside ``images/``."""
    images = (folder / IMAGES_DIR).resolve()
    expected = f"a path inside the folder's {IMAGES_DIR}/ ({images}), like '{IMAGES_DIR}/cat.png'"
    if "\x00" in reference or reference.startswith(("/", "\\", "~")) or ":" in reference:
        raise DataError(
            f"{where}: image path {reference!r} is not a plain relative path; expected {expected}"
        )
    parts = Path(reference).parts
    if not parts or parts[0] != IMAGES_DIR or ".." in parts or "\\" in reference:
        raise DataError(f"{where}: image path {reference!r} is not {expected}")
    try:
        data = _read_inside(folder, reference, where)
    except DataError:
        raise
    except (OSError, ValueError) as exc:  # a name the file system cannot take, a read failing
        raise DataError(f"{where}: image path {reference!r} cannot be read ({exc})") from None
    media_type = image_media_type(data, f"{where}: image file {reference!r}")
    return media_type, base64.b64encode(data).decode("ascii")


def _read_inside(folder: Path, reference: str, where: str) -> bytes:
    root, images = folder.resolve(), (folder / IMAGES_DIR).resolve()
    if not images.is_relative_to(root):
        raise DataError(f"{where}: image path {reference!r}: {IMAGES_DIR}/ leads outside {root}")
    target = (folder / reference).resolve()  # symlinks followed: a link out lands outside
    if not target.is_relative_to(images):
        raise DataError(f"{where}: image path {reference!r} leads outside {images}")
    if not target.is_file():
        raise DataError(
            f"{where}: image file {reference!r} does not exist in {folder} (or is not a file)"
        )
    size = os.stat(target).st_size
    if size > MAX_IMAGE_BYTES:
        raise DataError(
            f"{where}: image file {reference!r} is {size} bytes; the limit is {MAX_IMAGE_BYTES}"
        )
    return target.read_bytes()


def image_media_type(data: bytes, what: str) -> str:
    """The media type of image bytes, after checking they decode within the size limits."""
    return _open_checked(data, what)[0]


def decode_image(block: Mapping[str, Any], what: str) -> Any:
    """The RGB ``PIL.Image`` of an inline image block (base64 source or ``data:`` URL); a web
    URL or a file path is refused, since nothing is fetched or opened here."""
    from evsys.clients.content import image_source

    how, value, _ = image_source(block)
    if how != "base64":
        raise DataError(
            f"{what}: image {str(value)[:80]!r} is not inline; a local model reads only inline "
            f"images (base64, data: URLs) and files of a benchmark's or data file's "
            f"{IMAGES_DIR}/ folder, which are inlined when the rows are read"
        )
    if len(value or "") > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise DataError(f"{what}: inline image is over {MAX_IMAGE_BYTES} bytes")
    try:
        data = base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"{what}: inline image is not valid base64") from None
    return _open_checked(data, what)[1].convert("RGB")


def _open_checked(data: bytes, what: str) -> tuple[str, Any]:
    """``(media_type, decoded PIL image)``; the pixel count is checked before decoding."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError("pillow", "local", "Reading images") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(f"{what}: image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}")
    try:
        image = Image.open(io.BytesIO(data), formats=list(_MEDIA_TYPES))
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise DataError(
                f"{what}: image is {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels"
            )
        image.load()  # decodes now: a truncated or corrupt file fails here, not in training
    except DataError:
        raise
    except Image.DecompressionBombError:  # PIL's own guard, far above ours: say it as ours
        raise DataError(f"{what}: image has over {MAX_IMAGE_PIXELS} pixels, the limit") from None
    except Image.UnidentifiedImageError:
        raise DataError(
            f"{what}: not a readable image (expected one of: {', '.join(_MEDIA_TYPES)})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"{what}: corrupt image ({exc})") from None
    return _MEDIA_TYPES[image.format], image

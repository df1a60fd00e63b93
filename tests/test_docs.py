"""The docs site: it builds with `mkdocs build --strict`, needs no outside host, and the README
stays the short front page that links into it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from conftest import REPO, doc_block

# Where a built page may load something from the network: <link href>, <script src>, <img src>,
# CSS url(...) and @import. Links a reader follows (<a href>) are not loads.
REMOTE_LOAD = re.compile(
    r"""<(?:link|script|img|iframe|source)\b[^>]*\b(?:href|src)=["']?(?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:https?:)?//""",
    re.I,
)


def build_site(directory: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    # NO_MKDOCS_2_WARNING: Material's banner about its end of life, printed on every build.
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(directory)],
        cwd=cwd,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_site_builds_strictly_and_loads_nothing_from_outside(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = build_site(site)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert not re.findall(r"^(?:WARNING|ERROR)\b.*", log, re.M), log[-4000:]
    # Every page of docs/ is built; the README's quickstart is in Getting started (a snippet,
    # not a copy), and the API reference came out of the docstrings.
    for page in (REPO / "docs").rglob("*.md"):
        name = page.relative_to(REPO / "docs").with_suffix("")
        assert (site / (name.parent if name.name == "index" else name) / "index.html").is_file()
    assert "bash scripts/quickstart" in (site / "getting-started" / "index.html").read_text()
    api = (site / "api" / "index.html").read_text()
    assert "The overrides of one experiment, how to run them" in api
    loads = {
        str(path.relative_to(site)): REMOTE_LOAD.findall(path.read_text(errors="replace"))
        for path in site.rglob("*")
        if path.suffix in {".html", ".css"}
    }
    assert not {path: found for path, found in loads.items() if found}


@pytest.mark.slow  # a second build of the whole site, only to show the first one can fail
def test_a_page_that_links_nowhere_fails_the_build(tmp_path: Path) -> None:
    """The strict build above can fail: a broken link in a page is an error, not a warning."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "docs", copy / "docs")
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(REPO / name, copy / name)
    (copy / "evsys").symlink_to(REPO / "evsys")
    page = copy / "docs" / "getting-started.md"
    page.write_text(page.read_text() + "\n[gone](no-such-page.md)\n")
    result = build_site(tmp_path / "site", cwd=copy)
    assert result.returncode != 0
    assert "no-such-page.md" in result.stdout + result.stderr


def test_the_readme_is_short_and_its_doc_links_resolve() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    # The two commands, as CI runs the second one (.ci/run → scripts/test).
    quickstart = doc_block("## Quickstart", language="bash")
    assert "bash scripts/quickstart" in quickstart and "bash scripts/test" in quickstart
    assert "bash scripts/test" in (REPO / ".ci" / "run").read_text()
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)\s]*)?\)", readme)
    assert links
    assert [link for link in links if not (REPO / link).is_file()] == []


def test_a_documented_block_is_found_in_exactly_one_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """doc_block finds a heading in the README or in any docs page, and refuses one it cannot
    find or finds twice (a section copied instead of moved)."""
    assert "register_callback" in doc_block("# Callbacks")
    assert "bash scripts/quickstart" in doc_block("## Quickstart", language="bash")
    with pytest.raises(LookupError, match="0 sections"):
        doc_block("## No such heading")
    twice = [tmp_path / "a.md", tmp_path / "b.md"]
    for path in twice:
        path.write_text("# Page\n\n## Same\n\n```python\nx = 1\n```\n")
    monkeypatch.setattr(conftest, "doc_files", lambda: twice)
    with pytest.raises(LookupError, match="2 sections"):
        doc_block("## Same")

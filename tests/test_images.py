"""Image files of a benchmark's (or data file's) images/ folder: read into the rows inline, never
from outside the folder; and what the mock, tinker and hosted backends do with image rows."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from conftest import flow, require, run_evsys, run_in_process
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_vlm import COLOURS, colour_folder, colour_row, data_url, png
from vendor_servers import AnthropicServer, OpenAIServer

require("PIL", "pip install 'evsys[local]'")

from evsys.backends.mock.inference import MockInferenceClient  # noqa: E402
from evsys.backends.mock.policy import MockPolicy  # noqa: E402
from evsys.benchmarks import read_benchmark  # noqa: E402
from evsys.data.images import inline_image_files, inline_row_images  # noqa: E402
from evsys.errors import ConfigError, DataError  # noqa: E402

PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}
SECRET = png((1, 2, 3))  # an image outside images/: no reference may ever read it


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _inline_data(row: dict[str, Any]) -> bytes:
    url = row["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return base64.b64decode(url.split(",", 1)[1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bench/images/{red,blue,green}.png, a link out of images/, a text file, a secret beside."""
    root = tmp_path_factory.mktemp("images")
    bench = root / "bench"
    colour_folder(bench)
    (bench / "secret.png").write_bytes(SECRET)
    (root / "outside.png").write_bytes(SECRET)
    (bench / "images" / "link.png").symlink_to(root / "outside.png")
    (bench / "images" / "sub").mkdir()
    (bench / "images" / "sub" / "up.png").symlink_to(bench / "secret.png")
    (bench / "images" / "notes.png").write_text("not an image at all\n")
    return bench


def test_image_files_are_read_inline_in_either_block_shape(folder: Path) -> None:
    anthropic = {"type": "image", "source": {"type": "url", "url": "images/blue.png"}}
    rows = [
        colour_row("red", "images/red.png"),
        {"messages": [{"role": "user", "content": [anthropic]}], "metadata": {"f": "images/x"}},
        colour_row("web", "https://example.com/a.png"),
        colour_row("cloud", "gs://bucket/a.png"),
    ]
    red, blue, web, cloud = inline_image_files(rows, folder, "data")
    assert cloud == rows[3]
    assert _inline_data(red) == (folder / "images/red.png").read_bytes()
    assert red["answer"] == "red" and red["messages"][1] == rows[0]["messages"][1]
    source = blue["messages"][0]["content"][0]["source"]
    assert source["type"] == "base64" and source["media_type"] == "image/png"
    assert base64.b64decode(source["data"]) == (folder / "images/blue.png").read_bytes()
    assert blue["metadata"] == {"f": "images/x"}  # metadata is not content
    assert web == rows[2]  # a web URL is the hosted API's to fetch


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("../outside.png", "is not a path inside"),
        ("images/../secret.png", "is not a path inside"),
        ("/etc/passwd", "is not a plain relative path"),
        ("file:///etc/passwd", "is not a plain relative path"),
        ("FILE://images/red.png", "is not a plain relative path"),
        ("secret.png", "is not a path inside"),
        ("images/link.png", "leads outside"),
        ("images/sub/up.png", "leads outside"),
        ("images", "does not exist"),
        ("images/sub", "does not exist"),
        ("images/missing.png", "does not exist"),
        ("images/notes.png", "not a readable image"),
    ],
)
def test_a_bad_image_path_is_one_error_naming_the_row(
    folder: Path, reference: str, says: str
) -> None:
    rows = [colour_row("red", "images/red.png"), colour_row("x", reference)]
    with pytest.raises(DataError, match=r"^data row 1: image .*" + says):
        inline_image_files(rows, folder, "data")


_NAME_PARTS = st.sampled_from(
    [
        "images",
        "..",
        ".",
        "",
        "red.png",
        "link.png",
        "sub",
        "up.png",
        "secret.png",
        "/",
        "~",
        "notes.png",
        "\\",
        "%2e%2e",
        "\x00",
        "C:",
        "images/",
    ]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(st.one_of(_NAME_PARTS, st.text(max_size=8)), min_size=1, max_size=5),
    separator=st.sampled_from(["/", "\\", "//"]),
)
def test_no_generated_path_reads_outside_images(
    folder: Path, parts: list[str], separator: str
) -> None:
    reference = separator.join(parts)
    row = colour_row("x", reference)
    try:
        inlined = inline_row_images(row, folder, "task 3")
    except DataError as exc:
        assert str(exc).startswith("task 3: image"), exc
        return
    remote = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", reference)
    if reference.startswith("data:") or (remote and remote[1].lower() != "file"):
        assert inlined == row  # a URL: the hosted API's to fetch
        return
    # Read: then it was a real image inside images/, never the secret beside or outside it.
    data = _inline_data(inlined)
    assert data != SECRET
    inside = (folder / reference).resolve()
    assert inside.is_relative_to((folder / "images").resolve())
    assert data == inside.read_bytes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), keep=st.integers(min_value=0, max_value=200))
def test_corrupt_image_bytes_are_a_clear_error(tmp_path: Path, data: bytes, keep: int) -> None:
    (tmp_path / "images").mkdir(exist_ok=True)
    # Random bytes, and a real PNG cut short or with random bytes after its header.
    for index, content in enumerate([data, png((9, 9, 9))[:keep], png((9, 9, 9))[:33] + data]):
        (tmp_path / "images" / f"{index}.png").write_bytes(content)
        row = colour_row("x", f"images/{index}.png")
        try:
            inline_row_images(row, tmp_path, "row 7")
        except DataError as exc:
            assert str(exc).startswith("row 7: image file 'images/"), exc


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: its header, then a scrap of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_a_huge_image_is_refused_before_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "huge.png").write_bytes(_png_header(5_000, 5_000))
    with pytest.raises(DataError, match=r"row 0: image .*5000x5000 pixels; the limit"):
        inline_image_files([colour_row("x", "images/huge.png")], tmp_path, "data")
    (tmp_path / "images" / "bomb.png").write_bytes(_png_header(60_000, 60_000))
    with pytest.raises(DataError, match=r"row 0: image .*over \d+ pixels, the limit"):
        inline_image_files([colour_row("x", "images/bomb.png")], tmp_path, "data")
    (tmp_path / "images" / "red.png").write_bytes(png(COLOURS["red"]))
    monkeypatch.setattr("evsys.data.images.MAX_IMAGE_BYTES", 50)
    with pytest.raises(DataError, match=r"row 0: image file 'images/red.png' is \d+ bytes"):
        inline_image_files([colour_row("x", "images/red.png")], tmp_path, "data")


def test_a_benchmark_reads_its_images_folder_and_names_a_bad_task(folder: Path) -> None:
    _jsonl(folder / "tasks.jsonl", [colour_row(n, f"images/{n}.png") for n in COLOURS])
    rows, _ = read_benchmark(folder, "metadata.benchmark[0]")
    assert [_inline_data(r) for r in rows] == [png(rgb) for rgb in COLOURS.values()]
    bad = [colour_row("red", "images/red.png"), colour_row("x", "../secret.png")]
    _jsonl(folder / "tasks.jsonl", bad)
    with pytest.raises(DataError, match=r"metadata.benchmark\[0\]: .*tasks.jsonl:2: .*secret"):
        read_benchmark(folder, "metadata.benchmark[0]")


def test_the_eval_harness_reads_the_images_beside_its_jsonl(tmp_path: Path) -> None:
    from evsys.harness.prompts import load_eval_dataset

    colour_folder(tmp_path)
    rows = [colour_row("red", "images/red.png"), colour_row("x", "images/../red.png")]
    path = _jsonl(tmp_path / "eval.jsonl", rows[:1])
    assert _inline_data(load_eval_dataset(path)[0][0]) == png(COLOURS["red"])
    _jsonl(path, rows)
    with pytest.raises(DataError, match=r"eval.jsonl:2: image path 'images/../red.png'"):
        load_eval_dataset(path)


def test_a_run_with_a_hostile_image_path_exits_2_naming_the_row(workdir: Path) -> None:
    colour_folder(workdir / "data")
    rows = [colour_row("red", "images/red.png"), colour_row("x", "images/../../../etc/passwd")]
    train = _jsonl(workdir / "data" / "train.jsonl", rows)
    result = run_evsys(f"data.path={train}", "data.transforms=[]", cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "row 1: image path 'images/../../../etc/passwd' is not a path inside" in output
    assert "Traceback" not in output


def test_hosted_clients_receive_the_images_of_rows_and_benchmarks(workdir: Path) -> None:
    colour_folder(workdir / "data")
    colour_folder(workdir / "bench")
    train = _jsonl(workdir / "data" / "train.jsonl", [colour_row("red", "images/red.png")])
    _jsonl(workdir / "bench" / "tasks.jsonl", [colour_row("blue", "images/blue.png")])
    with OpenAIServer() as openai, AnthropicServer() as anthropic:
        keyless = {"api_key_env": None, "price": PRICE}
        client = {"base_url": openai.base_url, "model": "gpt-test", **keyless}
        baseline = {"base_url": anthropic.base_url, "model": "claude-test", **keyless}
        benchmark = {
            "path": str(workdir / "bench"),
            "models": [{"kind": "claude", "params": baseline, "name": "claude"}],
        }
        overrides = [
            f"data.path={train}",
            f"data.eval_path={train}",
            "data.transforms=[]",
            "eval.metrics=[{kind: exact_match}]",
            f"eval.inference={flow({'kind': 'openai', 'params': client})}",
            f"+metadata.benchmark={flow([benchmark])}",
        ]
        record = run_in_process(overrides, workdir / "run").record
    assert record["status"] == "completed", record["error"]
    sent = [r["messages"][0]["content"][0]["image_url"]["url"] for r in openai.requests]
    assert sorted(sent) == sorted([data_url(png(COLOURS["red"])), data_url(png(COLOURS["blue"]))])
    (claude,) = anthropic.requests
    source = claude["messages"][0]["content"][0]["source"]
    assert source == {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(png(COLOURS["blue"])).decode(),
    }


def test_the_mock_model_tells_images_apart() -> None:
    from evsys.backends.mock.images import seen_prompt

    rows = [colour_row(name, data_url(png(rgb))) for name, rgb in COLOURS.items()]
    seen = [seen_prompt(row) for row in rows]
    assert len(set(seen)) == 3 and all(s.endswith("What colour is this square?") for s in seen)
    assert seen == [seen_prompt(row) for row in rows]  # deterministic
    policy = MockPolicy(capacity=8)
    for row, prompt in zip(rows, seen, strict=True):
        policy.answers[prompt], policy.confidence[prompt] = row["answer"], 1.0
    client = MockInferenceClient.for_policy(policy)
    answers = [client.generate(prompt=row["messages"][:1]) for row in rows]
    assert answers == list(COLOURS)


def test_the_tinker_backend_refuses_images_naming_itself() -> None:
    from evsys.backends.tinker.rendering import datum, prompt_tokens

    row = colour_row("red", data_url(png(COLOURS["red"])))
    with pytest.raises(ConfigError, match=r"backend 'tinker' cannot take images \(message 0"):
        prompt_tokens(None, row["messages"][:1])
    with pytest.raises(ConfigError, match="backend 'tinker' cannot take images"):
        datum(None, row, max_length=64, assistant_only=True)


def test_an_images_folder_linked_from_outside_the_benchmark_is_refused(tmp_path: Path) -> None:
    colour_folder(tmp_path / "elsewhere")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "images").symlink_to(tmp_path / "elsewhere" / "images")
    with pytest.raises(DataError, match=r"row 0: image path 'images/red.png': images/ leads out"):
        inline_image_files([colour_row("red", "images/red.png")], tmp_path / "bench", "d")


@settings(max_examples=80, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
        st.text(max_size=60),
        st.just(base64.b64encode(_png_header(60_000, 60_000)).decode()),
    ),
    row=st.integers(min_value=0, max_value=99),
)
def test_a_corrupt_inline_image_is_a_clear_error_naming_the_row(payload: str, row: int) -> None:
    from evsys.backends.local.vision import training_example

    messages = [colour_row("x", f"data:image/png;base64,{payload}", answer=False)]
    with pytest.raises(DataError, match=rf"^train row {row} message 0: "):
        training_example(messages, f"train row {row}")


def test_a_local_model_takes_only_inline_images() -> None:
    from evsys.backends.local.vision import generation_messages, training_example

    (shown,) = generation_messages([colour_row("x", data_url(png((5, 5, 5))), answer=False)], "p")
    assert shown["content"][0]["image"].size == (24, 24)
    assert training_example(colour_row("red", data_url(png((5, 5, 5))))["messages"], "r")[
        "messages"
    ][0]["content"][0] == {"type": "image"}
    for url in ("https://example.com/cat.png", "images/red.png"):
        with pytest.raises(DataError, match=r"prompt 2 message 0: image .* is not inline"):
            generation_messages([colour_row("x", url, answer=False)], "prompt 2")

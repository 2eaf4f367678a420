"""docs/cli.md is generated from --help (scripts/gen_cli_docs.py) and must not rot."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", REPO / "scripts/gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date() -> None:
    gen = load_generator()
    expected = gen.render()
    actual = (REPO / "docs/cli.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/cli.md is out of date: run python3 scripts/gen_cli_docs.py"


def test_cli_reference_covers_every_command_with_its_example() -> None:
    gen = load_generator()
    text = (REPO / "docs/cli.md").read_text(encoding="utf-8")
    paths = gen.command_paths()
    assert [] in paths and ["kill"] in paths and ["status"] in paths
    for path in paths[1:]:
        section = text.split(f"## {' '.join(['agentfire', *path])}\n", 1)[1].split("\n## ", 1)[0]
        assert "Usage: agentfire" in section and "Example:" in section, path

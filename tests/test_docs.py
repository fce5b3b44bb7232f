"""The documentation keeps up with the code: settings, front matter fields, commands, quick start.

Pure tests: they read files and import modules, and touch no database.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import _parser
from service.config import ENV_PREFIX, ENVIRONMENT_ONLY, Settings
from service.ingest.frontmatter import FIELDS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
CONFIGURATION = DOCS / "configuration.md"
FORMATS = DOCS / "formats.md"

QUICK_START = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/announce run",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest",
)

SETTINGS = sorted(Settings.model_fields)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _config_yaml() -> dict[str, Any]:
    data = yaml.safe_load(_read(REPO / "config.yaml"))
    assert isinstance(data, dict), "config.yaml must be a mapping of keys to values"
    return data


def _all_docs() -> str:
    return "\n".join(_read(path) for path in [README, *sorted(DOCS.glob("*.md"))])


def _subcommands() -> list[str]:
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert actions, "the announce parser has no subcommands"
    return sorted(actions[0].choices)


def _as_yaml_value(value: object) -> object:
    # config.yaml writes paths as strings and "not set" as null.
    return str(value) if isinstance(value, Path) else value


@pytest.mark.parametrize("key", SETTINGS)
def test_setting_is_documented(key: str) -> None:
    text = _read(CONFIGURATION)
    assert f"`{key}`" in text, f"docs/configuration.md does not document `{key}`"
    env = f"{ENV_PREFIX}{key.upper()}"
    assert env in text, f"docs/configuration.md does not name the environment variable {env}"


@pytest.mark.parametrize("key", SETTINGS)
def test_setting_is_in_config_yaml(key: str) -> None:
    if key in ENVIRONMENT_ONLY:  # secrets: config.yaml names the variable and the *_file setting instead
        text = _read(REPO / "config.yaml")
        assert key not in _config_yaml(), f"config.yaml must not list the secret {key!r}"
        assert f"{ENV_PREFIX}{key.upper()}" in text
        assert f"{key}_file:" in text
        return
    assert key in _config_yaml(), f"config.yaml has no top-level key {key!r}"


def test_config_yaml_has_only_known_keys() -> None:
    unknown = sorted(set(_config_yaml()) - set(Settings.model_fields))
    assert unknown == [], f"config.yaml has keys that are not settings: {unknown}"


@pytest.mark.parametrize("key", SETTINGS)
def test_config_yaml_shows_the_default(key: str) -> None:
    data = _config_yaml()
    if key not in data:
        return  # reported by test_setting_is_in_config_yaml
    default = _as_yaml_value(Settings.model_fields[key].get_default(call_default_factory=True))
    assert data[key] == default, f"config.yaml sets {key}: {data[key]!r}, but the default is {default!r}"


@pytest.mark.parametrize("field", FIELDS)
def test_front_matter_field_is_documented(field: str) -> None:
    assert f"`{field}`" in _read(FORMATS), f"docs/formats.md does not document the field `{field}`"


@pytest.mark.parametrize("command", QUICK_START)
def test_readme_has_the_quick_start_commands(command: str) -> None:
    assert command in _read(README), f"README.md lacks the quick-start command: {command}"


@pytest.mark.parametrize("command", _subcommands())
def test_cli_subcommand_is_documented(command: str) -> None:
    assert f"announce {command}" in _all_docs(), f"no `announce {command}` in README.md or docs/"


def test_relative_links_point_to_existing_files() -> None:
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _read(page)):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == [], f"broken links: {broken}"


def _anchors(page: Path) -> set[str]:
    # GitHub's rule: lowercase, drop punctuation except '-' and '_', spaces become '-'.
    headings = re.findall(r"^#+\s+(.+?)\s*$", _read(page), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_to_sections_point_to_existing_headings() -> None:
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", _read(page)):
            if "://" in target:
                continue
            linked = page.parent / target if target else page
            if linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(REPO)} -> {target}#{anchor}")
    assert broken == [], f"links to missing sections: {broken}"

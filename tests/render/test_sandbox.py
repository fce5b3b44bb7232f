"""Operator templates run sandboxed: they cannot reach settings, secrets, the environment or Python.

An operator may edit any template (templates_dir). Each payload below replaces a real template and is
rendered through the real renderer with its real context; it must fail (SecurityError for unsafe
attributes and calls, UndefinedError for names no renderer passes) or render nothing sensitive.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from service.config import Settings
from service.render.bulletin import MailRenderer, Sender
from service.render.environment import make_environment
from service.render.pages import PageRenderer
from service.runtime import site_from

TEMPLATES = Path(__file__).parents[2] / "templates"
SECRET = "sandbox-secret-3c9d1e"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

PAYLOADS = [
    # Names no renderer passes: settings, the environment, modules.
    "{{ config }}",
    "{{ settings.secret_key }}",
    "{{ environ }}",
    "{{ os.environ }}",
    "{{ request }}",
    # Python internals through the objects a template is given, or Jinja2's default globals.
    "{{ site.__class__ }}",
    "{{ site.__class__.__init__.__globals__ }}",
    "{{ site.__reduce_ex__(2) }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ _.__globals__ }}",
    "{{ gettext.__closure__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ site|attr('__class__') }}",
    "{{ site.tz.__class__.__module__ }}",
    # str.format reaches attributes the sandbox would refuse: it checks them too.
    "{{ '{0.__class__.__init__.__globals__}'.format(site) }}",
    "{{ '%s'.format_map(site.__dict__) }}",
    # Immutable sandbox: nothing a template is given can be changed.
    "{% set d = {} %}{{ d.update(a=1) }}",
    "{{ feeds.append(1) }}",
]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A copy of the shipped templates, for the operator (the test) to edit."""
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    return folder


@pytest.fixture
def settings(tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ANNOUNCE_SECRET_KEY", SECRET)
    monkeypatch.setenv("SANDBOX_PROBE", SECRET)  # anything in the process environment
    return Settings(templates_dir=templates, data_dir=tmp_path / "var", smtp_password=SECRET)


def refused_or_harmless(render: object) -> None:
    try:
        assert callable(render)
        output = str(render())
    except (SecurityError, UndefinedError):
        return
    assert SECRET not in output
    for leak in ("environ", "__globals__", "<class", "<function", "<module"):
        assert leak not in output


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_operator_page_template_cannot_reach_settings_or_python(
    templates: Path, settings: Settings, payload: str
) -> None:
    (templates / "web" / "not_found.html.j2").write_text(payload)
    pages = PageRenderer(make_environment(templates), site_from(settings))
    refused_or_harmless(pages.not_found)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_operator_mail_template_cannot_reach_settings_or_python(
    templates: Path, settings: Settings, payload: str
) -> None:
    (templates / "email" / "confirm.subject.j2").write_text(payload)
    sender = Sender(settings.mail_from, settings.site_title, settings.mail_domain)
    mails = MailRenderer(make_environment(templates), site_from(settings), sender)
    refused_or_harmless(lambda: mails.confirmation("en", 168, NOW).data.decode())


@pytest.mark.parametrize("payload", ["{{ site }}", "{{ feeds }}", "{{ lang }} {{ canonical_url }}"])
def test_what_a_template_is_given_holds_no_secret(templates: Path, settings: Settings, payload: str) -> None:
    (templates / "web" / "not_found.html.j2").write_text(payload)
    output = PageRenderer(make_environment(templates), site_from(settings)).not_found()
    assert output.strip()
    assert SECRET not in output
    assert os.environ["SANDBOX_PROBE"] == SECRET  # the probe was there to be found


def test_the_environment_is_the_immutable_sandbox() -> None:
    env = make_environment(TEMPLATES)
    assert isinstance(env, jinja2.sandbox.ImmutableSandboxedEnvironment)
    # Jinja2's defaults and the translation functions: no settings, no environment, no module.
    defaults = {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
    assert set(env.globals) <= defaults | {"_", "gettext", "ngettext", "pgettext", "npgettext"}

"""The manual pages are generated from what they describe and cannot drift: every config
key has its entry in snep.toml(5) and every subcommand and option its own in snep(8);
man/ holds what ``make man`` writes; ``man -l`` shows both pages."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from snep import config
from snep.cli import SUBCOMMANDS
from snep.cmd import man

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"


def test_the_committed_pages_are_what_make_man_writes() -> None:
    for name, text in man.pages().items():
        committed = (MAN / name).read_text() if (MAN / name).exists() else ""
        assert committed == text, f"man/{name} is not current: run `make man`"


def _section_chunks(page: str) -> dict[str, str]:
    """snep.toml(5): [section] -> its roff, up to the next section or heading."""
    parts = re.split(r'^\.S[SH] "(.*)"$', page, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_config_key_has_its_entry_in_its_section() -> None:
    chunks = _section_chunks(man.snep_toml_5())
    for setting in config.SETTINGS:
        chunk = chunks.get(f"[{setting.section}]", "")
        entry = re.search(rf"^\.TP\n\\fB{re.escape(setting.key)}\\fR = .*\n(.*)$", chunk, re.MULTILINE)
        assert entry, f"snep.toml(5) has no entry for {setting.name}"
        text = entry.group(1)
        assert setting.about[1:21] in text, f"{setting.name}: its meaning is not in its entry"
        if setting.default is not None and not setting.required:
            assert "default" in text, setting.name


def test_a_new_key_appears_by_itself_and_a_new_section_needs_its_text(monkeypatch) -> None:
    extra = config.Setting("sync", "max_widgets", 7, "widgets at most", "widgets", 1, 100)
    monkeypatch.setattr(config, "SETTINGS", config.SETTINGS + (extra,))
    page = man.snep_toml_5()
    assert "\\fBmax_widgets\\fR = \\fIwidgets\\fR" in page and "range 1..100; default \\f" in page
    assert page != (MAN / "snep.toml.5").read_text()  # so the committed page is stale: the first test fails
    monkeypatch.setattr(config, "SETTINGS", config.SETTINGS + (replace(extra, section="gadgets"),))
    with pytest.raises(KeyError, match="gadgets"):
        man.snep_toml_5()


def _parser(name: str) -> argparse.ArgumentParser:
    return man._parser(name)


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_and_option_has_its_entry(name: str) -> None:
    page = man.snep_8()
    chunk = page.split(f'.SS "snep {name}"\n', 1)
    assert len(chunk) == 2, f"snep(8) has no entry for snep {name}"
    body = chunk[1].split(".SS ", 1)[0].split(".SH ", 1)[0]

    def options(parser: argparse.ArgumentParser) -> list[str]:
        found = []
        for action in parser._actions:
            found += [o for o in action.option_strings if o not in ("-h", "--help")]
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    found.append(sub_name)
                    found += options(sub)
        return found

    for option in options(_parser(name)):
        assert f"\\fB{option.replace('-', chr(92) + '-')}" in body, f"snep {name}: {option} is not in snep(8)"
    assert f'\\fBsnep {name}\\fR\n' in page.split('.SH "EXIT STATUS"', 1)[1], f"snep {name}: no exit status"


def test_a_subcommand_without_its_text_is_refused(monkeypatch) -> None:
    monkeypatch.delitem(man.COMMANDS, "ctl")
    with pytest.raises(KeyError, match="ctl"):
        man.snep_8()


@pytest.mark.skipif(shutil.which("man") is None or shutil.which("col") is None,
                    reason="man-db is not installed (make debs)")
@pytest.mark.parametrize(("page", "sections"), [
    ("snep.8", ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "FILES", "SIGNALS",
                "ENVIRONMENT", "EXAMPLES", "SEE ALSO"]),
    ("snep.toml.5", ["NAME", "SYNOPSIS", "DESCRIPTION", "ADDRESSES", "FILTER", "KEY FILE", "EXAMPLE",
                     "SEE ALSO", *(f"   [{s}]" for s in dict.fromkeys(s.section for s in config.SETTINGS))]),
])
def test_man_shows_the_page(page: str, sections: list[str]) -> None:
    shown = subprocess.run(["man", "--warnings", "-l", str(MAN / page)], capture_output=True, text=True,
                           env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, timeout=60)
    assert shown.returncode == 0 and not shown.stderr, shown.stderr
    text = subprocess.run(["col", "-b"], input=shown.stdout, capture_output=True, text=True, check=True).stdout
    for section in sections:
        assert re.search(rf"^{re.escape(section)}$", text, re.MULTILINE), f"{page}: no {section.strip()}"
    if page == "snep.8":
        for name in SUBCOMMANDS:
            assert f"   snep {name}\n" in text

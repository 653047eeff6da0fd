"""The README a new user follows agrees with the program: flags, commands, files it names."""

from __future__ import annotations

import re
from pathlib import Path

from reloadd.setup.flags import HELP

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def readme_section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    end = re.search(r"\n#{1,3} ", README[start + len(title) + 2 :])
    return README[start : start + len(title) + 2 + (end.start() if end else len(README))]


def readme_option_flags() -> set[str]:
    """Every flag in the first column of the README's options table."""
    rows = [line for line in readme_section("### Options").splitlines() if line.startswith("| `")]
    return {flag for row in rows for flag in FLAG.findall(row.split("|")[1])}


def help_flags() -> set[str]:
    """Every flag `reloadd --help` lists (the first column of its option lines)."""
    columns = [re.split(r"\s{2,}", line.strip())[0] for line in HELP.splitlines() if re.match(r"^  -", line)]
    return {flag for column in columns for flag in FLAG.findall(column)}


def test_every_flag_in_the_readme_table_is_in_help_and_the_other_way_round() -> None:
    readme, helped = readme_option_flags(), help_flags()
    assert len(helped) > 30  # the parsing found the help's flags
    assert readme - helped == set(), "in README's options table, not in --help"
    assert helped - readme == set(), "in --help, not in README's options table"


def test_the_quiet_flag_means_the_same_in_both() -> None:
    row = next(line for line in readme_section("### Options").splitlines() if "`-q, --quiet`" in line)
    assert "only errors and warnings" in row
    assert re.search(r"-q, --quiet\s+only errors and warnings", HELP)


def sh_commands(text: str) -> list[str]:
    return [line.strip() for block in re.findall(r"```sh\n(.+?)\n```", text, re.S) for line in block.splitlines()]


def test_the_kubernetes_walkthrough_syncs_the_example_folder_not_the_repository() -> None:
    """Its commands run from the repository root, where `reloadd sync --to ...` would send everything."""
    commands = [c for c in sh_commands((REPO / "docs/kubernetes.md").read_text()) if c.startswith("reloadd sync")]
    assert commands
    for command in commands:
        words = command.split("#")[0].split()
        local = words[2] if len(words) > 2 and not words[2].startswith("-") else "."
        assert (REPO / local / "package.json").exists(), f"`{command}` sends {local}, not an app"

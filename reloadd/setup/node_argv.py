"""node's own command line, as far as reloadd must read it: which program is node, which of its
flags take a value, and where the script is in ``node [flags] script [args]``.

The command line (cli.py: where the script starts), the command (command.py) and the warm
process (host/warm/launch.py) all need the same answer, so it is given here once.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Optional

NODE_PROGRAMS = frozenset({"node", "nodejs"})  # `nodejs` is Debian's older name for the binary
# Node flags whose value is the next argument (`-r dotenv/config`): the value is not the script.
NODE_FLAGS_WITH_VALUE = frozenset(
    {
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "--env-file",
        "--env-file-if-exists",
        "--conditions",
        "--input-type",
        "--title",
        "--inspect-port",
        "--debug-port",
        "--redirect-warnings",
        "--disable-warning",
        "--unhandled-rejections",
        "--dns-result-order",
        "--diagnostic-dir",
        "--report-dir",
        "--report-directory",
        "--report-filename",
        "--report-signal",
        "--heapsnapshot-signal",
        "--icu-data-dir",
        "--openssl-config",
        "--cpu-prof-dir",
        "--cpu-prof-name",
        "--heap-prof-dir",
        "--heap-prof-name",
        "--watch-path",
        "--stack-trace-limit",
        "--max-old-space-size",
    }
)
# Node flags that make it run code without a script file.
NODE_EVAL_FLAGS = frozenset({"-e", "--eval", "-p", "--print"})


def is_node_program(program: str) -> bool:
    return PurePath(program).name in NODE_PROGRAMS


def node_script(argv: list[str]) -> Optional[str]:
    """The script of a ``node [flags] script [args]`` argv: its first argument that is not a flag."""
    index = script_index(argv)
    return argv[index] if index is not None else None


def script_index(argv: list[str]) -> Optional[int]:
    """Where the script is in a node argv; None when node runs code without one (``-e``, ``-p``)."""
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg in NODE_EVAL_FLAGS or arg.split("=", 1)[0] in NODE_EVAL_FLAGS:
            return None
        if arg == "--":
            return index + 1 if index + 1 < len(argv) else None
        if not arg.startswith("-") or arg == "-":
            return index
        index += 2 if arg in NODE_FLAGS_WITH_VALUE else 1
    return None

"""Helpers shared by the capture tests."""

from __future__ import annotations

import argparse
import re

from pymesh.capture import command


def pymesh(argv: list[str]) -> int:
    """Run `pymesh ARGV` with only the iptables subcommand registered, as pymesh.cli.main would."""
    parser = argparse.ArgumentParser(prog="pymesh")
    command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def normalized(saved: str) -> str:
    """iptables-save output without its comment lines and with counters zeroed, for comparing."""
    lines = [line for line in saved.splitlines() if not line.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in lines) + "\n"

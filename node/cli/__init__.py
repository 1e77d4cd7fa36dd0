"""The `hotline-node` command line: operators and analysts drive a node's data directory.

One module per command group, each declaring its options beside its handlers (`register`);
`main` assembles the parser and runs a command here or in the server that holds the directory.
"""

from node.cli.main import build_parser, main, runner_for

__all__ = ["build_parser", "main", "runner_for"]

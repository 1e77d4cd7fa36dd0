"""`python -m node`: the same command line as `hotline-node`."""

from node.cli import main

raise SystemExit(main())

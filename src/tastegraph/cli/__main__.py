"""``python -m tastegraph.cli``."""

from tastegraph.cli import main

main()

"""`python -m mainsail.cli …`: the `mainsail` command (the demos start runs this way)."""

from mainsail.cli.main import main

main()

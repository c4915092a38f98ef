"""`python -m paramspec ...` runs the CLI."""

from ._cli import main

main()

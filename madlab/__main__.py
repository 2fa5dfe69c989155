"""`python -m madlab` is the `madlab` command."""
from madlab.cli import main

main()

"""``python -m dataferry``."""

from dataferry.cli import main

main()

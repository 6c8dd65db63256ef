"""``python -m sevlaunch.cli``: the same command tree as the ``sevlaunch`` script."""

from sevlaunch.cli import main

main()

"""``python -m scripts.cli`` works like the installed ``tradeguard`` script."""

from scripts.cli import main

main()

"""``python -m cc.daemon MODULE config.ini SECTION``: the same as ``cc-daemon``."""

from cc.daemon.cli import main

main()

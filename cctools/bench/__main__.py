"""``python -m cctools.bench``: cc-bench from a source tree."""

from cctools.bench.cli import main

main()

"""`python -m textwatch` is the same as the `textwatch` console script."""

from textwatch.cli import main

raise SystemExit(main())

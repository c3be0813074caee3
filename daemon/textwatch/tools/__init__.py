"""The command-line tools built on the runtime: check, status, subscribe, image, eval, bench..."""

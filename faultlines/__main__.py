"""`python -m faultlines`, and the `faultlines` command's entry point: Ctrl-C while the command
line itself is loading ends as it does inside a command (one line, exit code 130)."""

import sys


def main() -> None:
    try:
        from faultlines.cli import main as run
    except KeyboardInterrupt:
        from faultlines.errors import INTERRUPTED, exit_interrupted

        sys.stderr.write(INTERRUPTED)
        exit_interrupted()
    run()


if __name__ == "__main__":
    main()

"""`python -m faultlines`, and the `faultlines` command's entry point: Ctrl-C before a command
begins (while the command line loads, sets itself up or typer builds it from the functions)
ends as it does inside a command (one line, exit code 130)."""


def main() -> None:
    try:
        from faultlines.cli import main as run

        run()
    except KeyboardInterrupt:
        from faultlines.errors import exit_interrupted

        exit_interrupted()


if __name__ == "__main__":
    main()

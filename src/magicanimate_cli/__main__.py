"""`python -m magicanimate_cli` runs the CLI (torchrun launches it this way)."""

from .cli import main

if __name__ == "__main__":
    main()

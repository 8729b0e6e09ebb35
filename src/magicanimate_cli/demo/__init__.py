"""The embedded default: a tiny random model in the official layout and synthetic inputs, so everything runs with
nothing downloaded (`python -m magicanimate_cli.demo DIR`, `make demo`, the tests, `serve --demo`)."""

"""The command-line interface: a Typer app, one file per verb (see main.py)."""

"""Command-line interface (typer). Holds argument parsing and printing only: no math lives here."""

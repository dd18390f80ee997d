"""The `wandb-history` command: `export`, `sql`, `serve`, `status` and `demo`."""

from .app import main

__all__ = ["main"]

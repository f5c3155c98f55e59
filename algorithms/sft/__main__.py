"""`python -m algorithms.sft`: the command in cli.py."""

from .cli import sft_command

if __name__ == "__main__":
    sft_command()

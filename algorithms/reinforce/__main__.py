"""`python -m algorithms.reinforce`: the command in cli.py."""

from .cli import reinforce_command

if __name__ == "__main__":
    reinforce_command()

"""`python -m algorithms.prompt_search`: the command in cli.py."""

from .cli import prompt_search_command

if __name__ == "__main__":
    prompt_search_command()

"""crew2's command line in a clone: `python cli.py record ...`, `torchrun --nproc-per-node 2 cli.py train ...`. An
installed crew2 is `crew2 ...` or `python -m crew2 ...`; the commands live in crew2.cli."""

from crew2.cli import app

if __name__ == "__main__":
    app()

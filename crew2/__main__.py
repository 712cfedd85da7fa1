"""`python -m crew2 ...` (and `torchrun --nproc-per-node N -m crew2 train ...`): the crew2 command line."""

from crew2.cli import app

app(prog_name="crew2")

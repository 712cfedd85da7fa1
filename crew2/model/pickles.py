"""A .pt file is a pickle, and unpickling can run any code the file holds. crew2 reads plain tensors and
primitives with torch's weights-only unpickler, which runs nothing; a full pickle (an Ultralytics .pt is one) is
loaded only when the user says they trust it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from crew2.errors import Crew2Error

TRUST_HELP = ("Load a full pickle (an Ultralytics .pt is one): unpickling runs whatever code the file holds, so "
              "only for a file you made or whose source you trust.")


def load_plain(path: str | Path, trust_pickle: bool = False) -> Any | None:
    """The file's contents when it is plain tensors and primitives. For a full pickle: None when `trust_pickle`
    (the caller loads it its own way), else a Crew2Error before anything in it has run."""
    import torch  # seconds to import: not for the command line's start

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the weights-only unpickler met a class or function: a full pickle
        if trust_pickle:
            return None
        raise Crew2Error(f"{path}: a full pickle, not plain tensors; loading it could run any code it holds. "
                         "Give --trust-pickle only if you made it or trust its source") from e
    except Exception as e:  # truncated, not a torch file at all, ...: unpickling errors come in many types
        raise Crew2Error(f"{path}: not a readable .pt file ({type(e).__name__})") from e

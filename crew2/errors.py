"""The one exception type that means "the user asked for something that cannot be done"."""


class Crew2Error(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def read_yaml(path, what: str, shape: str) -> dict:
    """The mapping a user's YAML file holds, or one line saying what is wrong: no such `what`, or not one
    (`shape` says what one holds)."""
    import yaml

    if not path.is_file():
        raise Crew2Error(f"{path}: no such {what}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise Crew2Error(f"{path}: not a {what} ({e})") from None
    if not isinstance(data, dict):
        raise Crew2Error(f"{path}: not a {what} (it holds {shape})")
    return data

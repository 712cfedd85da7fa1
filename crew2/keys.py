"""Key profiles: which keyboard keys matter for a game, their order in a key vector, and their roles."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from crew2.errors import Crew2Error

ROLES = ("throttle", "brake", "left", "right")

# Key names crew2 understands, the same on every reader and sender (X11, Windows, the sim).
NAMED_KEYS = (
    "up", "down", "left", "right", "space", "shift", "ctrl", "alt", "enter", "tab", "esc",
    "backspace", "home", "end", "pageup", "pagedown", "insert", "delete",
    *(f"f{i}" for i in range(1, 13)),
)
KEY_NAMES = frozenset((*string.ascii_lowercase, *string.digits, *NAMED_KEYS))


@dataclass(frozen=True)
class KeyProfile:
    """An ordered list of keys; `roles` maps a driving role (throttle, brake, left, right) to a key."""

    name: str
    keys: tuple[str, ...]
    roles: dict[str, str]

    def __post_init__(self) -> None:
        unknown = [k for k in self.keys if k not in KEY_NAMES]
        if unknown:
            raise Crew2Error(f"unknown key name(s) {', '.join(unknown)}: use letters, digits or one of "
                             f"{', '.join(NAMED_KEYS[:11])}, ...")
        if len(set(self.keys)) != len(self.keys):
            raise Crew2Error(f"key profile '{self.name}' names a key twice: {','.join(self.keys)}")
        for role, key in self.roles.items():
            if role not in ROLES:
                raise Crew2Error(f"unknown key role '{role}': roles are {', '.join(ROLES)}")
            if key not in self.keys:
                raise Crew2Error(f"role '{role}' is bound to '{key}', which is not in the profile's keys")

    def index(self, role: str) -> int | None:
        """Position of the key that plays `role` in the key vector, or None if no key does."""
        key = self.roles.get(role)
        return None if key is None else self.keys.index(key)


PROFILES = Path(__file__).parent / "profiles"  # the profiles crew2 ships, one YAML file each


def load_profile(name_or_path: str | Path) -> KeyProfile:
    """A shipped profile by name (thecrew2, arrows) or a YAML file with `name`, `keys` and `roles`."""
    path = Path(name_or_path)
    if not path.exists():
        path = PROFILES / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise Crew2Error(f"no key profile '{name_or_path}': give a YAML file or one of {shipped}")
    try:
        data = yaml.safe_load(path.read_text())
        unknown = set(data) - {"name", "keys", "roles"} if isinstance(data, dict) else set()
        if unknown:  # a typo ("role:") would otherwise do nothing
            raise Crew2Error(f"{path}: unknown key-profile field(s) {', '.join(sorted(map(str, unknown)))}: "
                             "a profile has name, keys and roles")
        return KeyProfile(str(data.get("name", path.stem)), tuple(str(k).lower() for k in data["keys"]),
                          {str(r): str(k).lower() for r, k in (data.get("roles") or {}).items()})
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise Crew2Error(f"{path}: not a key profile (needs 'keys: [...]' and 'roles: {{role: key}}'): {e}") from e


def default_profile() -> KeyProfile:
    """The Crew 2 on its default bindings: W throttle, A left, S brake, D right."""
    return load_profile("thecrew2")


# Roles crew2 infers when keys are given as a bare list (--keys up,left,right,down).
_USUAL_ROLES = {"w": "throttle", "up": "throttle", "s": "brake", "down": "brake", "a": "left", "left": "left",
                "d": "right", "right": "right"}


def profile_from_keys(text: str) -> KeyProfile:
    """'up,left,right,down' -> a profile of those keys; W/A/S/D and the arrows get their usual roles."""
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    if not keys:
        raise Crew2Error("--keys needs at least one key name, e.g. --keys w,a,s,d")
    roles: dict[str, str] = {}
    for k in keys:
        role = _USUAL_ROLES.get(k)
        if role is not None and role not in roles:
            roles[role] = k
    return KeyProfile("custom", keys, roles)

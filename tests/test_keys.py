"""Key profiles: shipped YAML profiles, user files, inferred roles, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crew2.errors import Crew2Error
from crew2.keys import KeyProfile, default_profile, load_profile, profile_from_keys

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_profiles():
    crew = default_profile()
    assert crew.keys == ("w", "a", "s", "d") and crew.index("brake") == 2 and crew.index("right") == 3
    arrows = load_profile("arrows")
    assert arrows.keys[0] == "up" and arrows.index("throttle") == 0 and "space" in arrows.keys
    assert arrows.roles.get("handbrake") is None


def test_user_profile_file(tmp_path):
    path = tmp_path / "forza.yaml"
    path.write_text("name: forza\nkeys: [i, j, k, l, space]\nroles: {throttle: i, brake: k, left: j, right: l}\n")
    p = load_profile(path)
    assert p.name == "forza" and p.index("left") == 1 and len(p.keys) == 5


def test_keys_option_infers_usual_roles():
    p = profile_from_keys("Up, Left,Right ,down,space")
    assert p.keys == ("up", "left", "right", "down", "space")
    assert p.roles == {"throttle": "up", "left": "left", "right": "right", "brake": "down"}


@pytest.mark.parametrize("make, message", [
    (lambda: profile_from_keys("w,a,x9"), "unknown key name"),
    (lambda: profile_from_keys("w,w"), "names a key twice"),
    (lambda: profile_from_keys(" , "), "at least one key"),
    (lambda: KeyProfile("p", ("w",), {"jump": "w"}), "unknown key role"),
    (lambda: KeyProfile("p", ("w",), {"brake": "s"}), "not in the profile's keys"),
    (lambda: load_profile("no-such-profile"), "no key profile"),
])
def test_bad_profiles_are_clear_errors(make, message):
    with pytest.raises(Crew2Error, match=message):
        make()


def test_bad_profile_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("just a string\n")
    with pytest.raises(Crew2Error, match="not a key profile"):
        load_profile(path)
    path.write_text("name: mine\nkeys: [w, s]\nrole: {throttle: w}\n")  # a typo did nothing before
    with pytest.raises(Crew2Error, match=r"unknown key-profile field.*role: a profile has name, keys and roles"):
        load_profile(path)


def test_unknown_key_names_on_the_command_line_exit_2():
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "record", "--keys", "w,a,blah"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown key name(s) blah" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

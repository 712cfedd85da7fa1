"""What pyproject.toml cannot say on its own: the repository's top-level detection/, weights/ and datasets/ (the
layout's source of truth) go into the package as crew2.detection, crew2/weights and crew2/datasets, so that an
installed crew2 puts only `crew2` into site-packages and finds its shipped files (crew2.shipped)."""

from setuptools import find_packages, setup

MAPPED = {"crew2.detection": "detection", "crew2.weights": "weights", "crew2.datasets": "datasets"}

setup(
    packages=[*find_packages(include=["crew2", "crew2.*"]), *MAPPED],
    package_dir=MAPPED,
    package_data={"crew2": ["profiles/*.yaml", "drive/*.yaml"], "crew2.weights": ["*.pt", "*.onnx", "README.md"],
                  "crew2.datasets": ["*.yaml"]},
)

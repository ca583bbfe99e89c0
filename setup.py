"""Packaging: everything is in setup.cfg except what it cannot express.

The plugin's YAML defaults stay in ``props/`` at the top of the source tree (the design card's
layout) and ship inside the wheel as the package data ``recbole_faerec/props/`` (setup.cfg's
``packages = find:`` cannot add a package that lives outside ``recbole_faerec/``).
``recbole_faerec.utils.utils.PROPS_DIR`` finds them in either place.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["recbole_faerec", "recbole_faerec.*"]) + ["recbole_faerec.props"],
    package_dir={"recbole_faerec.props": "props"},
    package_data={"recbole_faerec.props": ["**/*"]},  # every file under props/, at any depth
)

"""Shim for tools that want a setup.py (the package is described in setup.cfg).

Beam's --setup_file points here (pipeline/configs.py): it names this project as the Python
dependency of the pipeline's Beam stages.
"""

from setuptools import setup

setup()

"""The package list, which pyproject.toml cannot express: every `hf_vq*` package found in the tree, plus
`hf_vq.model_cards`, the card templates of the top-level `model_cards/` (mapped there in pyproject.toml's
`[tool.setuptools.package-dir]`, with its `*.md` as package data). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["hf_vq*"]), "hf_vq.model_cards"])

"""Conversions from other layouts (taming, diffusers, LPIPS, pickled weights): pure mappings of keys and config
fields, below `hf_vq.models` (nothing here imports a model class). Import from the submodules."""

"""The bottom layer: config validation, image conversion, torch helpers. Imports nothing else from hf_vq."""

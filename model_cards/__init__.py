"""The Jinja templates of the model cards (`hf_vq.hub.cards`), installed as the package `hf_vq.model_cards` so that
`importlib.resources` finds them in a wheel and in an editable install alike."""

"""What every hf_vq model adds to transformers' `PreTrainedModel` (`HubMixin`): safetensors-only loading, our own model
card when pushed, and the Auto class that loads it.

This module is part of the code exported to the Hub (`hf_vq.hub.remote_code`): what it imports from hf_vq
(`conversion.safetensors`, `hub.upload`) is flattened beside it, so those modules import only the standard library and
third-party packages at module level.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from ..conversion.safetensors import CONVERSION_COMMAND, pickled_weight_files
from ..hub.upload import push_model
from ..utils.errors import UsageError
from ..utils.paths import check_source


def _own_aligned_memory(model) -> None:
    """Copy the tensors transformers left as views into the safetensors file into memory of their own. A view starts
    wherever its tensor lies in the file, not on a 64-byte boundary, and CPU matmuls over unaligned memory may round
    differently (in the last bit) from the same weights aligned: a loaded model would not reproduce the saved one's
    outputs exactly."""
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.device.type == "cpu" and tensor.data_ptr() % 64:
                tensor.data = tensor.data.clone()


class PickledWeightsError(UsageError, OSError):
    """A folder or repo with pickled weights only: a `UsageError` (the way on is the conversion script), and an
    `OSError` as transformers raises for a folder without weights."""


class HubMixin:
    """Put first in the bases of every hf_vq `PreTrainedModel`."""

    # The transformers Auto class that loads the model (`auto_map` of exported code, the cards' usage).
    auto_class_name = "AutoModel"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, reading weights from safetensors only: nothing is ever unpickled. A folder
        or repo holding only pickled weights (`pytorch_model.bin`, `.pt`) gets an error naming the conversion
        script. A local path (existing, or starting with `.`, `/` or `~`) that does not exist is a `UsageError`
        before any request to the Hub. A folder or repo in another library's layout that the class converts (a
        diffusers `VQModel` for `VQGANModel`, `AutoencoderKL` for `VAEModel`) is converted on load."""
        if kwargs.get("use_safetensors") is False:
            raise UsageError(
                "hf_vq loads weights only from safetensors (`use_safetensors=False` would unpickle them); convert "
                f"pickled weights once with `{CONVERSION_COMMAND.format(source=pretrained_model_name_or_path)}`"
            )
        kwargs["use_safetensors"] = True
        if pretrained_model_name_or_path is not None:  # None: weights given as `state_dict`
            # A missing local folder fails here, at once, instead of as a Hub request for a malformed repo id.
            what = f"{cls.__name__}.from_pretrained"
            pretrained_model_name_or_path = check_source(pretrained_model_name_or_path, what)
            converted = cls._from_pretrained_other_layout(pretrained_model_name_or_path, kwargs)
            if converted is not None:
                return converted
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except OSError as error:
            if pretrained_model_name_or_path is None:
                raise
            hub_kwargs = {key: kwargs.get(key) for key in ("revision", "token", "local_files_only", "cache_dir")}
            pickled = pickled_weight_files(pretrained_model_name_or_path, kwargs.get("subfolder") or "", **hub_kwargs)
            if not pickled:
                raise
            source = pretrained_model_name_or_path
            raise PickledWeightsError(
                f"{source} has no safetensors weights, only pickled ones ({', '.join(pickled)}); hf_vq never "
                "unpickles weights when loading, since a pickle can run code. Convert them once (tensors only, with "
                f"`torch.load(weights_only=True)`): `{CONVERSION_COMMAND.format(source=source)}` from the hf_vq "
                "repository, or `hf_vq.conversion.safetensors.convert_to_safetensors(...)`, then load the converted "
                "folder."
            ) from error
        _own_aligned_memory(model)
        return model

    @classmethod
    def _from_pretrained_other_layout(cls, source: str, kwargs: dict[str, Any]):
        """The model converted on load when `source` (with `kwargs["subfolder"]`) holds another library's layout
        that this class converts (a diffusers `VQModel` / `AutoencoderKL` folder), else `None`: the models that
        convert one override this."""
        return None

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        *,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        metrics: dict[str, Any] | None = None,
        dataset: str | None = None,
        export_code: bool = False,
        model_card: str | None = None,
    ) -> str:
        """Upload the model (safetensors + config) with the hf_vq model card (`hf_vq.hub.render_model_card` of the
        config, `metrics` and `dataset`, unless `model_card` is given) in one commit; with `export_code`, also the
        modeling code and `auto_map` for `trust_remote_code=True`. Returns the commit URL.

        transformers' own `push_to_hub` would write its generic card (library_name: transformers).
        """
        return push_model(
            self,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
            metrics=metrics,
            dataset=dataset,
            export_code=export_code,
            model_card=model_card,
        )

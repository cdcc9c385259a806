"""Export a model's code to its Hub repo, so that `AutoModel.from_pretrained(repo, trust_remote_code=True)` works
for users without hf_vq.

transformers copies from a repo only the module named in `auto_map` and the modules it reaches through flat
`from .module import X` imports (neither sub-packages nor a module imported by itself from the package `.` are
followed). The package is nested (`hf_vq/models/vqgan/modeling_vqgan.py` imports `...modules.backbone`), so the
export collects every hf_vq module a model's classes need and rewrites their hf_vq imports into flat ones, one file
per module, beside config.json.
Third-party imports stay as they are: the user needs them installed (torch, transformers, diffusers). Outside a
family's own folder, a flat file is named by its path (`hf_vq/conversion/taming.py` becomes `conversion_taming.py`),
so that a clone of the repo shadows no top-level package such as `taming` or `safetensors`.

The export reads hf_vq's sources, so it needs the package; this module imports from hf_vq only its error class (the
model classes come from the caller), since it is itself part of the exported code (`push_model` reaches it).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..utils.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PACKAGE = "hf_vq"


def _flat_name(module_name: str) -> str:
    """The flat file name (without `.py`) of an hf_vq module. A family's own files keep their names
    (`configuration_vqgan`, `modeling_vqgan`: what `auto_map` names); every other module gets its package's path in
    front (`modules_backbone`, `conversion_taming`, `models_modeling_utils`), so that a flat file never takes the name
    of a top-level package (`taming`, `lpips`, `safetensors`), whatever is installed where the export runs."""
    parts = module_name.split(".")
    if len(parts) == 4 and parts[1] == "models":  # hf_vq.models.<family>.<file>
        return parts[-1]
    return "_".join(parts[1:])


def _defining_module(package: str, name: str) -> str:
    """The hf_vq module that defines `name`, imported from `package` (a module, or a package re-exporting it)."""
    module = importlib.import_module(package)
    if not hasattr(module, "__path__"):
        return package
    value = getattr(module, name, None)
    if isinstance(value, ModuleType) or value is None or not hasattr(value, "__module__"):
        raise UsageError(
            f"cannot export `from {package} import {name}`: only classes and functions imported from a package, or "
            "names imported from a module, can be flattened"
        )
    return value.__module__


def _hf_vq_imports(module: ModuleType) -> list[tuple[ast.ImportFrom, dict[str, list[ast.alias]]]]:
    """Each `from <hf_vq module> import ...` of `module` (at any depth), with its names grouped by defining module."""
    found = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == PACKAGE for alias in node.names):
            raise UsageError(f"cannot export {module.__name__}: `import {PACKAGE}...` cannot be flattened")
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            target = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__)
        elif (node.module or "").split(".")[0] == PACKAGE:
            target = node.module
        else:
            continue
        by_module: dict[str, list[ast.alias]] = {}
        for alias in node.names:
            by_module.setdefault(_defining_module(target, alias.name), []).append(alias)
        found.append((node, by_module))
    return found


def _flattened_source(module: ModuleType, imports: list[tuple[ast.ImportFrom, dict[str, list[ast.alias]]]]) -> str:
    """The module's source with each hf_vq import replaced by flat `from .module import X` lines."""
    lines = inspect.getsource(module).splitlines()
    for node, by_module in sorted(imports, key=lambda item: item[0].lineno, reverse=True):
        indent = " " * node.col_offset
        replacement = [
            indent
            + f"from .{_flat_name(name)} import "
            + ", ".join(alias.name + (f" as {alias.asname}" if alias.asname else "") for alias in aliases)
            for name, aliases in by_module.items()
        ]
        lines[node.lineno - 1 : node.end_lineno] = replacement
    path = module.__name__.replace(".", "/") + ".py"
    header = f"# Exported from {path} of hf_vq {sys.modules[PACKAGE].__version__}: edit the package, not this copy."
    return "\n".join([header, *lines]) + "\n"


def export_code(model: PreTrainedModel | type[PreTrainedModel], directory: str | Path) -> dict[str, str]:
    """Write the flat modules a model's class (`model` or its class) and its config class need into `directory`
    (a `save_pretrained` folder) and add `auto_map` to its config.json (the model's class under its
    `auto_class_name`). Returns the `auto_map`."""
    directory = Path(directory)
    model_class = model if isinstance(model, type) else type(model)
    if model_class.__module__.startswith("transformers_modules."):
        raise UsageError(
            f"{model_class.__name__} was loaded as remote code (trust_remote_code); exporting its code needs the "
            "hf_vq package: `pip install hf_vq`"
        )
    if not model_class.__module__.startswith(PACKAGE + ".") or not hasattr(model_class, "config_class"):
        raise UsageError(f"{model_class.__name__} is not an hf_vq model; only hf_vq models can export their code")
    config_class = model_class.config_class
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{directory} has no config.json: call save_pretrained before export_code")

    sources: dict[str, str] = {}  # flat file name -> source
    origins: dict[str, str] = {}  # flat file name -> module, to catch two modules of the same name
    pending = [model_class.__module__, config_class.__module__]
    while pending:
        name = pending.pop()
        flat = _flat_name(name)
        if flat in origins:
            if origins[flat] != name:
                raise UsageError(f"cannot export: {origins[flat]} and {name} would both be {flat}.py")
            continue
        module = importlib.import_module(name)
        imports = _hf_vq_imports(module)
        origins[flat] = name
        sources[flat] = _flattened_source(module, imports)
        pending.extend(target for _, by_module in imports for target in by_module)

    for flat, source in sources.items():
        (directory / f"{flat}.py").write_text(source)
    auto_map = {
        "AutoConfig": f"{_flat_name(config_class.__module__)}.{config_class.__name__}",
        getattr(
            model_class, "auto_class_name", "AutoModel"
        ): f"{_flat_name(model_class.__module__)}.{model_class.__name__}",
    }
    config = json.loads(config_path.read_text())
    config["auto_map"] = auto_map
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return auto_map


def export_pipeline_code(directory: str | Path, models: Mapping[str, PreTrainedModel | type[PreTrainedModel]]) -> None:
    """`export_code` for each sub-model folder of a saved pipeline (`models`: folder -> its model or model class),
    plus a copy of all their modules at the root: transformers 5 looks for remote code at the repo root even when
    loading with `subfolder=` (so `AutoModel.from_pretrained(repo, subfolder="vq_model", trust_remote_code=True)`
    needs it there); the copies in the sub-folders keep each sub-model complete on its own."""
    directory = Path(directory)
    for part, model in models.items():
        export_code(model, directory / part)
        for path in (directory / part).glob("*.py"):
            root_copy = directory / path.name
            if root_copy.exists() and root_copy.read_text() != path.read_text():
                raise UsageError(f"cannot export the pipeline's code: two different {path.name}")
            root_copy.write_text(path.read_text())

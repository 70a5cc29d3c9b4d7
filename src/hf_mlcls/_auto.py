"""Registration of the model types with transformers' Auto classes, without importing transformers.

``import hf_mlcls`` must stay cheap (``hf-mlcls --help`` should not pay for torch, transformers and timm),
yet ``AutoConfig`` / ``AutoModel`` / ``AutoModelForImageClassification`` / ``AutoImageProcessor`` must know
our types as soon as anyone uses them. transformers keeps those mappings in three modules of
``transformers.models.auto``, and the pipelines of its tasks in ``transformers.pipelines``; we register right
after each of them is first imported (or at once, when it already is). The hook is a meta-path finder that
only wraps the loader of those four modules and of the few they need (our pipeline module among them: it
imports ``transformers.pipelines`` on its way, so registering waits until it is complete).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading

_CONFIG = "transformers.models.auto.configuration_auto"
_MODELING = "transformers.models.auto.modeling_auto"
_PROCESSING = "transformers.models.auto.image_processing_auto"
_PIPELINES = "transformers.pipelines"
_OUR_PIPELINE = f"{__package__}.models.pipeline_multilabel"  # imports transformers.pipelines on its way
_CONFIG_UTILS = "transformers.configuration_utils"
_MODELING_UTILS = "transformers.modeling_utils"
_PROCESSING_UTILS = "transformers.image_processing_utils"

_lock = threading.RLock()
_loaded: set[str] = set()  # watched modules whose code has run to the end
_done: set[str] = set()  # registrations made
_active = False


def _register_configs() -> None:
    from transformers import AutoConfig

    from .models.configuration_ml_decoder import MLDecoderConfig
    from .models.configuration_query2label import Query2LabelConfig

    for config_class in (Query2LabelConfig, MLDecoderConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)


def _register_models() -> None:
    from transformers import AutoModel, AutoModelForImageClassification

    from .models import (
        MLDecoderConfig,
        MLDecoderForImageClassification,
        MLDecoderModel,
        Query2LabelConfig,
        Query2LabelForImageClassification,
        Query2LabelModel,
    )

    for config_class, base, classifier in (
        (Query2LabelConfig, Query2LabelModel, Query2LabelForImageClassification),
        (MLDecoderConfig, MLDecoderModel, MLDecoderForImageClassification),
    ):
        AutoModel.register(config_class, base, exist_ok=True)
        AutoModelForImageClassification.register(config_class, classifier, exist_ok=True)


def _register_processors() -> None:
    try:
        from .models.image_processing_multilabel import MultiLabelImageProcessor
    except ImportError:  # a version without its own processor class
        return
    from transformers import AutoImageProcessor

    from .models.configuration_ml_decoder import MLDecoderConfig
    from .models.configuration_query2label import Query2LabelConfig

    for config_class in (Query2LabelConfig, MLDecoderConfig):
        AutoImageProcessor.register(
            config_class, image_processor_classes={"pil": MultiLabelImageProcessor, "torchvision": MultiLabelImageProcessor},
            exist_ok=True,
        )


def _register_pipelines() -> None:
    """The "image-classification" task builds our pipeline for our model types, the class it had for the rest.

    transformers picks a pipeline class from the task alone (before it loads the model), so the task's entry
    becomes `for_model_types(previous class)`, which builds `MultiLabelImageClassificationPipeline` for a
    Query2Label or ML-Decoder model and the previous class, unchanged, for any other. Our configuration then
    stops offering config.json's `custom_pipelines` (meant for remote code), which would make transformers
    demand `trust_remote_code=True` for a pipeline this package already provides.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    from .models.configuration_common import MultiLabelConfig
    from .models.pipeline_multilabel import for_model_types

    entry = PIPELINE_REGISTRY.supported_tasks["image-classification"]
    previous = entry["impl"]
    if isinstance(previous, str):  # "module.Class", as transformers lists its own tasks
        module, name = previous.rsplit(".", 1)
        previous = getattr(importlib.import_module(module), name)
    if getattr(previous, "_multilabel_fallback", None) is None:
        entry["impl"] = for_model_types(previous)
    MultiLabelConfig.pipeline_registered = True


# registration -> (function, the Auto module whose import triggers it, the modules it imports)
_REGISTER = {
    "configs": (_register_configs, _CONFIG, (_CONFIG_UTILS,)),
    "models": (_register_models, _MODELING, (_MODELING_UTILS, _CONFIG, _CONFIG_UTILS)),
    "processors": (_register_processors, _PROCESSING, (_PROCESSING_UTILS, _CONFIG, _CONFIG_UTILS)),
    "pipelines": (_register_pipelines, _PIPELINES, (_OUR_PIPELINE, _PROCESSING_UTILS, _CONFIG_UTILS)),
}
_WATCHED = frozenset(m for _, trigger, needs in _REGISTER.values() for m in (trigger, *needs))


def _importable(name: str) -> bool:
    """Completely imported, or not imported at all (we may import it); not while it is half-way."""
    return name in _loaded or name not in sys.modules


def _run() -> None:
    """Make every registration whose modules are completely imported.

    transformers imports its Auto modules from inside other half-imported modules (modeling_utils imports
    configuration_auto on its way), so a registration waits until none of the modules it needs is half-way;
    registering imports our model files, which import transformers modules in turn: a call made while one
    registration runs is left to that one's loop.
    """
    global _active
    with _lock:
        if _active:
            return
        _active = True
        try:
            progress = True
            while progress:
                progress = False
                for key, (register, trigger, needs) in _REGISTER.items():
                    if key not in _done and trigger in _loaded and all(_importable(m) for m in needs):
                        register()
                        _done.add(key)
                        progress = True
        finally:
            _active = False


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _loaded.add(self._name)
        _run()

    def __getattr__(self, item):  # get_source, get_code, is_package ... as the wrapped loader
        return getattr(self._loader, item)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _WATCHED or fullname in _loaded:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None


def install() -> None:
    """Register now for what transformers has already imported, and after import for the rest."""
    with _lock:
        if not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
        _loaded.update(m for m in _WATCHED if m in sys.modules)
    _run()


def register_now() -> None:
    """Register with every Auto class at once (imports transformers)."""
    for name in sorted(_WATCHED):
        importlib.import_module(name)
    with _lock:
        _loaded.update(_WATCHED)
    _run()

"""What the Query2Label and ML-Decoder models share: weight init, loading, saving, outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .backbone import FeatureBackbone, loading_checkpoint
from .image_processing_multilabel import MultiLabelImageProcessor
from .losses import AsymmetricLoss

if TYPE_CHECKING:
    # config.json's custom_pipelines names this class. Transformers copies every file a remote-code file
    # imports relatively, found by reading the source text (`from .x import`), so this line ships
    # pipeline_multilabel.py with the models without importing transformers' pipelines at save time.
    from .pipeline_multilabel import MultiLabelImageClassificationPipeline  # noqa: F401


@dataclass
class MultiLabelModelOutput(ModelOutput):
    """Output of the base models (no classifier).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_queries, hidden_dim)`):
            decoder state of every query (one per label for Query2Label, one per group for ML-Decoder).
        feature_map (`torch.FloatTensor`): the backbone output, (B, C, H, W) or (B, N, D).
        cross_attentions (`tuple(torch.FloatTensor)`, *optional*): one tensor per decoder layer, of shape
            `(batch_size, num_queries, h, w)`: head-averaged cross-attention of each query over the feature map,
            laid out on the feature grid so it can be upsampled over the image. Returned when
            `output_attentions=True`.
    """

    last_hidden_state: Tensor | None = None
    feature_map: Tensor | None = None
    cross_attentions: tuple[Tensor, ...] | None = None


@dataclass
class MultiLabelClassifierOutput(ModelOutput):
    """Output of the classification models.

    Args:
        loss (`torch.FloatTensor`, *optional*): asymmetric loss, when `labels` is given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): one logit per label; sigmoid gives
            the probability of each label.
        hidden_states (`torch.FloatTensor`): decoder state of every query, (B, num_queries, hidden_dim).
        cross_attentions (`tuple(torch.FloatTensor)`, *optional*): see `MultiLabelModelOutput`.
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: Tensor | None = None
    cross_attentions: tuple[Tensor, ...] | None = None


def check_pixel_values(pixel_values: Tensor) -> None:
    """Clear errors for the inputs a user can get wrong."""
    if not torch.is_tensor(pixel_values) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if torch.is_tensor(pixel_values) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a (batch, 3, height, width) tensor, got {shape}")
    if pixel_values.shape[1] != 3:
        raise ValueError(
            f"pixel_values must have 3 channels (RGB) in dimension 1, got {pixel_values.shape[1]} "
            f"(shape {tuple(pixel_values.shape)}); convert images to RGB and use channels-first layout"
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be a floating-point tensor, got {pixel_values.dtype}; scale uint8 images to floats "
            "with the model's image processor (or hf_mlcls.data.build_eval_transform)"
        )
    if values_checked_here(pixel_values) and not all_finite(pixel_values):
        raise ValueError("pixel_values contains NaN or inf values")


def values_checked_here(tensor: Tensor) -> bool:
    """Whether the model checks a tensor's *values*: only on the CPU, where that costs no device-to-host sync.

    On an accelerator, reading a check's result back would stall the host until the device's queue is
    drained, every step; there the data side checks the batch on the host before it is moved
    (``hf_mlcls.data.MultiLabelCollator``). Shapes and dtypes are checked on every device (no sync).
    """
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def all_finite(tensor: Tensor) -> bool:
    """``torch.isfinite(tensor).all()``, in one reduction: the sum is finite unless an element is NaN or
    infinite (then checked element by element, since finite values can also overflow the sum)."""
    if tensor.numel() == 0 or bool(torch.isfinite(tensor.sum())):
        return True
    return bool(torch.isfinite(tensor).all())


def check_pixel_dtype(pixel_values: Tensor, dtype: torch.dtype) -> None:
    """A float input of another precision than the weights (outside autocast) names both."""
    if (
        not torch.compiler.is_compiling()
        and torch.is_tensor(pixel_values)
        and pixel_values.is_floating_point()
        and pixel_values.dtype != dtype
        and not torch.is_autocast_enabled(pixel_values.device.type)
    ):
        raise ValueError(
            f"pixel_values are {pixel_values.dtype} but the model's weights are {dtype}; "
            "use pixel_values.to(model.dtype), or run under torch.autocast"
        )


def build_loss(config) -> AsymmetricLoss:
    return AsymmetricLoss(
        gamma_neg=config.asl_gamma_neg,
        gamma_pos=config.asl_gamma_pos,
        clip=config.asl_clip,
        eps=config.asl_eps,
        focal_grad=config.asl_focal_grad,
        reduction=config.asl_reduction,
    )


def check_labels(labels: Tensor, logits: Tensor) -> None:
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels must have shape (batch, num_labels) = {tuple(logits.shape)}, got {tuple(labels.shape)}; "
            "labels are a float multi-hot matrix with -1 for unknown entries"
        )
    if not values_checked_here(labels):
        return
    valid = (labels == 0) | (labels == 1) | (labels == -1)
    if not valid.all():
        bad = labels[~valid][:3].tolist()
        raise ValueError(f"labels may only hold 1 (present), 0 (absent) and -1 (unknown), got values such as {bad}")


def attention_to_grid(weights: Tensor, feature_map: Tensor, backbone: FeatureBackbone, image_size) -> Tensor:
    """(B, Q, S) attention over the memory -> (B, Q, h, w) on the feature grid."""
    if feature_map.ndim == 4:
        h, w = feature_map.shape[-2:]
        return weights.reshape(weights.shape[0], weights.shape[1], h, w)
    weights = weights[..., backbone.num_prefix_tokens :]
    h, w = backbone.token_grid(image_size)
    return weights.reshape(weights.shape[0], weights.shape[1], h, w)


class ClassifierForwardMixin:
    """forward() of the classification models: base model, classifier, asymmetric loss."""

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: Tensor | int | None = None,
        **kwargs,
    ) -> MultiLabelClassifierOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`): images, any size.
            labels (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*): multi-hot targets;
                entries of -1 are unknown and left out of the loss.
            output_attentions (`bool`, *optional*): also return the decoder cross-attention maps.
            return_dict (`bool`, *optional*): return a `MultiLabelClassifierOutput` instead of a tuple.
            num_items_in_batch (`int` or `torch.Tensor`, *optional*): label entries (rows x labels) in the
                whole optimizer step, all processes and accumulated micro-batches together, as the
                `Trainer` counts them. See `MultiLabelPreTrainedModel.accepts_loss_kwargs`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        check_pixel_dtype(pixel_values, self.dtype)
        outputs = self.model(pixel_values, output_attentions=output_attentions, return_dict=True)
        logits = self.classifier(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self.compute_loss(logits, labels, num_items_in_batch)
        if not return_dict:
            out = (logits, outputs.last_hidden_state)
            if outputs.cross_attentions is not None:
                out = out + (outputs.cross_attentions,)
            return ((loss,) + out) if loss is not None else out
        return MultiLabelClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.last_hidden_state, cross_attentions=outputs.cross_attentions
        )


    def compute_loss(self, logits: Tensor, labels: Tensor, num_items_in_batch: Tensor | int | None = None) -> Tensor:
        """Asymmetric loss on multi-hot labels; cross-entropy for single-label models (e.g. Stanford Cars).

        A single-label model takes class indices (B,) or one-hot rows (B, C). A mean (Query2Label's
        ``scaled_mean``, cross-entropy) divides by the whole step's ``num_items_in_batch`` when given,
        not by this batch's size; a sum (ML-Decoder) is a sum either way.
        """
        if self.config.problem_type == "single_label_classification":
            rows = None
            if labels.ndim == 2:
                check_labels(labels, logits)
                labels = labels.argmax(-1)
                if num_items_in_batch is not None:
                    rows = num_items_in_batch / logits.shape[1]  # the Trainer counted every entry of the (B, C) rows
            elif num_items_in_batch is not None:
                rows = num_items_in_batch
            if labels.shape != logits.shape[:1]:
                raise ValueError(f"labels must be class indices of shape ({logits.shape[0]},), got {tuple(labels.shape)}")
            if rows is None:
                return torch.nn.functional.cross_entropy(logits.float(), labels.long())
            return torch.nn.functional.cross_entropy(logits.float(), labels.long(), reduction="sum") / rows
        check_labels(labels, logits)
        return self.loss_fct(logits, labels, num_items_in_batch)


class CheckpointWeightsError(ValueError):
    """A checkpoint whose weights do not fit the model its config describes: a learned tensor missing, or of
    another shape. The message names the folder and the tensors."""


class _DropLoadReport:
    """A logging filter that drops transformers' LOAD REPORT table (what it says, our error says in one line)."""

    def filter(self, record) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def _shape(shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _check_loading_info(source, info: dict, ignore_mismatched: bool) -> None:
    where = f"model {str(source)!r}" if source is not None else "the checkpoint"
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointWeightsError(
            f"{where}: its weights lack {len(missing)} learned tensor(s) the config asks for: {shown}; the file is "
            "incomplete or from another model (save the model again with save_pretrained)"
        )
    mismatched = sorted(info.get("mismatched_keys") or ())
    if mismatched and not ignore_mismatched:
        parts = []
        for item in mismatched[:3]:
            key, ckpt, model = (item + (None, None))[:3] if isinstance(item, tuple) else (item, None, None)
            parts.append(f"{key} is {_shape(ckpt)} in the weights but {_shape(model)} for config.json"
                         if ckpt is not None and model is not None else str(key))
        more = f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        raise CheckpointWeightsError(
            f"{where}: its weights do not match its config.json: {'; '.join(parts)}{more} (a config.json edited or "
            "from another model, e.g. another label count); to start new tensors for a new label count, pass "
            "ignore_mismatched_sizes=True"
        )
    unexpected = sorted(info.get("unexpected_keys") or ())
    if unexpected:
        import logging

        logging.getLogger(__name__).warning(
            "%s: %d tensor(s) in the weights that the model does not use were left out: %s", where, len(unexpected),
            ", ".join(unexpected[:5]) + (" ..." if len(unexpected) > 5 else ""),
        )


class MultiLabelPreTrainedModel(PreTrainedModel):
    """Base class: initialisation that leaves the backbone alone, offline-safe loading, complete saving."""

    main_input_name = "pixel_values"
    base_model_prefix = "model"
    # The loss honours the Trainer's `num_items_in_batch` (the label entries of the whole optimizer step,
    # counted over every process and accumulated micro-batch): a mean divides by it, a sum ignores it. The
    # Trainer then adds the micro-batches' losses instead of averaging them and undoes DDP's gradient
    # averaging, so a global batch trains the same whatever its split into processes and accumulation steps,
    # for a mean (Query2Label) and a sum (ML-Decoder) alike. Stated here, not inferred from `**kwargs`.
    accepts_loss_kwargs = True
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, strict: every learned weight must be in the checkpoint with the
        shape the config gives it. A missing tensor (which transformers would fill with random values and only
        warn about) or a mismatched one raises :class:`CheckpointWeightsError` naming the folder and the
        tensor. ``ignore_mismatched_sizes=True`` still starts new tensors where the shapes differ (a new label
        count for fine-tuning), as transformers does; missing tensors stay an error."""
        ignore_mismatched = bool(kwargs.pop("ignore_mismatched_sizes", False))
        want_info = bool(kwargs.pop("output_loading_info", False))
        source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        from transformers import modeling_utils

        report_logger = modeling_utils.logger
        # transformers' multi-line load report would precede our one-line error (each call its own filter, so
        # that loads in several threads never leave the logger changed)
        quiet = _DropLoadReport()
        if not ignore_mismatched:
            report_logger.addFilter(quiet)
        try:
            # The checkpoint holds the backbone weights: never fetch pretrained ones while loading.
            with loading_checkpoint():
                model, info = super().from_pretrained(
                    *args, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
                )
        finally:
            report_logger.removeFilter(quiet)
        _check_loading_info(source, info, ignore_mismatched)
        return (model, info) if want_info else model

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "_hf_mlcls_backbone", False):
            return  # timm/transformers initialised it (or pretrained weights were loaded)
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight)
        elif hasattr(module, "reset_parameters") and not isinstance(module, nn.Dropout):
            module.reset_parameters()
        if getattr(module, "_xavier_init", False):
            # Query2Label's Transformer: xavier-uniform on every matrix, biases left at their defaults.
            for param in module.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, **kwargs) -> None:
        for module in self.modules():
            if isinstance(module, FeatureBackbone):
                module.set_grad_checkpointing(enable)
            elif hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enable

    def build_image_processor(self) -> MultiLabelImageProcessor:
        """The image processor matching this model's input size and normalisation (reads only ``self.config``)."""
        normalize = self.config.image_mean is not None
        return MultiLabelImageProcessor(
            do_resize=True,
            size={"height": self.config.image_size, "width": self.config.image_size},
            resample=2,  # bilinear, as the official recipes resize with PIL
            do_normalize=normalize,
            image_mean=self.config.image_mean if normalize else [0.0, 0.0, 0.0],
            image_std=self.config.image_std if normalize else [1.0, 1.0, 1.0],
        )

    # Each family names the remote-code classes a saved folder offers (module.Class, relative to the folder).
    _remote_code_map: dict[str, str] = {}

    def save_pretrained(self, save_directory, *args, safe_serialization: bool = True, **kwargs):
        """Save weights (safetensors), config, remote code and the matching image processor (once).

        Weights are always safetensors: ``safe_serialization=False`` (a pickle file) is refused with a
        ``ValueError`` rather than ignored.
        """
        if not safe_serialization:
            raise ValueError(
                "save_pretrained(safe_serialization=False): these models save safetensors only; pickle weights files "
                "are never written (leave safe_serialization at True)"
            )
        if getattr(self, "_auto_class", None) is not None:
            # Both AutoModel and AutoModelForImageClassification open the folder with trust_remote_code.
            self.config.auto_map = dict(self._remote_code_map)
        out = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            self.build_image_processor().save_pretrained(save_directory)
        return out

"""`evaluate` module for multi-label classification: both published mAPs, CP/CR/CF1, OP/OR/OF1.

Load it offline, from any working directory: ``evaluate.load(hf_mlcls.EVALUATE_METRIC)`` (this folder, installed
with the package).
The numbers come from :func:`hf_mlcls.metrics.compute`; its docstring states every definition.
"""

import datasets
import evaluate
import numpy as np

from hf_mlcls.metrics import compute

_DESCRIPTION = """\
Multi-label image classification metrics, in percent: `mAP` (ASL / ML-Decoder definition:
mean over positives of the precision at their rank), `mAP_voc` (Query2Label's all-point
interpolated AP under the precision envelope), CP / CR / CF1 / OP / OR / OF1 at a probability
threshold and at top-k, per-class AP, and how many classes had no positive (those are
skipped, never averaged in as zero). A reference of -1 means "unknown" and is left out.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: one sequence of C probabilities per sample (sigmoid already applied).
    references: one sequence of C targets per sample: 1 positive, 0 negative, -1 unknown.
    threshold: a sample predicts a class when its probability is >= threshold (default 0.5).
    top_k: k of the top-k metrics, whose keys end in `_top{k}` (default 3).
Returns:
    mAP, mAP_voc, CP, CR, CF1, OP, OR, OF1, the same six with `_top{k}`, AP_per_class and
    AP_voc_per_class (lists, NaN for a skipped class), num_classes_skipped, num_classes.
Examples:
    >>> metric = evaluate.load(hf_mlcls.EVALUATE_METRIC)
    >>> r = metric.compute(predictions=[[0.9, 0.2], [0.3, 0.8]], references=[[1, 0], [0, 1]])
    >>> r["mAP"], r["num_classes_skipped"]
    (99.999999..., 0)
"""

_CITATION = """\
@article{liu2021query2label,
  title={Query2Label: A Simple Transformer Way to Multi-Label Classification},
  author={Liu, Shilong and Zhang, Lei and Yang, Xiao and Su, Hang and Zhu, Jun},
  journal={arXiv preprint arXiv:2107.10834},
  year={2021}
}
@article{ridnik2021mldecoder,
  title={ML-Decoder: Scalable and Versatile Classification Head},
  author={Ridnik, Tal and Sharir, Gilad and Ben-Cohen, Avi and Ben-Baruch, Emanuel and Noy, Asaf},
  journal={arXiv preprint arXiv:2111.12933},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelMAP(evaluate.Metric):
    """mAP (both definitions) and the thresholded metrics of multi-label classification."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    # float64: a float32 round trip could turn distinct scores into ties
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int8")),
                }
            ),
        )

    def _compute(self, predictions, references, threshold=0.5, top_k=3):
        result = compute(
            np.asarray(predictions, dtype=np.float64),
            np.asarray(references, dtype=np.int8),
            threshold=threshold,
            top_k=top_k,
        )
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}

"""Every checkpoint the authors published, with the preset that rebuilds it and its label set."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

Q2L_TSINGHUA = "https://cloud.tsinghua.edu.cn/d/a1560cd327dc45d0ad8e/"
Q2L_GDRIVE = "https://drive.google.com/drive/folders/1_hu98VQ4zZ6F65OvhJzTbp2W3sqaLywP"
MLD_ZOO = "https://miil-public-eu.oss-eu-central-1.aliyuncs.com/model-zoo/ML_Decoder/"


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One published checkpoint.

    Args:
        name: the authors' name for it (Query2Label's README model names; ML-Decoder's file names).
        family: `"query2label"` or `"ml_decoder"`.
        preset: the `hf_mlcls.presets` preset that rebuilds it.
        url: where the authors publish it.
        labels: label set (`coco`, `openimages`, `stanford-cars`): names for `id2label`.
        num_labels: class count, when it is known without the file.
        overrides: config fields that differ from the preset for this checkpoint.
        published: the authors' reported score.
        file_names: file names it is distributed under (to recognise it by name).
    """

    name: str
    family: str
    preset: str
    url: str
    labels: str
    num_labels: int | None
    published: str
    overrides: dict = field(default_factory=dict)
    file_names: tuple[str, ...] = ()
    note: str = ""


def _q2l(name: str, preset: str, published: str) -> OfficialCheckpoint:
    return OfficialCheckpoint(
        name=name, family="query2label", preset=preset,
        url=f"{Q2L_TSINGHUA} (folder {name}; mirror {Q2L_GDRIVE})",
        labels="coco", num_labels=80, published=published,
        note="checkpoint.pkl with config.json / config_new.json (the training arguments) beside it",
    )


def _mld(stem: str, preset: str, labels: str, num_labels: int | None, published: str, **kw) -> OfficialCheckpoint:
    return OfficialCheckpoint(
        name=stem, family="ml_decoder", preset=preset, url=MLD_ZOO + stem + ".pth", labels=labels,
        num_labels=num_labels, published=published, file_names=(stem + ".pth",), **kw,
    )


CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    c.name: c
    for c in (
        _q2l("Q2L-R101-448", "q2l-r101-448", "84.9 mAP, MS-COCO 2014 val"),
        _q2l("Q2L-R101-576", "q2l-r101-576", "86.5 mAP, MS-COCO 2014 val"),
        _q2l("Q2L-TResL-448", "q2l-tresnetl-448", "87.3 mAP, MS-COCO 2014 val"),
        _q2l("Q2L-TResL_22k-448", "q2l-tresnetl22k-448", "89.2 mAP, MS-COCO 2014 val"),
        _q2l("Q2L-SwinL-384", "q2l-swinl-384", "90.5 mAP, MS-COCO 2014 val"),
        _q2l("Q2L-CvT_w24-384", "q2l-cvt-w24-384", "91.3 mAP, MS-COCO 2014 val"),
        _mld("tresnet_m_COCO_224_84_2", "mldecoder-tresnetm-224", "coco", 80, "84.2 mAP, MS-COCO 2014 val"),
        _mld("tresnet_l_COCO__448_90_0", "mldecoder-tresnetl-448", "coco", 80, "90.1 mAP, MS-COCO 2014 val"),
        _mld("tresnet_xl_COCO_640_91_4", "mldecoder-tresnetxl-640", "coco", 80, "91.4 mAP, MS-COCO 2014 val"),
        _mld("tresnet_m_open_images_200_groups_86_8", "mldecoder-tresnetm-224", "openimages", 9605,
             "86.8 mAP, Open Images v6 (9,605 classes, 200 groups)"),
        _mld("tresnet_l_stanford_card_96.41", "mldecoder-tresnetl-448", "stanford-cars", 196,
             "96.41% top-1, Stanford Cars (single-label)",
             overrides={"image_size": 384, "problem_type": "single_label_classification"},
             note="single-label: softmax over the 196 classes"),
        _mld("tresnet_l_pretrain_ml_decoder", "mldecoder-tresnetl-448", "openimages", None,
             "Open Images pretraining (the maintainers, ML_Decoder issue #12); train.py's --model-path default",
             note="the starting point of the COCO/NUS-WIDE recipes; class count read from the file. If the file "
                  "holds no ML-Decoder head, convert its backbone with --backbone-only (what train.py keeps of it)"),
    )
}


def find_checkpoint(name_or_preset: str, checkpoint_path: str | None = None) -> OfficialCheckpoint | None:
    """The table entry named `name_or_preset`, or the one of that preset whose file name matches the checkpoint's."""
    if name_or_preset in CHECKPOINTS:
        return CHECKPOINTS[name_or_preset]
    from ..presets import PRESETS

    lowered = {k.lower(): v for k, v in CHECKPOINTS.items()}
    if name_or_preset not in PRESETS and name_or_preset.lower() in lowered:
        return lowered[name_or_preset.lower()]
    if checkpoint_path:
        base = os.path.basename(checkpoint_path)
        for entry in CHECKPOINTS.values():
            if entry.preset == name_or_preset and base in entry.file_names:
                return entry
        # Query2Label's releases are folders named after the model (…/Q2L-R101-448/checkpoint.pkl)
        folder = os.path.basename(os.path.dirname(os.path.abspath(checkpoint_path)))
        entry = CHECKPOINTS.get(folder)
        if entry is not None and entry.preset == name_or_preset:
            return entry
    return None


def checkpoint_table() -> str:
    """The table as plain text (for `--help`)."""
    rows = [f"  {c.name:<38} --preset {c.preset:<24} labels: {c.labels}" for c in CHECKPOINTS.values()]
    return "Published checkpoints (pass the name or the preset to --preset):\n" + "\n".join(rows)

"""Model cards and uploads to the Hugging Face Hub, and the Space deploy.

- `load_eval_results(path)` (`evaluation`): read and check the evaluation JSON that `examples/evaluate.py`
  writes.
- `render_model_card(config, eval_results=...)` (`cards`): a `huggingface_hub.ModelCard` from the
  family's template (package data in `templates/`), with `model-index` metadata built from `EvalResult`s.
- `prepare_upload_folder(source, out_dir, ...)` (`upload_folder`): the exact folder a push uploads
  (weights, config, image processor, remote code, card, evaluation artefacts), built without touching
  `source`.
- `push_to_hub(folder, repo_id, ...)` (`hub_io`): that folder in one commit (`HfApi.upload_folder`).
- `deploy_space(repo_id, ...)` (`space_deploy`): the Gradio Space, staged from the installed package, in
  one commit.

Every failure a user can fix (missing token, offline, unreachable Hub, bad folder) raises
`hf_mlcls.cli.UserError` with one readable sentence.
"""

from .cards import CARD_METRICS, build_card_data, card_template, render_model_card
from .evaluation import EVAL_METRICS, check_eval_results, load_eval_results
from .hub_io import check_repo_id, push_to_hub
from .space_deploy import deploy_space, prepare_space_folder, space_files
from .upload_folder import EVAL_ARTIFACT_SUFFIXES, UPLOAD_PATTERNS, prepare_upload_folder

__all__ = [
    "CARD_METRICS",
    "EVAL_ARTIFACT_SUFFIXES",
    "EVAL_METRICS",
    "UPLOAD_PATTERNS",
    "build_card_data",
    "card_template",
    "check_eval_results",
    "check_repo_id",
    "deploy_space",
    "load_eval_results",
    "prepare_space_folder",
    "prepare_upload_folder",
    "push_to_hub",
    "render_model_card",
    "space_files",
]

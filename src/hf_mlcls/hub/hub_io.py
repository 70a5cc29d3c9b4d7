"""Hub I/O: token and offline checks, one-commit uploads, and one readable sentence for every failure."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from .upload_folder import prepare_upload_folder

__all__ = ["check_repo_id", "push_to_hub", "upload_folder"]


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import HTTPError  # the HTTP client's base error (not an OSError everywhere)

        errors.append(HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    if not token:
        try:
            token = get_token()
        except Exception as err:  # e.g. a failed OIDC token exchange
            raise UserError(f"could not get a Hugging Face token ({err.__class__.__name__}); pass --token") from None
    if not token:
        raise UserError(
            "no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token "
            "(a token with write access, from https://huggingface.co/settings/tokens)"
        )
    return token


def _explain(err: BaseException, what: str) -> UserError:
    """One sentence for a failed Hub call: offline, unauthorised, not found, or unreachable."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return UserError(f"cannot {what}: offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return UserError(f"cannot {what}: the Hub refused the token (HTTP {status}); check it has write access")
    if status is not None:
        return UserError(f"cannot {what}: the Hub answered HTTP {status}")
    return UserError(f"cannot {what}: the Hub could not be reached ({err.__class__.__name__}); check the network")


def _preflight(token: str | None, repo_id: str) -> str:
    """The token to use; fails before any work when there is none or the Hub is switched off."""
    from huggingface_hub import constants

    token = _resolve_token(token)
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot upload to {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    return token


def upload_folder(folder: Path, repo_id: str, *, repo_type: str, token, private, commit_message, endpoint, space_sdk=None):
    from huggingface_hub import HfApi

    token = _preflight(token, repo_id)
    what = f"upload to {repo_id}"
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        info = api.upload_folder(
            repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), commit_message=commit_message
        )
    except _network_errors() as err:
        raise _explain(err, what) from None
    return getattr(info, "commit_url", None) or str(info)


def push_to_hub(
    folder,
    repo_id: str,
    *,
    dry_run: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    eval_json: str | os.PathLike | dict | None = None,
    eval_artifacts: list[str | os.PathLike] | None = None,
    endpoint: str | None = None,
    **card_kwargs,
) -> dict[str, Any]:
    """Upload a model folder (or model object) to `repo_id` in one commit.

    The upload folder is built by `prepare_upload_folder` in a temporary folder (or in `dry_run`, which
    is then kept and nothing is uploaded). `card_kwargs` go to `render_model_card` (license, datasets,
    base_model, tags, provenance). Returns ``{"folder", "files", "skipped", "commit_url"}``.
    """
    check_repo_id(repo_id)
    if dry_run is not None:
        result = prepare_upload_folder(
            folder, dry_run, repo_id=repo_id, eval_json=eval_json, eval_artifacts=eval_artifacts, **card_kwargs
        )
        return dict(result, commit_url=None)
    _preflight(token, repo_id)
    with tempfile.TemporaryDirectory(prefix="hf_mlcls_push_") as tmp:
        result = prepare_upload_folder(
            folder, Path(tmp) / "upload", repo_id=repo_id, eval_json=eval_json, eval_artifacts=eval_artifacts,
            **card_kwargs,
        )
        url = upload_folder(
            result["folder"],
            repo_id,
            repo_type="model",
            token=token,
            private=private,
            commit_message=commit_message or "Upload model, card and evaluation results with hf_mlcls",
            endpoint=endpoint,
        )
    return dict(result, folder=None, commit_url=url)


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}", repo_id or "") or ".." in repo_id:
        raise UserError(f"repository id {repo_id!r} is not of the form owner/name")

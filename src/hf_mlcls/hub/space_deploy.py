"""The Gradio Space: staged from the installed package (`hf_mlcls/space/files`) and uploaded in one commit."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserError
from .hub_io import check_repo_id, upload_folder
from .upload_folder import _check_out_dir

__all__ = ["deploy_space", "prepare_space_folder", "space_files"]

# Files of the Space folder that stay behind: byte code, and the script that draws the examples.
_SPACE_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "make_examples.py")


def space_files() -> Path:
    """The Space's own files (app.py, requirements.txt, README.md, examples/) inside the installed package."""
    folder = resources.files("hf_mlcls.space") / "files"
    if not isinstance(folder, Path) or not (folder / "app.py").is_file():
        # a zipped or incomplete installation: package data that cannot be copied as a folder
        raise UserError("the Space files (hf_mlcls/space/files/app.py) are missing from this installation; reinstall hf_mlcls")
    return folder


def _package_root() -> Path:
    from .. import __file__ as package_init

    return Path(package_init).resolve().parent


def prepare_space_folder(
    out_dir: str | os.PathLike,
    *,
    models: list[str] | None = None,
    hf_mlcls_requirement: str | None = None,
    space_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the Space into `out_dir` as it is uploaded.

    The Space's files come from the installed package (`space_files()`; `space_dir` names another folder
    with the same layout). By default the `hf_mlcls` package source goes along (as `hf_mlcls/` beside
    `app.py`, without its own copy of the Space files), so the Space runs the installed code;
    `hf_mlcls_requirement` (e.g. ``"hf_mlcls==0.1.0"``) installs it from PyPI instead. `models` sets the
    default model list (`models.txt`; the app reads `HF_MLCLS_MODELS` first, then this list).
    """
    space = Path(space_dir) if space_dir else space_files()
    if not (space / "app.py").is_file():
        raise UserError(f"Space folder {space.name} has no app.py")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, None)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(space, out_dir, ignore=_SPACE_IGNORE, dirs_exist_ok=True)
    requirements = out_dir / "requirements.txt"
    lines = requirements.read_text(encoding="utf-8").splitlines() if requirements.exists() else []
    if hf_mlcls_requirement:
        lines.append(hf_mlcls_requirement)
    else:
        package = _package_root()
        files = (package / "space" / "files").resolve()

        def ignore(folder: str, names: list[str]) -> set[str]:
            skipped = set(shutil.ignore_patterns("__pycache__", "*.pyc")(folder, names))
            return skipped | {n for n in names if (Path(folder) / n).resolve() == files}

        shutil.copytree(package, out_dir / "hf_mlcls", ignore=ignore)
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if models:
        (out_dir / "models.txt").write_text("\n".join(models) + "\n", encoding="utf-8")
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    return {"folder": out_dir, "files": files}


def deploy_space(
    repo_id: str,
    *,
    dry_run: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    models: list[str] | None = None,
    hf_mlcls_requirement: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Upload the Gradio Space to `repo_id` (a Space repository, created with sdk gradio) in one commit."""
    from .hub_io import _preflight

    check_repo_id(repo_id)
    if dry_run is not None:
        return dict(prepare_space_folder(dry_run, models=models, hf_mlcls_requirement=hf_mlcls_requirement), url=None)
    _preflight(token, repo_id)
    with tempfile.TemporaryDirectory(prefix="hf_mlcls_space_") as tmp:
        result = prepare_space_folder(Path(tmp) / "space", models=models, hf_mlcls_requirement=hf_mlcls_requirement)
        url = upload_folder(
            result["folder"],
            repo_id,
            repo_type="space",
            token=token,
            private=private,
            commit_message=commit_message or "Deploy the hf_mlcls Space",
            endpoint=endpoint,
            space_sdk="gradio",
        )
    return dict(result, folder=None, url=url)

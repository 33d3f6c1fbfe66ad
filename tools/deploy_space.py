"""Deploy the app to a Hugging Face Space in one command.

    python tools/deploy_space.py --repo you/vision-playground                 # CPU basic
    python tools/deploy_space.py --repo you/vision-playground --hardware zero-a10g
    python tools/deploy_space.py --repo you/vision-playground --dry-run       # what would be sent

It creates the Space (Gradio SDK; README.md's front matter sets Python 3.12 and the Gradio
version), uploads what the app needs to run (`upload_plan`: the app, its examples, README,
requirements.txt, LICENSE; never tests, benchmarks, virtual environments, caches or test
artefacts), asks for the hardware when given, and stores ``HF_TOKEN`` as a secret when
``--token-secret`` is given (gated models, e.g. PaliGemma 2 and Llama 3.2 Vision, need a token
whose account accepted their terms). The login is ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What a Space runs: the app and its examples, plus the files Spaces reads.
INCLUDE = ("app.py", "requirements.txt", "README.md", "LICENSE", "model_loaders/**", "tabs/**", "assets/**")
EXCLUDE = ("**/__pycache__/**", "*.pyc", "**/.DS_Store")
GATED_HINT = (
    "Gated models (PaliGemma 2, Llama 3.2 Vision) need a token whose account accepted their terms: "
    "add it as the Space secret HF_TOKEN (Settings > Variables and secrets, or --token-secret)."
)


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(path, p) or (p.endswith("/**") and path.startswith(p[:-2])) for p in patterns)


def _candidates(root: Path) -> list[str]:
    """Files of the project: what git tracks (plus new files it does not ignore), else every file."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        files = [line for line in out.splitlines() if line and (root / line).is_file()]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


def upload_plan(root: Path = ROOT) -> list[str]:
    """The files a Space gets, relative to ``root``, sorted."""
    return sorted(f for f in _candidates(root) if _matches(f, INCLUDE) and not _matches(f, EXCLUDE))


def stage(root: Path, target: Path) -> list[str]:
    """Copy the upload plan into ``target`` (what the Space will hold); returns the files."""
    files = upload_plan(root)
    for rel in files:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
    return files


def deploy(repo: str, hardware: str | None, private: bool, token_secret: bool) -> str:
    """Create or update the Space and upload the app; returns its URL."""
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vp-space-") as tmp:
        stage(ROOT, Path(tmp))
        api.upload_folder(repo_id=repo, repo_type="space", folder_path=tmp,
                          commit_message="Deploy Vision Playground")  # fmt: skip
    if hardware:
        api.request_space_hardware(repo, hardware)  # type: ignore[arg-type]
    if token_secret:
        token = os.environ.get("HF_TOKEN")
        if not token:
            raise SystemExit("--token-secret reads the token from HF_TOKEN, which is not set")
        api.add_space_secret(repo, "HF_TOKEN", token, description="gated model access")
    return f"https://huggingface.co/spaces/{repo}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="the Space, owner/name")
    parser.add_argument("--hardware", help="e.g. cpu-basic, zero-a10g (ZeroGPU), t4-small, l4x1 (default: keep)")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--token-secret", action="store_true", help="store $HF_TOKEN as the Space secret HF_TOKEN")
    parser.add_argument("--dry-run", action="store_true", help="list what would be uploaded; contact nothing")
    args = parser.parse_args(argv)
    if args.repo.count("/") != 1:
        parser.error("--repo is owner/name")
    if args.dry_run:
        files = upload_plan()
        for rel in files:
            print(rel)
        size = sum((ROOT / f).stat().st_size for f in files)
        print(f"# {len(files)} files, {size / 2**20:.1f} MB would go to spaces/{args.repo}", file=sys.stderr)
        return 0
    url = deploy(args.repo, args.hardware, args.private, args.token_secret)
    print(f"Deployed: {url}")
    print(GATED_HINT)
    if args.hardware == "zero-a10g":
        print("ZeroGPU: the model each tab opens with is kept ready (VP_PRELOAD overrides it, as a Space variable).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every error class of s3dgs and preprocess derives from S3dgsError (read statically with ``ast``), so a command
line entry point that catches S3dgsError prints any of them as one line."""

import ast
import builtins
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_ERRORS = {n for n, c in vars(builtins).items() if isinstance(c, type) and issubclass(c, Exception)}


def error_classes() -> dict[str, list[str]]:
    """``{"path:Class": [base names]}`` of every class deriving directly from a builtin error or from S3dgsError."""
    found = {}
    for top in ("s3dgs", "preprocess"):
        for path in (REPO_ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef):
                    bases = [ast.unparse(b).rpartition(".")[2] for b in node.bases]
                    if BUILTIN_ERRORS & set(bases) or "S3dgsError" in bases:
                        found[f"{path.relative_to(REPO_ROOT)}:{node.name}"] = bases
    return found


def test_every_error_class_derives_from_s3dgs_error():
    classes = error_classes()
    assert "s3dgs/errors.py:TrainError" in classes and "preprocess/images.py:InputError" in classes
    loose = {name: bases for name, bases in classes.items()
             if "S3dgsError" not in bases and not name.endswith(":S3dgsError")}
    assert not loose, loose

"""Where the shipped testbed models live, so every command defaults to them by name.

The weights ship inside the package (``src/ttscale/testbed/models/<name>/``) so ttscale runs fully
offline with no download step; ``ttscale testbed train`` rebuilds them in place. This module sits
at the bottom of the package (it imports nothing of ttscale), so the session can resolve model
names without depending on the testbed's build and evaluation code.
"""

from __future__ import annotations

from pathlib import Path

#: the testbed models every command may default to
MODEL_NAMES = ("policy-small", "policy-large", "prm", "revision")

#: prefix that names a shipped testbed model wherever a model path is accepted
TESTBED_PREFIX = "testbed:"


class TestbedModelMissing(FileNotFoundError):
    """A shipped testbed model has not been trained/installed yet."""

    __test__ = False  # not a pytest test class despite the name


def models_dir() -> Path:
    """The folder that holds the shipped testbed models."""
    return Path(__file__).resolve().parent / "testbed" / "models"


def model_path(name: str, must_exist: bool = True) -> Path:
    """The folder of testbed model ``name``; raises a one-line error naming the fix if absent.

    A model counts as present when its folder holds a ``config.json`` (what ``from_pretrained``
    needs first), so a half-written folder is reported instead of failing deep inside transformers.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown testbed model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    path = models_dir() / name
    if must_exist and not (path / "config.json").is_file():
        raise TestbedModelMissing(
            f"testbed model {name!r} not found at {path}; run `ttscale testbed train`")
    return path


def resolve_model(spec: str | None, default: str) -> str:
    """Turn a user's model spec into what an engine loads.

    ``None`` means the testbed model ``default``; ``testbed:NAME`` names any testbed model; any
    other string (a local folder, or a served model name for HTTP engines) is returned unchanged.
    """
    if spec is None:
        return str(model_path(default))
    if spec.startswith(TESTBED_PREFIX):
        return str(model_path(spec[len(TESTBED_PREFIX):]))
    return spec

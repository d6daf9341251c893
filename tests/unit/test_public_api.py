"""The public API is pinned, cheap to import, and every public class says what it is for."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import streamlearn

# Changing the public API should show up as a diff here, reviewed on purpose.
PUBLIC_API = [
    "BatchDriftDetector",
    "BrokerError",
    "CheckpointError",
    "CheckpointStore",
    "Codec",
    "CodecError",
    "Daemon",
    "DeadLetter",
    "DriftDetector",
    "DriftSignal",
    "Engine",
    "Expert",
    "ModelError",
    "Prediction",
    "Record",
    "RequestError",
    "Sample",
    "Service",
    "Settings",
    "SettingsError",
    "Sink",
    "Source",
    "SourceError",
    "StateDict",
    "StepScaling",
    "StreamlearnError",
    "TopicPartition",
    "WarmStarted",
    "__version__",
    "kafka_daemon",
    "load_settings",
]


def test_public_api_is_pinned() -> None:
    assert streamlearn.__all__ == PUBLIC_API
    assert sorted(PUBLIC_API) == PUBLIC_API


def test_every_public_name_resolves_and_is_listed_by_dir() -> None:
    for name in streamlearn.__all__:
        assert getattr(streamlearn, name) is not None, name
    assert set(PUBLIC_API) <= set(dir(streamlearn))


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        streamlearn.not_a_name  # noqa: B018
    except AttributeError:
        return
    raise AssertionError("streamlearn.not_a_name resolved")


def test_importing_streamlearn_does_not_import_torch() -> None:
    # The service's supervisor imports the package and must stay small: a fresh interpreter
    # shows it, this one has torch loaded by other tests.
    subprocess.run(
        [sys.executable, "-c", "import streamlearn, sys; assert 'torch' not in sys.modules"],
        check=True,
        timeout=60,
    )


def _modules() -> list[str]:
    # Files, not pkgutil.walk_packages: that skips namespace packages (streamlearn.serve has
    # no __init__.py), and with them every serving class.
    root = Path(streamlearn.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        # Generated code has no docstrings to give; importing __main__ would run the CLI.
        if "_pb2" in path.name or path.name == "__main__.py":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _written_docstring(cls: type) -> bool:
    doc = (cls.__dict__.get("__doc__") or "").strip()
    # dataclass and NamedTuple make one up from the fields: "Name(a: int, b: str)".
    return bool(doc) and not doc.startswith(f"{cls.__name__}(")


def test_every_public_class_has_a_docstring() -> None:
    missing = []
    for module_name in _modules():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if not inspect.isclass(value) or name.startswith("_"):
                continue
            if value.__module__ != module_name:
                continue  # imported from elsewhere: checked where it is defined
            if not _written_docstring(value):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public classes without a docstring: {missing}"

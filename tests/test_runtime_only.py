"""The runtime-only install: every online verb works where torch, onnx and matplotlib are missing.

``pip install siamid`` (without the ``train`` extra) has numpy, scipy, Pillow, onnxruntime,
cryptography, typer and rich only. Each test runs Python in a subprocess whose ``sitecustomize``
makes ``import torch`` / ``onnx`` / ``matplotlib`` (and their submodules) raise ImportError, as on
such an install. To cover a new online verb, add a row to ``INVOCATIONS``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "onnx", "matplotlib")

BLOCKER = textwrap.dedent(f"""
    # Installed as sitecustomize by tests/test_runtime_only.py: the training stack is absent.
    import sys

    class _Absent:
        blocked = {BLOCKED!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"No module named {{name!r}} (runtime-only install)")
            return None

    sys.meta_path.insert(0, _Absent())
""")


@pytest.fixture(scope="module")
def blocker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a subprocess that runs like a runtime-only install."""
    folder = tmp_path_factory.mktemp("runtime_only")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO)])
    env["COLUMNS"] = "200"  # whole table rows, whatever the terminal
    env.pop("SIAMID_GALLERY_KEY", None)
    return env


def run_python(env: dict[str, str], *args: str, cwd: Path | None = None
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_blocker_blocks_the_training_stack(blocker: dict[str, str]) -> None:
    """Without this the other tests could pass on a machine that has torch only by accident."""
    code = textwrap.dedent(f"""
        import importlib
        for name in {BLOCKED + ("torch.nn", "onnx.helper", "matplotlib.pyplot")!r}:
            try:
                importlib.import_module(name)
            except ImportError:
                continue
            raise SystemExit(f"{{name}} imported")
        import numpy, scipy, PIL, onnxruntime, typer, rich  # the base install is all there
    """)
    done = run_python(blocker, "-c", code)
    assert done.returncode == 0, done.stdout + done.stderr


def test_runtime_and_preprocess_import_without_training_stack(blocker: dict[str, str]) -> None:
    code = textwrap.dedent("""
        import sys
        import siamid, siamid.runtime, siamid.preprocess, siamid.store, siamid.cli.main
        from siamid import Embedder, Gallery
        blocked = ("torch", "onnx", "matplotlib")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
        assert not loaded, loaded
        print("ok")
    """)
    done = run_python(blocker, "-c", code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic images of two fingers, and a gallery with finger A enrolled (shipped model)."""
    from siamid.runtime import Embedder, Gallery
    from siamid.store import TemplateStore
    from siamid.synth import generate_dataset, generate_finger

    folder = tmp_path_factory.mktemp("images")
    paths: dict[str, Path] = {}
    # Seeds whose genuine probes the shipped model accepts well inside its threshold.
    for finger, seed in (("a", 4), ("b", 3)):
        for k, image in enumerate(generate_finger(seed, 5, "500dpi")[1]):
            paths[f"{finger}{k}"] = folder / f"{finger}{k}.png"
            Image.fromarray(image).save(paths[f"{finger}{k}"])
    paths["tiny"] = folder / "tiny [red]x.png"  # too small, and a markup-like name
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(paths["tiny"])
    paths["gallery"] = folder / "enrolled.db"
    images = [np.asarray(Image.open(paths[f"a{k}"])) for k in range(3)]
    with TemplateStore(paths["gallery"], create=True) as store:
        Gallery(Embedder(), store).enroll("alice", images)
    # A small labelled set to calibrate on: 20 fingers x 4 give 3,040 impostor pairs.
    paths["set"] = folder / "captured"
    generate_dataset(paths["set"], 20, 4, sensor="r503", seed=21, workers=1)
    return paths


@dataclass(frozen=True)
class Invocation:
    """One CLI call: ``args`` may name workspace files as {a0}, {gallery}, {tmp}."""

    name: str
    args: tuple[str, ...]
    exit_codes: tuple[int, ...]
    stdout_has: tuple[str, ...] = ()
    stderr_has: tuple[str, ...] = ()


INVOCATIONS = [
    Invocation("info", ("info",), (0,), ("model id", "preprocess")),
    Invocation("info json", ("info", "--json"), (0,), ('"model_id"',)),
    Invocation("prep good", ("prep", "{a0}", "{b0}"), (0,), ("ok",)),
    Invocation("prep trace", ("prep", "{a0}", "--trace-dir", "{tmp}/trace"), (0,),
               ("stages written",)),
    Invocation("prep too small, name printed literally", ("prep", "{tiny}", "{a0}"), (1,),
               ("tiny [red]x.png", "image too small: 8x8 px")),
    Invocation("prep missing model", ("prep", "{a0}", "--model", "{tmp}/nonexistent.onnx"), (3,),
               stderr_has=("{tmp}/nonexistent.onnx",)),
    Invocation("prep model and config", ("prep", "{a0}", "--model", "{tmp}/m.onnx", "--config",
                                         "{tmp}/c.toml"), (2,)),
    Invocation("enroll", ("enroll", "bob", "{b0}", "{b1}", "{b2}", "--gallery", "{tmp}/g.db"),
               (0,), ("enrolled bob",)),
    Invocation("verify genuine", ("verify", "alice", "{a3}", "--gallery", "{gallery}"), (0,),
               ("ACCEPTED",)),
    Invocation("verify impostor", ("verify", "alice", "{b4}", "--gallery", "{gallery}"), (1,),
               ("REJECTED",)),
    Invocation("identify", ("identify", "{a3}", "--gallery", "{gallery}"), (0,), ("alice",)),
    Invocation("gallery list", ("gallery", "list", "--gallery", "{gallery}"), (0,), ("alice",)),
    Invocation("gallery info", ("gallery", "info", "--gallery", "{gallery}"), (0,), ("schema",)),
    Invocation("gallery remove", ("gallery", "remove", "alice", "--gallery", "{gallery}"), (0,)),
    Invocation("gallery new-key", ("gallery", "new-key", "--out", "{tmp}/key"), (0,)),
    Invocation("calibrate", ("calibrate", "{model}", "{set}", "--out", "{tmp}/cal.onnx",
                             "--target-fmr", "0.01"), (0,), ("your set captured",)),
]


@pytest.mark.parametrize("call", INVOCATIONS, ids=[c.name for c in INVOCATIONS])
def test_online_verbs_run_without_training_stack(call: Invocation, blocker: dict[str, str],
                                                 workspace: dict[str, Path],
                                                 tmp_path: Path) -> None:
    gallery = tmp_path / "enrolled.db"  # a copy per call: calls never depend on each other
    shutil.copy(workspace["gallery"], gallery)
    from siamid.runtime import default_model_path

    names = {k: str(v) for k, v in workspace.items()} | {
        "gallery": str(gallery), "tmp": str(tmp_path), "model": str(default_model_path())}
    args = [a.format(**names) for a in call.args]
    done = run_python(blocker, "-m", "siamid.cli.main", *args, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode in call.exit_codes, output
    for words in call.stdout_has:
        assert words in done.stdout, output
    for words in call.stderr_has:
        assert words.format(**names) in done.stderr, output

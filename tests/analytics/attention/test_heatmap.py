"""Colormap, overlay and PNG/base64 output of attention maps."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from zwz.analytics.attention.heatmap import (
    BOX_COLOR,
    LUT,
    SUGGESTED_BOX_COLOR,
    colorize,
    normalize,
    overlay,
    overlay_png_base64,
    to_png_base64,
)


def luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def gray(size=(280, 200), level=128) -> Image.Image:
    return Image.new("RGB", size, (level, level, level))


def test_lut_is_256_entries_and_brightens_monotonically():
    assert LUT.shape == (256, 3) and LUT.dtype == np.uint8
    lum = luminance(LUT)
    assert np.all(np.diff(lum[::16]) > 0)
    assert np.diff(lum).min() > -0.5  # inferno's green dips by one level near t = 0.15: rounding, not a trend


def test_colorize_shape_and_hottest_cell_brightest():
    a = np.random.default_rng(0).random((5, 7))
    a[3, 4] = 10.0
    rgb = colorize(a)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    lum = luminance(rgb)
    assert np.unravel_index(lum.argmax(), lum.shape) == (3, 4)
    np.testing.assert_array_equal(rgb[3, 4], LUT[-1])


@pytest.mark.parametrize("value", [0.0, 1.0, 7.5])
def test_all_equal_map_is_a_flat_color_without_warnings(value):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = colorize(np.full((3, 4), value))
    assert (rgb == rgb[0, 0]).all()


def test_normalize_clips_at_the_percentile():
    a = np.arange(1600, dtype=float)
    a[-3:] = 1e6  # a few outlier tokens must not squash the rest to black
    t = normalize(a.reshape(40, 40)).reshape(-1)
    assert t.max() == 1.0 and t.min() == 0.0
    assert t[800] == pytest.approx(800 / np.percentile(a, 99), rel=1e-6)
    assert t[800] > 0.4
    # A few hot cells among many zeros: the percentile is 0, the maximum takes over.
    b = np.zeros((20, 20))
    b[2, 3] = 1.0
    assert normalize(b)[2, 3] == 1.0
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\], got 0.0"):
        normalize(b, percentile=0.0)


def test_colorize_rejects_bad_maps():
    for bad, message in ((np.array([[np.nan, 1.0]]), r"has NaN or inf values"),
                         (np.ones(4), r"must be 2-D \(gh, gw\), got shape \(4,\)"),
                         (np.array([[1.0, -2.0]]), r"has negative values \(min -2\)")):
        with pytest.raises(ValueError, match=message):
            colorize(bad)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_overlay_keeps_size_and_returns_rgb(mode):
    img = gray().convert(mode)
    out = overlay(img, np.random.default_rng(1).random((4, 6)))
    assert out.size == img.size and out.mode == "RGB"


def test_hottest_cell_is_the_brightest_region_of_the_overlay():
    a = np.random.default_rng(2).random((5, 7)) * 0.5
    a[1, 5] = 3.0
    out = np.asarray(overlay(gray((700, 500)), a, alpha=0.6))
    lum = luminance(out)
    cells = lum.reshape(5, 100, 7, 100).mean(axis=(1, 3))  # (5, 7) mean luminance per cell region
    assert np.unravel_index(cells.argmax(), cells.shape) == (1, 5)


def test_alpha_extremes():
    img = gray()
    a = np.random.default_rng(3).random((2, 3))
    np.testing.assert_array_equal(np.asarray(overlay(img, a, alpha=0.0)), np.asarray(img))
    pure = np.asarray(overlay(img, a, alpha=1.0))
    # Every pixel is a colormap colour.
    lut = {tuple(c) for c in LUT.tolist()}
    assert {tuple(c) for c in pure.reshape(-1, 3)[::97].tolist()} <= lut
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        overlay(img, a, alpha=1.5)


def test_boxes_are_drawn_solid_and_dashed():
    img = gray((400, 300))
    out = overlay(img, np.ones((3, 4)), box=(100, 50, 300, 250), suggested_box=(20, 20, 380, 280))
    px = np.asarray(out)
    assert tuple(px[50, 200]) == BOX_COLOR and tuple(px[249, 200]) == BOX_COLOR  # top / bottom edge
    assert tuple(px[150, 100]) == BOX_COLOR and tuple(px[150, 299]) == BOX_COLOR  # left / right edge
    assert tuple(px[150, 200]) != BOX_COLOR  # inside untouched
    top_edge = px[20, 20:380]
    is_suggested = (top_edge == SUGGESTED_BOX_COLOR).all(axis=1)
    assert 0.4 < is_suggested.mean() < 0.9  # dashed: partly drawn


def test_line_width_scales_with_the_image():
    def width(size):
        out = np.asarray(overlay(gray(size), np.ones((2, 2)), alpha=0.0, box=(0, 0, size[0], size[1])))
        return int((out[size[1] // 2, :, 1] == 255).sum() // 2)

    assert width((200, 200)) == 2
    assert width((2000, 2000)) == 10


def test_overlay_rejects_boxes_outside_the_image():
    with pytest.raises(ValueError, match=r"box \(150, 0, 200, 50\) lies entirely outside the 100x100 image"):
        overlay(gray((100, 100)), np.ones((2, 2)), box=(150, 0, 200, 50))


def test_png_base64_round_trip():
    img = overlay(gray((60, 40)), np.random.default_rng(4).random((2, 3)))
    decoded = Image.open(io.BytesIO(base64.b64decode(to_png_base64(img))))
    assert decoded.format == "PNG"
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), np.asarray(img))


def test_overlay_png_base64_downscales_and_scales_boxes():
    img = gray((2000, 1000))
    s = overlay_png_base64(img, np.ones((2, 4)), box=(1000, 500, 2000, 1000), max_side=400)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB"))
    assert decoded.shape == (200, 400, 3)
    assert tuple(decoded[100, 200]) == BOX_COLOR  # the box's top-left corner, scaled by 0.2
    assert tuple(decoded[50, 100]) != BOX_COLOR
    # No downscale when the image is already small enough; full size without max_side.
    full = Image.open(io.BytesIO(base64.b64decode(overlay_png_base64(img, np.ones((2, 4)), max_side=5000))))
    assert full.size == (2000, 1000)
    with pytest.raises(ValueError, match=r"max_side must be positive, got 0"):
        overlay_png_base64(img, np.ones((2, 4)), max_side=0)

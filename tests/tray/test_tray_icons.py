"""Tray icon drawing: every state distinct by colour and by shape, at 16 to 32 px."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops

from desktop.tray.icons import COLOURS, draw_icon
from desktop.tray.state import IconState

SIZES = (16, 22, 24, 32)


def _alpha_mask(image: Image.Image) -> Image.Image:
    """The shape alone: which pixels are mostly opaque, colour ignored."""
    return image.getchannel("A").point(lambda a: 255 if a > 128 else 0)


def _is_badge_red(pixel: object) -> bool:
    assert isinstance(pixel, tuple)
    red, green, blue, alpha = pixel
    return bool(alpha > 200 and red > 170 and green < 70 and blue < 70)


def _differs(a: Image.Image, b: Image.Image) -> int:
    diff = ImageChops.difference(a, b)
    return sum(1 for px in diff.get_flattened_data() if (any(px) if isinstance(px, tuple) else px))


@pytest.mark.parametrize("size", SIZES)
def test_each_state_has_its_own_shape_not_just_colour(size: int) -> None:
    images = {state: draw_icon(state, 0, size) for state in IconState}
    for image in images.values():
        assert image.size == (size, size) and image.mode == "RGBA"
        assert image.getchannel("A").getpixel((0, 0)) == 0, "corners stay transparent"
    states = list(IconState)
    for i, first in enumerate(states):
        for second in states[i + 1 :]:
            # Grey-scale the shapes: white glyphs over a disc, triangle, ring all differ.
            grey_a = images[first].convert("LA")
            grey_b = images[second].convert("LA")
            shape_pixels = _differs(_alpha_mask(images[first]), _alpha_mask(images[second]))
            glyph_pixels = _differs(grey_a.getchannel("L"), grey_b.getchannel("L"))
            assert shape_pixels + glyph_pixels > size, (first, second)


@pytest.mark.parametrize("state", list(IconState))
def test_dominant_colour_is_the_state_colour(state: IconState) -> None:
    image = draw_icon(state, 0, 32)
    pixels = [px for px in image.get_flattened_data() if isinstance(px, tuple)]
    opaque = [px[:3] for px in pixels if px[3] == 255 and px[:3] != (255, 255, 255)]
    target = COLOURS[state][:3]
    close = [px for px in opaque if sum(abs(a - b) for a, b in zip(px, target, strict=True)) < 30]
    assert len(close) > 0.5 * len(opaque)


def test_syncing_badge_shows_only_with_a_count_and_changes_with_it() -> None:
    plain = draw_icon(IconState.SYNCING, 0, 32)
    five = draw_icon(IconState.SYNCING, 5, 32)
    many = draw_icon(IconState.SYNCING, 250, 32)
    assert _differs(plain, five) > 20
    assert _differs(five, many) > 5
    # The badge sits bottom right: its red is there, not top left.
    reds = [(x, y) for x in range(32) for y in range(32) if _is_badge_red(five.getpixel((x, y)))]
    assert reds and all(x >= 12 and y >= 12 for x, y in reds)
    # Other states ignore the count.
    assert _differs(draw_icon(IconState.PAUSED, 0, 32), draw_icon(IconState.PAUSED, 9, 32)) == 0


def test_tiny_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        draw_icon(IconState.IN_SYNC, 0, 4)

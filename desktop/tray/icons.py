"""Tray icon images drawn with Pillow, pure: (state, count, size) -> image.

Each state has its own colour AND its own shape (check, arrows, bars, slashed ring, triangle)
so it reads for colour-blind users and at 16 px. Drawn 4x larger and downsampled for smooth edges.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from desktop.tray.state import IconState

SUPERSAMPLE = 4

COLOURS: dict[IconState, tuple[int, int, int, int]] = {
    IconState.IN_SYNC: (46, 160, 67, 255),
    IconState.SYNCING: (33, 118, 210, 255),
    IconState.PAUSED: (230, 160, 20, 255),
    IconState.OFFLINE: (128, 128, 128, 255),
    IconState.ERROR: (210, 40, 40, 255),
}
WHITE = (255, 255, 255, 255)
BADGE = (200, 30, 30, 255)


def _badge_text(count: int, size: int) -> str:
    limit = 9 if size < 24 else 99
    return str(count) if count <= limit else f"{limit}+"


def _draw_check(draw: ImageDraw.ImageDraw, s: int) -> None:
    width = max(s // 9, 1)
    draw.line([(s * 0.27, s * 0.52), (s * 0.43, s * 0.68), (s * 0.73, s * 0.34)], WHITE, width)


def _draw_arrows(draw: ImageDraw.ImageDraw, s: int) -> None:
    box = (s * 0.25, s * 0.25, s * 0.75, s * 0.75)
    width = max(s // 12, 1)
    draw.arc(box, 200, 340, WHITE, width)
    draw.arc(box, 20, 160, WHITE, width)
    head = s * 0.11
    # Arrow heads at the clockwise ends of both arcs (340 deg top right, 160 deg bottom left).
    tx, ty = s * 0.735, s * 0.415
    draw.polygon(
        [(tx - head, ty - head * 0.2), (tx + head, ty - head * 0.2), (tx, ty + head)], WHITE
    )
    bx, by = s * 0.265, s * 0.585
    draw.polygon(
        [(bx - head, by + head * 0.2), (bx + head, by + head * 0.2), (bx, by - head)], WHITE
    )


def _draw_bars(draw: ImageDraw.ImageDraw, s: int) -> None:
    for left in (0.32, 0.56):
        draw.rectangle((s * left, s * 0.28, s * (left + 0.12), s * 0.72), WHITE)


def _draw_badge(image: Image.Image, count: int, size: int) -> None:
    s = image.width
    text = _badge_text(count, size)
    draw = ImageDraw.Draw(image)
    height = s * 0.5
    width = height * (0.8 + 0.35 * (len(text) - 1))
    box = (s - width, s - height, s - 1, s - 1)
    draw.rounded_rectangle(box, radius=height / 2, fill=BADGE, outline=WHITE, width=max(s // 32, 1))
    font = ImageFont.load_default(size=height * 0.8)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    draw.text(centre, text, fill=WHITE, font=font, anchor="mm")


def draw_icon(state: IconState, count: int = 0, size: int = 32) -> Image.Image:
    """An RGBA image of `size` x `size` px for `state`; `count` > 0 adds a badge when syncing."""
    if size < 8:
        raise ValueError(f"icon size {size} is too small (minimum 8 px)")
    s = size * SUPERSAMPLE
    image = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[state]
    margin = s * 0.04
    disc = (margin, margin, s - margin, s - margin)
    if state is IconState.ERROR:
        draw.polygon([(s / 2, margin), (s - margin, s - margin), (margin, s - margin)], colour)
        draw.rectangle((s * 0.44, s * 0.33, s * 0.56, s * 0.68), WHITE)
        draw.rectangle((s * 0.44, s * 0.75, s * 0.56, s * 0.86), WHITE)
    elif state is IconState.OFFLINE:
        width = max(s // 8, 1)
        draw.ellipse(disc, outline=colour, width=width)
        draw.line([(s * 0.2, s * 0.8), (s * 0.8, s * 0.2)], colour, width)
    else:
        draw.ellipse(disc, fill=colour)
        if state is IconState.IN_SYNC:
            _draw_check(draw, s)
        elif state is IconState.SYNCING:
            _draw_arrows(draw, s)
        else:
            _draw_bars(draw, s)
    if state is IconState.SYNCING and count > 0:
        _draw_badge(image, count, size)
    return image.resize((size, size), Image.Resampling.LANCZOS)

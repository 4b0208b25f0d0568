"""Attention pictures in TensorBoard: read with its own reader and served by the real server."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnunet.utils.overlays import BAR_WIDTH
from tests.helpers import boxes, is_colour_bar

pytestmark = pytest.mark.slow


def images(run: Path) -> dict[str, np.ndarray]:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {
        tag: np.asarray(Image.open(io.BytesIO(events.Images(tag)[-1].encoded_image_string)))
        for tag in events.Tags()["images"]
    }


def test_attention_images_show_ct_and_heat_map(smoke_run) -> None:
    run, _, _ = smoke_run
    pictures = images(run)
    attention = {t: im for t, im in pictures.items() if t.startswith("attention/")}
    assert attention and all(t.endswith("/level1") for t in attention)  # smoke net: one gate (level1)
    for tag, im in attention.items():
        found = boxes(im[..., :3])
        assert len(found) == 3, tag  # CT | overlay | colour bar
        (ct_rows, ct_cols), overlay_box, bar = found
        assert min(ct_rows.stop - ct_rows.start, ct_cols.stop - ct_cols.start) >= 256, tag  # readable size
        assert im.shape[0] >= 256
        ct, overlay = im[ct_rows, ct_cols, :3].astype(float), im[overlay_box][..., :3].astype(float)
        assert ct.shape == overlay.shape
        assert ct.std() > 5, tag  # the CT is visible
        assert np.allclose(ct[..., 0], ct[..., 1])  # grey
        assert not np.allclose(overlay, ct)  # the heat map is drawn over it
        assert is_colour_bar(im[bar][:, :BAR_WIDTH, :3]), tag
    overlays = [im for t, im in pictures.items() if t.startswith("val/overlay/")]
    assert overlays
    for im in overlays:
        panels = boxes(im[..., :3])
        assert len(panels) == 3  # CT | reference | prediction, no colour bar
        assert all(min(r.stop - r.start, c.stop - c.start) >= 256 for r, c in panels)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_server_serves_the_attention_tags(smoke_run) -> None:
    run, _, _ = smoke_run
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(run / "tensorboard"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, tags = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/images/tags", timeout=5) as r:
                    tags = json.load(r)
                if any(tags.values()):
                    break
            except OSError:
                pass
            time.sleep(1)
        served = {tag for run_tags in tags.values() for tag in run_tags}
        assert any(t.startswith("attention/") for t in served), tags
        assert any(t.startswith("val/overlay/") for t in served)
    finally:
        server.terminate()
        server.wait(timeout=30)

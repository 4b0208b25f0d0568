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
        h, w, _ = im.shape
        assert w % 2 == 0  # CT panel | overlay panel of equal width
        ct, overlay = im[:, : w // 2, :3].astype(float), im[:, w // 2 :, :3].astype(float)
        assert ct.std() > 5, tag  # the CT is visible
        assert np.allclose(ct[..., 0], ct[..., 1])  # grey
        assert not np.allclose(overlay, ct)  # the heat map is drawn over it
    overlays = [im for t, im in pictures.items() if t.startswith("val/overlay/")]
    assert overlays and overlays[0].shape[1] % 3 == 0


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

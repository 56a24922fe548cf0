"""Decoder choice, measured: decode time per bundled clip vs. one training step per clip.

    python benchmarks/decode_speed.py [--clips 64] [--out reports/decode_speed.json]

Decodes the same mp4 files with PyAV and, where it is installed and has FFmpeg's libraries,
torchcodec; checks that the frames agree; times a ResNet-18 TSM training step per clip for
comparison. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidcil.io.moving_digits import default_stream, generate_stream
from vidcil.io.clips import sample_indices, to_model_input
from vidcil.io.video import decode_video
from vidcil.core.models.tsm import VideoRecognizer


def _torchcodec():
    try:
        from torchcodec.decoders import VideoDecoder

        return lambda p: VideoDecoder(str(p))[:].permute(0, 2, 3, 1).numpy()
    except Exception as e:  # not installed, or no FFmpeg libraries on this machine
        print(f"torchcodec unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        return None


def _time(fn, files, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for f in files:
            fn(f)
        best = min(best, (time.perf_counter() - start) / len(files))
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("reports/decode_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        spec = default_stream(1, False, train_per_class=args.clips // 4, test_per_class=1)
        generate_stream(Path(tmp), spec)
        files = sorted(Path(tmp).rglob("train/*/*.mp4"))
        results = {"clips": len(files), "clip": "64x64, 16 frames, H.264"}
        results["pyav_ms_per_clip"] = _time(decode_video, files)
        tc = _torchcodec()
        if tc is not None:
            same = all(np.array_equal(tc(f), decode_video(f)) for f in files[:8])
            results["torchcodec_ms_per_clip"] = _time(tc, files)
            results["torchcodec_frames_identical_to_pyav"] = same
        # One training step (batch of 8 clips, 8 segments), per clip.
        model = VideoRecognizer("resnet18", 4, 8)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        frames = [decode_video(f) for f in files[:8]]
        x = torch.stack([to_model_input(v[sample_indices(len(v), 8, train=False)]) for v in frames])
        y = torch.zeros(8, dtype=torch.long)
        times = []
        for _ in range(4):
            start = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        results["train_step_ms_per_clip"] = min(times[1:]) / 8 * 1e3
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"{'what':<36}{'ms per clip':>12}")
    for k, v in results.items():
        if k.endswith("_ms_per_clip"):
            print(f"{k.removesuffix('_ms_per_clip'):<36}{v:>12.1f}")
    print(json.dumps({k: v for k, v in results.items() if not k.endswith("_ms_per_clip")}))


if __name__ == "__main__":
    main()

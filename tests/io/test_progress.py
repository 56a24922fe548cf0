"""Progress off a terminal (Airflow task logs, pod logs): one plain line per epoch."""

import io
import re

from vidcil.io.progress import EpochProgress


def test_plain_lines_per_epoch_when_output_is_not_a_terminal(capsys):
    with EpochProgress("b001 distil", epochs=3, clips=40, start_epoch=1) as progress:
        for epoch in (1, 2):
            progress.epoch_done(epoch, {"ce": 0.9, "temporal": 0.1, "loss": 1.0, "train_accuracy": 0.5, "steps": 10})
    lines = capsys.readouterr().err.strip().splitlines()  # pytest's capture is not a terminal
    assert lines[0] == "[vidcil] b001 distil resuming after epoch 1/3 (checkpoint)"
    assert re.fullmatch(r"\[vidcil\] b001 distil epoch 2/3 ce 0\.9000 temporal 0\.1000 loss 1\.0000 "
                        r"train_acc 0\.500 clips/s [\d.]+ eta 0:00:\d\d", lines[1])
    assert lines[2].startswith("[vidcil] b001 distil epoch 3/3 ") and lines[2].endswith("eta 0:00:00")


def test_a_terminal_gets_the_bar_not_lines():
    out = io.StringIO()
    with EpochProgress("b000 train", epochs=2, clips=8, stream=out, terminal=True) as progress:
        progress.epoch_done(0, {"loss": 1.0, "train_accuracy": 0.5, "steps": 2})
    assert "[vidcil]" not in out.getvalue()

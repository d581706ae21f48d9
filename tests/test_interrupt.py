"""Ctrl-C or SIGTERM during an embedded-Ray run stops the workers and shuts Ray down."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.helpers import ROOT


def raylets() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "raylet"], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_training_exits_130_and_leaves_no_ray_behind(tmp_path, tiny, sig):
    tiny["train"]["epochs"] = 2000  # far longer than the test waits
    spec = tmp_path / "long.yaml"
    spec.write_text(yaml.safe_dump(tiny))
    before = raylets()
    env = {k: v for k, v in os.environ.items() if k not in ("XSHARP_RAY_ADDRESS", "RAY_ADDRESS")}
    proc = subprocess.Popen(
        [str(os.path.join(os.path.dirname(sys.executable), "xsharp")), "run", str(spec), "--mode", "data_parallel", "--workers", "1", "--no-save"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    seen = []
    deadline = time.time() + 120
    for line in proc.stderr:  # wait until training has really started
        seen.append(line)
        if line.startswith("fine-tune: epoch 2/"):
            break
        assert time.time() < deadline, "".join(seen)
    ours = raylets() - before
    assert ours, "the run should have started its own raylet"
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "Traceback" not in rest
    deadline = time.time() + 15  # Ray's processes get SIGTERM at shutdown and may take a moment on a busy machine
    while ours & raylets() and time.time() < deadline:
        time.sleep(0.2)
    assert not (ours & raylets()), "the embedded Ray is still running 15 s after the run exited"

"""Device selection: auto picks the best device; a missing device is a clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from moola.core.devices import available_devices, select_device
from moola.core.errors import ConfigError, DeviceError

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = torch.backends.mps.is_available()


def test_cpu_is_always_available():
    assert select_device("cpu") == torch.device("cpu")
    assert available_devices()[-1] == "cpu"


@pytest.mark.skipif(HAS_CUDA or HAS_MPS, reason="auto picks the accelerator on this machine")
def test_auto_falls_back_to_cpu():
    assert select_device("auto") == torch.device("cpu")
    assert select_device(" AUTO ") == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_missing_cuda_names_the_parameter_and_what_is_available():
    with pytest.raises(DeviceError) as info:
        select_device("cuda")
    message = str(info.value)
    assert info.value.param == "device" and "device='cuda'" in message
    assert "available: " in message and "cpu" in message
    assert "--" not in message  # flags are the CLI's to name


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_missing_mps_is_an_error():
    with pytest.raises(DeviceError, match="device='mps'"):
        select_device("mps")


def test_unknown_device_name_lists_the_choices():
    with pytest.raises(ConfigError, match="auto, cpu, cuda, mps"):
        select_device("tpu")


def test_importing_device_selection_does_not_import_torch():
    code = "import sys, moola.core, moola.core.devices; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

"""The training device: what it is, and which precision `--amp` resolves to on it."""

from __future__ import annotations

import os
import platform

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively rather than emulating it.

    On a CPU without AVX512-BF16 or AMX, oneDNN emulates bf16 with conversions, and the demo
    recipe trained at half the speed of fp32 (43x against 94x real time in its first four
    minutes, on a 2-core Xeon with AVX512 but no AVX512-BF16); on a host with native bf16 it
    was 1.5x faster than fp32. torch.cpu's probes are private, hence the guard: where they
    are missing, bf16 is not assumed.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def describe_device(device: torch.device) -> str:
    """The hardware a run's speed depends on, for its log (hosts differ between runs)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{platform.machine()} CPU ({capability}), {os.cpu_count()} logical cores"


def resolve_amp(amp: str, native: bool) -> str:
    """The precision `--amp` asks for: `auto` is bf16 where the device computes it natively
    (`native`, from `native_bf16`), else none (fp32)."""
    if amp not in ("auto", "none", *AMP_DTYPES):
        raise ValueError(f"unknown amp {amp!r} (auto, none, bf16 or fp16)")
    if amp != "auto":
        return amp
    return "bf16" if native else "none"


def check_lstm_amp(device: torch.device, amp: str) -> None:
    """ValueError if the device's LSTM kernels cannot run in `amp` (resolved): oneDNN has no bf16
    or fp16 LSTM on a CPU without AVX512, and would fail at the first step with a traceback."""
    if amp not in AMP_DTYPES:
        return
    lstm = torch.nn.LSTM(4, 4, batch_first=True).to(device)
    try:
        with torch.autocast(device.type, dtype=AMP_DTYPES[amp]):
            lstm(torch.zeros(1, 2, 4, device=device))[0].float().sum().backward()
    except RuntimeError as error:
        reason = str(error).splitlines()[0].split(". ")[0]
        raise ValueError(
            f"--amp={amp}: this {device.type}'s LSTM cannot run in it ({reason}); use auto or none"
        ) from error

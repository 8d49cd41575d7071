"""What this CPU offers, read from the machine (never assumed): instruction sets that decide which int8 /
bf16 path pays, and what torch itself will use.

    cpu_info() -> CpuInfo(model, flags, avx2, avx512, vnni, bf16, amx, torch_capability, ...)

Why both /proc/cpuinfo and torch: the kernel's flags say what the silicon has; torch's capability says what
ATen dispatches to, which `ATEN_CPU_CAPABILITY=avx2` caps (how the tests force the fallback path), and
oneDNN's bf16 check says whether a bf16 convolution runs natively (on AVX2 it is emulated, ~4x slower than
fp32: bf16 must never be chosen there). Ground module: torch is imported only inside `torch_capability`.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# flag names as /proc/cpuinfo spells them -> the short names we print
_FLAGS = {
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8",
}


@dataclass(frozen=True)
class CpuInfo:
    model: str
    family: str
    cores: int
    flags: tuple[str, ...]  # the short names of `_FLAGS` this CPU has, in that order
    torch_capability: str  # torch.backends.cpu.get_cpu_capability(): "AVX512", "AVX2", "DEFAULT", ...
    onednn_bf16: bool  # oneDNN runs bf16 natively (AVX512-BF16 or AMX) and ATen is not capped below AVX-512

    @property
    def avx512(self) -> bool:
        return "AVX-512" in self.flags and self.torch_capability.upper().startswith("AVX512")

    @property
    def vnni(self) -> bool:
        return bool({"AVX512-VNNI", "AVX-VNNI"} & set(self.flags))

    @property
    def bf16(self) -> bool:
        """bf16 pays: the silicon has it natively and torch is allowed to use it."""
        return self.onednn_bf16 and bool({"AVX512-BF16", "AMX-BF16"} & set(self.flags)) and self.avx512

    @property
    def amx(self) -> bool:
        return "AMX" in self.flags

    def summary(self) -> str:
        """One line for bench headers and --verbose: `AMD EPYC (fam 26 model 2), 2 cores: AVX2 AVX-512 ...;
        torch AVX512, bf16 native`."""
        flags = " ".join(self.flags) or "no AVX2"
        return (f"{self.model} ({self.family}), {self.cores} cores: {flags}; torch {self.torch_capability}, "
                f"bf16 {'native' if self.bf16 else 'not native (bf16 paths off)'}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "avx512": self.avx512, "vnni": self.vnni, "bf16_native": self.bf16, "amx": self.amx}


def _proc_cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            if out:
                break  # the first processor is enough
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def torch_capability() -> tuple[str, bool]:
    """(ATen's CPU capability, oneDNN bf16 support) as torch sees them (honours ATEN_CPU_CAPABILITY)."""
    import torch

    try:
        cap = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # very old torch
        cap = "unknown"
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        bf16 = False
    return cap, bf16


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    info = _proc_cpuinfo()
    raw = set(info.get("flags", "").split())
    flags = tuple(short for name, short in _FLAGS.items() if name in raw)
    model = info.get("model name") or platform.processor() or platform.machine()
    family = f"family {info.get('cpu family', '?')} model {info.get('model', '?')}"
    cap, bf16 = torch_capability()
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("avx2", "default"):
        bf16 = False  # capped on purpose (the forced-fallback tests): never pick bf16 then
    return CpuInfo(model, family, os.cpu_count() or 1, flags, cap, bf16)

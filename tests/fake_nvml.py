"""A stand-in for NVML, used only because CI machines have no GPU.

It mimics the ``pynvml`` module's API surface that the exporter calls, and reuses pynvml's own
constants, ctypes structures and ``NVMLError`` classes, so field names, value unions and error
codes are the real ones. A function the stand-in does not define is refused (AttributeError)
rather than silently falling through to the real library.
"""

from __future__ import annotations

import ctypes
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

GiB = 1024**3


@dataclass
class FakeGPU:
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    bus_id: str = ""
    util: int = 50
    mem_util: int = 20
    fb_total: int = 80 * GiB
    fb_used: int = 10 * GiB
    fb_reserved: int = 512 * 1024**2
    temp: int = 40
    mem_temp: int = 45
    power_mw: int = 300_000
    energy_mj: int = 1_000_000
    sm_clock: int = 1980
    mem_clock: int = 2619
    pcie_replay: int = 0
    ecc: tuple[int, int, int, int] = (0, 0, 0, 0)  # SBE vol, DBE vol, SBE agg, DBE agg
    remap: tuple[int, int, int, int] = (0, 0, 0, 0)  # correctable, uncorrectable, pending, failure
    pids: list[int] = field(default_factory=list)
    gpm: dict[int, float] | None = None  # GPM metric id -> percent; None: GPM unsupported
    failing: dict[str, int] = field(default_factory=dict)  # function or NVML_FI_* name -> NVML error code
    lost: bool = False


class _Handle:
    def __init__(self, index: int):
        self.index = index


class FakeNVML:
    """``FakeNVML([FakeGPU(...), ...])`` behaves like ``pynvml`` over those GPUs."""

    def __init__(self, gpus: list[FakeGPU], driver_loaded: bool = True, driver_version: str = "550.54.15", memory_v2: bool = True):
        self.gpus = gpus
        self.memory_v2 = memory_v2  # False: an old driver without nvmlDeviceGetMemoryInfo_v2
        for i, g in enumerate(gpus):
            g.uuid = g.uuid or f"GPU-{i:08x}-1111-2222-3333-444455556666"
            g.bus_id = g.bus_id or f"00000000:{0x18 + i * 0x10:02X}:00.0"
        self.driver_loaded = driver_loaded
        self.driver_version = driver_version
        self.initialised = False
        self.events: list[tuple[int, int]] = []  # queued (gpu index, xid)
        self.registered: set[int] = set()
        self.calls: dict[str, int] = {}
        self._samples = itertools.count(1)
        self._sample_cells: list = []
        self._handles = [_Handle(i) for i in range(len(gpus))]

    def __getattr__(self, name: str):
        value = getattr(pynvml, name)  # constants, structures, NVMLError and its subclasses
        if callable(value) and not isinstance(value, type):
            raise AttributeError(f"the NVML stand-in does not implement {name}")
        return value

    # ------------------------------------------------------------------ helpers
    def _gpu(self, handle: _Handle, call: str) -> FakeGPU:
        self.calls[call] = self.calls.get(call, 0) + 1
        if not self.initialised:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        g = self.gpus[handle.index]
        if g.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if call in g.failing:
            raise pynvml.NVMLError(g.failing[call])
        return g

    # ------------------------------------------------------------------ session
    def nvmlInit(self):
        if not self.driver_loaded:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised = True

    def nvmlShutdown(self):
        self.initialised = False

    def nvmlSystemGetDriverVersion(self):
        return self.driver_version

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handles[index]

    def nvmlDeviceGetIndex(self, handle):
        return handle.index

    # ------------------------------------------------------------------ static facts
    def nvmlDeviceGetUUID(self, handle):
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle):
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetPciInfo(self, handle):
        info = pynvml.nvmlPciInfo_t()
        info.busId = self._gpu(handle, "nvmlDeviceGetPciInfo").bus_id.encode()
        return info

    # ------------------------------------------------------------------ readings
    def nvmlDeviceGetUtilizationRates(self, handle):
        g = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        u = pynvml.c_nvmlUtilization_t()
        u.gpu, u.memory = g.util, g.mem_util
        return u

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        g = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        if not version:  # v1: the driver's reserved memory counts as used
            m = pynvml.c_nvmlMemory_t()
            m.total, m.used, m.free = g.fb_total, g.fb_used + g.fb_reserved, g.fb_total - g.fb_used - g.fb_reserved
            return m
        if not self.memory_v2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        assert version == pynvml.nvmlMemory_v2
        m = pynvml.c_nvmlMemory_v2_t()
        m.version, m.total, m.reserved, m.used = version, g.fb_total, g.fb_reserved, g.fb_used
        m.free = g.fb_total - g.fb_used - g.fb_reserved
        return m

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "nvmlDeviceGetTemperature").temp

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetClockInfo(self, handle, clock):
        g = self._gpu(handle, "nvmlDeviceGetClockInfo(SM)" if clock == pynvml.NVML_CLOCK_SM else "nvmlDeviceGetClockInfo(MEM)")
        return {pynvml.NVML_CLOCK_SM: g.sm_clock, pynvml.NVML_CLOCK_MEM: g.mem_clock}[clock]

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        g = self._gpu(handle, "nvmlDeviceGetFieldValues")
        table = {
            pynvml.NVML_FI_DEV_MEMORY_TEMP: ("NVML_FI_DEV_MEMORY_TEMP", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, g.mem_temp),
            pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: ("NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, g.energy_mj),
            pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER: ("NVML_FI_DEV_PCIE_REPLAY_COUNTER", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, g.pcie_replay),
            pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: ("NVML_FI_DEV_ECC_SBE_VOL_TOTAL", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, g.ecc[0]),
            pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: ("NVML_FI_DEV_ECC_DBE_VOL_TOTAL", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, g.ecc[1]),
            pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL: ("NVML_FI_DEV_ECC_SBE_AGG_TOTAL", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, g.ecc[2]),
            pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL: ("NVML_FI_DEV_ECC_DBE_AGG_TOTAL", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, g.ecc[3]),
            pynvml.NVML_FI_DEV_REMAPPED_COR: ("NVML_FI_DEV_REMAPPED_COR", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, g.remap[0]),
            pynvml.NVML_FI_DEV_REMAPPED_UNC: ("NVML_FI_DEV_REMAPPED_UNC", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, g.remap[1]),
            pynvml.NVML_FI_DEV_REMAPPED_PENDING: ("NVML_FI_DEV_REMAPPED_PENDING", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, g.remap[2]),
            pynvml.NVML_FI_DEV_REMAPPED_FAILURE: ("NVML_FI_DEV_REMAPPED_FAILURE", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, g.remap[3]),
        }
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        member = {
            pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
            pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        }
        for slot, fid in zip(values, field_ids):
            slot.fieldId = fid
            if fid not in table:
                slot.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
                continue
            name, kind, value = table[fid]
            if name in g.failing:
                slot.nvmlReturn = g.failing[name]
                continue
            slot.nvmlReturn = pynvml.NVML_SUCCESS
            slot.valueType = kind
            setattr(slot.value, member[kind], value)
        return values

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        g = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=GiB) for pid in g.pids]

    # ------------------------------------------------------------------ XID events
    def nvmlEventSetCreate(self):
        return SimpleNamespace(kind="event set")

    def nvmlDeviceRegisterEvents(self, handle, event_types, event_set):
        self._gpu(handle, "nvmlDeviceRegisterEvents")
        assert event_types & pynvml.nvmlEventTypeXidCriticalError
        self.registered.add(handle.index)

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        assert timeout_ms == 0, "a scrape must never block on events"
        while self.events:
            index, xid = self.events.pop(0)
            if index in self.registered:
                return SimpleNamespace(device=self._handles[index], eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=xid)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, event_set):
        pass

    # ------------------------------------------------------------------ GPM (Hopper+)
    def nvmlGpmQueryDeviceSupport(self, handle):
        support = pynvml.c_nvmlGpmSupport_t()
        support.isSupportedDevice = int(self._gpu(handle, "nvmlGpmQueryDeviceSupport").gpm is not None)
        return support

    # A sample is a real c_nvmlGpmSample_t pointer (so it can go into c_nvmlGpmMetricsGet_t),
    # pointing at two integers the stand-in keeps: (sequence number taken, GPU index + 1).
    def nvmlGpmSampleAlloc(self):
        cell = (ctypes.c_uint64 * 2)()
        self._sample_cells.append(cell)  # keep the memory alive while pointers to it exist
        return ctypes.cast(cell, pynvml.c_nvmlGpmSample_t)

    def nvmlGpmSampleFree(self, sample):
        pass

    @staticmethod
    def _cell(sample):
        return ctypes.cast(sample, ctypes.POINTER(ctypes.c_uint64 * 2)).contents

    def nvmlGpmSampleGet(self, handle, sample):
        self._gpu(handle, "nvmlGpmSampleGet")
        cell = self._cell(sample)
        cell[0], cell[1] = next(self._samples), handle.index + 1
        return sample

    def nvmlGpmMetricsGet(self, request):
        assert request.version == pynvml.NVML_GPM_METRICS_GET_VERSION
        (t1, g1), (t2, g2) = self._cell(request.sample1), self._cell(request.sample2)
        if not t1 or not t2 or g1 != g2 or t1 >= t2:  # both taken, same GPU, in order
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        g = self._gpu(self._handles[g2 - 1], "nvmlGpmMetricsGet")
        for i in range(request.numMetrics):
            m = request.metrics[i]
            if m.metricId in g.gpm:
                m.nvmlReturn, m.value = pynvml.NVML_SUCCESS, g.gpm[m.metricId]
            else:
                m.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return request


def h100(**kw) -> FakeGPU:
    gpm = {
        pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL: 61.0,
        pynvml.NVML_GPM_METRIC_SM_UTIL: 55.0,
        pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: 30.0,
        pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 42.0,
        pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: 25.0,
    }
    return FakeGPU(gpm=gpm, **kw)


def a100(**kw) -> FakeGPU:
    return FakeGPU(name="NVIDIA A100-SXM4-80GB", power_mw=250_000, sm_clock=1410, mem_clock=1593, **kw)

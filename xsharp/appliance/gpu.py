"""GPU readings from NVML, one pass per scrape, under DCGM-exporter field names.

``GPUReader`` owns the NVML session: it enumerates GPUs (static facts such as UUID and model
are read once), drains XID events from one event set, keeps GPM samples between scrapes for
the profiling ratios, and on each ``read()`` returns one ``GPUReading`` per GPU. An NVML error
on one GPU or one field skips that value and is counted in ``errors``; it never raises. A
field the GPU does not support is remembered and not asked for again (not an error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("xsharp.appliance")

LABELS = ("gpu", "UUID", "modelName", "Hostname", "pci_bus_id")  # dcgm-exporter's labels, same names

MIB = 1024 * 1024
RETRY_INIT_SECONDS = 60.0  # without a driver, try nvmlInit again at most this often (on scrape)
MAX_EVENTS_PER_SCRAPE = 256  # an XID storm must not stall a scrape
GPM_MIN_INTERVAL = 0.1  # GPM needs two samples at least this far apart

# DCGM field name -> (NVML field id constant, kind). Read together by one nvmlDeviceGetFieldValues call.
FIELD_VALUES = {
    "DCGM_FI_DEV_MEMORY_TEMP": "NVML_FI_DEV_MEMORY_TEMP",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION",  # mJ since driver load
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "NVML_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": "NVML_FI_DEV_ECC_SBE_AGG_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": "NVML_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "NVML_FI_DEV_REMAPPED_COR",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "NVML_FI_DEV_REMAPPED_UNC",
    "DCGM_FI_DEV_ROW_REMAP_PENDING": "NVML_FI_DEV_REMAPPED_PENDING",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "NVML_FI_DEV_REMAPPED_FAILURE",
}

# DCGM profiling ratio (0..1) <- NVML GPM metric (percent), Hopper and newer. DCGM itself needs its
# profiling module for these; NVML's GPM gives the same quantities from two samples.
GPM_METRICS = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "NVML_GPM_METRIC_GRAPHICS_UTIL",
    "DCGM_FI_PROF_SM_ACTIVE": "NVML_GPM_METRIC_SM_UTIL",
    "DCGM_FI_PROF_SM_OCCUPANCY": "NVML_GPM_METRIC_SM_OCCUPANCY",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "NVML_GPM_METRIC_ANY_TENSOR_UTIL",
    "DCGM_FI_PROF_DRAM_ACTIVE": "NVML_GPM_METRIC_DRAM_BW_UTIL",
}

# Everything a reading can hold, with its help text; the collector emits them in this order.
GPU_METRICS = {
    "DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "Memory utilization (in %).",
    "DCGM_FI_DEV_FB_TOTAL": "Framebuffer memory total (in MiB).",
    "DCGM_FI_DEV_FB_USED": "Framebuffer memory used (in MiB).",
    "DCGM_FI_DEV_FB_FREE": "Framebuffer memory free (in MiB).",
    "DCGM_FI_DEV_FB_RESERVED": "Framebuffer memory reserved by the driver (in MiB).",
    "DCGM_FI_DEV_GPU_TEMP": "GPU temperature (in C).",
    "DCGM_FI_DEV_MEMORY_TEMP": "Memory temperature (in C).",
    "DCGM_FI_DEV_POWER_USAGE": "Power draw (in W).",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "Total energy consumption since the driver was last reloaded (in mJ).",
    "DCGM_FI_DEV_SM_CLOCK": "SM clock frequency (in MHz).",
    "DCGM_FI_DEV_MEM_CLOCK": "Memory clock frequency (in MHz).",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "Total number of PCIe retries.",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": "Total number of single-bit volatile ECC errors.",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": "Total number of double-bit volatile ECC errors.",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": "Total number of single-bit persistent ECC errors.",
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": "Total number of double-bit persistent ECC errors.",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "Number of remapped rows for correctable errors.",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "Number of remapped rows for uncorrectable errors.",
    "DCGM_FI_DEV_ROW_REMAP_PENDING": "Whether a row remapping is pending (a GPU reset is needed) (1 or 0).",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "Whether remapping of rows has failed (1 or 0).",
    "DCGM_FI_DEV_XID_ERRORS": "Value of the last XID error encountered.",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "Ratio of time the graphics engine is active (from NVML GPM).",
    "DCGM_FI_PROF_SM_ACTIVE": "The ratio of cycles an SM has at least 1 warp assigned (from NVML GPM).",
    "DCGM_FI_PROF_SM_OCCUPANCY": "The ratio of number of warps resident on an SM (from NVML GPM).",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "Ratio of cycles any tensor pipe is active (from NVML GPM).",
    "DCGM_FI_PROF_DRAM_ACTIVE": "Ratio of cycles the device memory interface is active (from NVML GPM).",
}


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class GPU:
    """One GPU as enumerated: its handle, static identity and the state kept between scrapes."""

    index: int
    handle: Any
    uuid: str
    model: str
    pci_bus_id: str
    labels: tuple[str, ...]
    unsupported: set[str] = field(default_factory=set)
    xid_count: int = 0
    last_xid: int = 0
    gpm_samples: list[Any] | None = None  # [previous, current] when the GPU supports GPM
    gpm_request: Any = None
    gpm_taken_at: float | None = None
    gpm_values: dict[str, float] = field(default_factory=dict)


@dataclass
class GPUReading:
    gpu: GPU
    values: dict[str, float]
    pids: list[int] | None  # compute processes; None when the list could not be read
    answered: bool  # at least one read succeeded this scrape
    lost: bool  # NVML said the GPU fell off the bus


class GPUReader:
    """The NVML side of the exporter. ``nvml`` is the ``pynvml`` module or a stand-in with its API."""

    def __init__(self, nvml: Any, hostname: str, clock: Callable[[], float] = time.monotonic):
        self.nvml = nvml
        self.hostname = hostname
        self.clock = clock
        self.errors: Counter[tuple[str, str]] = Counter()  # (gpu index or "", field) -> count
        self.available = False
        self.init_error = ""
        self.driver_version = ""
        self.gpus: list[GPU] = []
        self._events: Any = None
        self._tried_at: float | None = None
        self._logged_unavailable = False
        self._lock = threading.Lock()
        self._field_ids = {name: getattr(nvml, const, None) for name, const in FIELD_VALUES.items()}
        self._field_ids = {k: v for k, v in self._field_ids.items() if v is not None}
        self._gpm_ids = {name: getattr(nvml, const, None) for name, const in GPM_METRICS.items()}
        self._gpm_ids = {k: v for k, v in self._gpm_ids.items() if v is not None}
        self._start()

    # ------------------------------------------------------------------ session
    def _start(self) -> None:
        self._tried_at = self.clock()
        nvml = self.nvml
        try:
            nvml.nvmlInit()
        except Exception as e:  # NVMLError (no library, no driver) or OSError from ctypes
            self.available = False
            self.init_error = f"{type(e).__name__}: {e}"
            if not self._logged_unavailable:
                log.warning("no GPU: NVML unavailable (%s); serving host, health and job metrics with zero GPUs", self.init_error)
                self._logged_unavailable = True
            return
        self.available = True
        self.init_error = ""
        try:
            self.driver_version = text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            self._error("", "nvmlSystemGetDriverVersion")
        try:
            self._events = nvml.nvmlEventSetCreate()
        except nvml.NVMLError:
            self._events = None
            self._error("", "nvmlEventSetCreate")
        self._enumerate()
        log.info("NVML %s: %d GPU(s) on %s", self.driver_version or "(driver version unknown)", len(self.gpus), self.hostname)

    def _enumerate(self) -> None:
        nvml = self.nvml
        self._free_gpm()
        previous = {gpu.uuid: gpu for gpu in self.gpus}  # keep XID counts across a re-enumeration
        self.gpus = []
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError:
            self._error("", "nvmlDeviceGetCount")
            return
        for i in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
            except nvml.NVMLError:
                self._error(str(i), "nvmlDeviceGetHandleByIndex")
                continue
            uuid = self._static(i, handle, "nvmlDeviceGetUUID", lambda h: text(nvml.nvmlDeviceGetUUID(h)))
            model = self._static(i, handle, "nvmlDeviceGetName", lambda h: text(nvml.nvmlDeviceGetName(h)))
            bus = self._static(i, handle, "nvmlDeviceGetPciInfo", lambda h: text(nvml.nvmlDeviceGetPciInfo(h).busId))
            gpu = GPU(i, handle, uuid, model, bus, (str(i), uuid, model, self.hostname, bus))
            if uuid and uuid in previous:
                gpu.xid_count, gpu.last_xid = previous[uuid].xid_count, previous[uuid].last_xid
            self._register_events(gpu)
            self._setup_gpm(gpu)
            self.gpus.append(gpu)

    def _static(self, index: int, handle: Any, call: str, read: Callable[[Any], str]) -> str:
        try:
            return read(handle)
        except self.nvml.NVMLError:
            self._error(str(index), call)
            return ""

    def _register_events(self, gpu: GPU) -> None:
        if self._events is None:
            return
        nvml = self.nvml
        try:
            nvml.nvmlDeviceRegisterEvents(gpu.handle, nvml.nvmlEventTypeXidCriticalError, self._events)
        except nvml.NVMLError as e:
            if e.value != nvml.NVML_ERROR_NOT_SUPPORTED:
                self._error(str(gpu.index), "nvmlDeviceRegisterEvents")
            gpu.unsupported.add("xid_events")

    def _setup_gpm(self, gpu: GPU) -> None:
        nvml = self.nvml
        if not self._gpm_ids or not hasattr(nvml, "nvmlGpmQueryDeviceSupport"):
            return
        try:
            if not nvml.nvmlGpmQueryDeviceSupport(gpu.handle).isSupportedDevice:
                return
            gpu.gpm_samples = [nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()]
        except nvml.NVMLError as e:
            if e.value != nvml.NVML_ERROR_NOT_SUPPORTED:
                self._error(str(gpu.index), "nvmlGpmQueryDeviceSupport")
            return
        request = nvml.c_nvmlGpmMetricsGet_t()  # ~19 kB: allocated once per GPU, reused every scrape
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(self._gpm_ids)
        for i, metric_id in enumerate(self._gpm_ids.values()):
            request.metrics[i].metricId = metric_id
        gpu.gpm_request = request

    def _free_gpm(self) -> None:
        for gpu in self.gpus:
            for sample in gpu.gpm_samples or ():
                try:
                    self.nvml.nvmlGpmSampleFree(sample)
                except Exception:
                    pass
            gpu.gpm_samples = None

    def close(self) -> None:
        with self._lock:
            if not self.available:
                return
            self._free_gpm()
            if self._events is not None:
                try:
                    self.nvml.nvmlEventSetFree(self._events)
                except Exception:
                    pass
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
            self.available = False
            self.gpus = []

    def _error(self, gpu: str, call: str) -> None:
        self.errors[(gpu, call)] += 1

    # ------------------------------------------------------------------ one scrape
    def read(self) -> list[GPUReading]:
        """Read every GPU once. Never raises for an NVML error; thread-safe (scrapes may overlap)."""
        with self._lock:
            if not self.available:
                if self._tried_at is None or self.clock() - self._tried_at >= RETRY_INIT_SECONDS:
                    self._start()
                if not self.available:
                    return []
            try:
                count = int(self.nvml.nvmlDeviceGetCount())
                if count != len(self.gpus):  # a GPU came or went: enumerate again
                    self._enumerate()
            except self.nvml.NVMLError:
                self._error("", "nvmlDeviceGetCount")
            self._drain_xid_events()
            return [self._read_gpu(gpu) for gpu in self.gpus]

    def _drain_xid_events(self) -> None:
        if self._events is None:
            return
        nvml = self.nvml
        wait = getattr(nvml, "nvmlEventSetWait_v2", None) or nvml.nvmlEventSetWait
        by_index = {gpu.index: gpu for gpu in self.gpus}
        for _ in range(MAX_EVENTS_PER_SCRAPE):
            try:
                event = wait(self._events, 0)
            except nvml.NVMLError as e:
                if e.value != nvml.NVML_ERROR_TIMEOUT:  # TIMEOUT: no event waiting, the usual case
                    self._error("", "nvmlEventSetWait")
                return
            if not event.eventType & nvml.nvmlEventTypeXidCriticalError:
                continue
            try:
                gpu = by_index.get(int(nvml.nvmlDeviceGetIndex(event.device)))
            except nvml.NVMLError:
                gpu = None
            if gpu is None:
                self._error("", "xid_event_device")
                continue
            gpu.xid_count += 1
            gpu.last_xid = int(event.eventData)
            log.warning("XID %d on GPU %d (%s)", gpu.last_xid, gpu.index, gpu.uuid)

    def _read_gpu(self, gpu: GPU) -> GPUReading:
        nvml = self.nvml
        values: dict[str, float] = {}
        state = {"answered": False, "lost": False}

        def attempt(call: str, read: Callable[[], None]) -> None:
            if call in gpu.unsupported:
                return
            try:
                read()
                state["answered"] = True
            except nvml.NVMLError as e:
                if e.value == nvml.NVML_ERROR_NOT_SUPPORTED:
                    gpu.unsupported.add(call)
                    return
                if e.value == nvml.NVML_ERROR_GPU_IS_LOST:
                    state["lost"] = True
                self._error(str(gpu.index), call)
            except Exception:  # a malformed answer must not break the scrape either
                self._error(str(gpu.index), call)

        h = gpu.handle
        attempt("nvmlDeviceGetUtilizationRates", lambda: _util(values, nvml.nvmlDeviceGetUtilizationRates(h)))
        attempt("nvmlDeviceGetMemoryInfo", lambda: _memory(values, self._memory_info(gpu)))
        if state["lost"]:  # every further call would fail the same way; say it once per scrape
            return GPUReading(gpu, values, None, state["answered"], True)
        attempt("nvmlDeviceGetTemperature", lambda: values.__setitem__("DCGM_FI_DEV_GPU_TEMP", float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))))
        attempt("nvmlDeviceGetPowerUsage", lambda: values.__setitem__("DCGM_FI_DEV_POWER_USAGE", nvml.nvmlDeviceGetPowerUsage(h) / 1000.0))
        attempt("nvmlDeviceGetClockInfo(SM)", lambda: values.__setitem__("DCGM_FI_DEV_SM_CLOCK", float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM))))
        attempt("nvmlDeviceGetClockInfo(MEM)", lambda: values.__setitem__("DCGM_FI_DEV_MEM_CLOCK", float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM))))
        if self._field_ids:
            attempt("nvmlDeviceGetFieldValues", lambda: self._field_values(gpu, values))
        pids: list[int] | None = None

        def processes() -> None:
            nonlocal pids
            pids = [int(p.pid) for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)]

        attempt("nvmlDeviceGetComputeRunningProcesses", processes)
        if gpu.gpm_samples is not None:
            attempt("nvmlGpmMetricsGet", lambda: self._gpm(gpu))
            values.update(gpu.gpm_values)
        if "xid_events" not in gpu.unsupported and self._events is not None:
            values["DCGM_FI_DEV_XID_ERRORS"] = float(gpu.last_xid)
        return GPUReading(gpu, values, pids, state["answered"], state["lost"])

    def _memory_info(self, gpu: GPU) -> Any:
        """v2 splits out the driver's reserved memory, so "used" matches nvidia-smi; v1 on old drivers."""
        nvml = self.nvml
        if "memory_v2" not in gpu.unsupported and hasattr(nvml, "nvmlMemory_v2"):
            try:
                return nvml.nvmlDeviceGetMemoryInfo(gpu.handle, version=nvml.nvmlMemory_v2)
            except nvml.NVMLError as e:
                old_driver = (nvml.NVML_ERROR_FUNCTION_NOT_FOUND, nvml.NVML_ERROR_NOT_SUPPORTED, getattr(nvml, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH", -1))
                if e.value not in old_driver:
                    raise
                gpu.unsupported.add("memory_v2")
        return nvml.nvmlDeviceGetMemoryInfo(gpu.handle)

    def _field_values(self, gpu: GPU, values: dict[str, float]) -> None:
        nvml = self.nvml
        wanted = [(name, fid) for name, fid in self._field_ids.items() if name not in gpu.unsupported]
        if not wanted:
            return
        answers = nvml.nvmlDeviceGetFieldValues(gpu.handle, [fid for _, fid in wanted])
        for (name, _), answer in zip(wanted, answers):
            if answer.nvmlReturn == nvml.NVML_SUCCESS:
                values[name] = _field_value(nvml, answer)
            elif answer.nvmlReturn == nvml.NVML_ERROR_NOT_SUPPORTED:
                gpu.unsupported.add(name)
            else:
                self._error(str(gpu.index), FIELD_VALUES[name])

    def _gpm(self, gpu: GPU) -> None:
        """Sample GPM now; the ratios cover the time since the previous scrape's sample."""
        now = self.clock()
        if gpu.gpm_taken_at is not None and now - gpu.gpm_taken_at < GPM_MIN_INTERVAL:
            return  # scrapes closer than GPM can resolve: keep the last ratios
        nvml = self.nvml
        previous, current = gpu.gpm_samples
        nvml.nvmlGpmSampleGet(gpu.handle, current)
        first = gpu.gpm_taken_at is None
        gpu.gpm_samples = [current, previous]
        gpu.gpm_taken_at = now
        if first:
            return
        request = gpu.gpm_request
        request.sample1, request.sample2 = previous, current
        nvml.nvmlGpmMetricsGet(request)
        ratios = {}
        for i, name in enumerate(self._gpm_ids):
            metric = request.metrics[i]
            if metric.nvmlReturn == nvml.NVML_SUCCESS:
                ratios[name] = float(metric.value) / 100.0
            elif metric.nvmlReturn != nvml.NVML_ERROR_NOT_SUPPORTED:
                self._error(str(gpu.index), GPM_METRICS[name])
        gpu.gpm_values = ratios


def _util(values: dict[str, float], u: Any) -> None:
    values["DCGM_FI_DEV_GPU_UTIL"] = float(u.gpu)
    values["DCGM_FI_DEV_MEM_COPY_UTIL"] = float(u.memory)


def _memory(values: dict[str, float], m: Any) -> None:
    # DCGM reports whole MiB, as nvidia-smi does
    values["DCGM_FI_DEV_FB_TOTAL"] = float(int(m.total) // MIB)
    values["DCGM_FI_DEV_FB_USED"] = float(int(m.used) // MIB)
    values["DCGM_FI_DEV_FB_FREE"] = float(int(m.free) // MIB)
    if hasattr(m, "reserved"):
        values["DCGM_FI_DEV_FB_RESERVED"] = float(int(m.reserved) // MIB)


# NVML value type -> the member of the value union that holds it
_VALUE_MEMBERS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",  # newer NVML only
}


def _field_value(nvml: Any, answer: Any) -> float:
    kind = answer.valueType
    for name, member in _VALUE_MEMBERS.items():
        if kind == getattr(nvml, name, None):
            return float(getattr(answer.value, member))
    raise ValueError(f"unknown NVML value type {kind}")

"""The NVML session of the exporter: init (retried without a driver), the GPUs it enumerates, their
XID event set and GPM samples, and shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .dcgm_fields import FIELD_VALUES, GPM_METRICS
from .gpu_device import GPU, text

log = logging.getLogger("xsharp.appliance")


class NVMLSession:
    """An NVML session and the GPUs it enumerated. ``nvml`` is the ``pynvml`` module or a stand-in with its API."""

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

"""GPU readings from NVML, one pass per scrape, under DCGM-exporter field names.

``GPUReader`` owns the NVML session: it enumerates GPUs (static facts such as UUID and model
are read once), drains XID events from one event set, keeps GPM samples between scrapes for
the profiling ratios, and on each ``read()`` returns one ``GPUReading`` per GPU. An NVML error
on one GPU or one field skips that value and is counted in ``errors``; it never raises. A
field the GPU does not support is remembered and not asked for again (not an error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .dcgm_fields import FIELD_VALUES, GPM_METRICS, GPU_METRICS, LABELS
from .gpu_device import GPU, GPUReading, text
from .nvml_session import NVMLSession

__all__ = ["FIELD_VALUES", "GPM_METRICS", "GPU", "GPUReader", "GPUReading", "GPU_METRICS", "LABELS", "text"]

log = logging.getLogger("xsharp.appliance")

MIB = 1024 * 1024
RETRY_INIT_SECONDS = 60.0  # without a driver, try nvmlInit again at most this often (on scrape)
MAX_EVENTS_PER_SCRAPE = 256  # an XID storm must not stall a scrape
GPM_MIN_INTERVAL = 0.1  # GPM needs two samples at least this far apart


class GPUReader(NVMLSession):
    """The NVML side of the exporter: reads every GPU of the session once a scrape."""

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
        attempt(
            "nvmlDeviceGetTemperature", lambda: values.__setitem__("DCGM_FI_DEV_GPU_TEMP", float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)))
        )
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

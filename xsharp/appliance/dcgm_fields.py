"""The GPU metrics the exporter serves, under DCGM-exporter's names and labels, and the NVML readings behind them."""

from __future__ import annotations

LABELS = ("gpu", "UUID", "modelName", "Hostname", "pci_bus_id")  # dcgm-exporter's labels, same names

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

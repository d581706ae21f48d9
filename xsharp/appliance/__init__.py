"""The appliance: a node exporter (NVML under DCGM-exporter names, host, health, jobs), alert
rules, Grafana dashboards and the Prometheus configuration that ties them together."""

from .config import ApplianceConfig, ConfigError, write_config
from .exporter import DEFAULT_PORT, NodeCollector, job_state_families, queue_wait_families, registry_for, serve
from .health import HealthConfig
from .jobs import JobView

__all__ = [
    "ApplianceConfig",
    "ConfigError",
    "DEFAULT_PORT",
    "HealthConfig",
    "JobView",
    "NodeCollector",
    "job_state_families",
    "queue_wait_families",
    "registry_for",
    "serve",
    "write_config",
]

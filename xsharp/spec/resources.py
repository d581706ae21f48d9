"""The resources and parallel sections of a job spec: workers, devices and the layout of the parallel modes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .layers import MAX_MODULES
from .section import Section


class Resources(Section):
    workers: int = Field(
        1, ge=1, le=4096, description="worker actors: data-parallel replicas, parameter-server workers, or pipeline stages (x groups for hybrid)"
    )
    cpus_per_worker: float = Field(1.0, gt=0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0, le=64)
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="auto picks the GPU when CuPy sees one")


class ParallelSpec(Section):
    """Layout of the parameter-server, pipeline and hybrid modes, and restarts after a worker dies."""

    servers: int = Field(1, ge=1, le=1024, description="param_server: server actors, each holding a contiguous shard of the parameters")
    staleness: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="param_server: a step computes on weights that hold every update older than this many steps (0: as local); null: no bound",
    )
    stages: int | None = Field(None, ge=1, le=1024, description="pipeline/hybrid: model stages; default: workers (pipeline) or workers / groups (hybrid)")
    groups: int | None = Field(None, ge=1, le=1024, description="hybrid: data-parallel groups of stages; default 2")
    partition: list[Annotated[int, Field(ge=1, le=MAX_MODULES)]] | None = Field(
        None, max_length=MAX_MODULES, description="pipeline/hybrid: modules per stage, in order; default: balanced by parameter count"
    )
    micro_batches: int = Field(4, ge=1, le=4096, description="pipeline/hybrid: micro-batches per (group's share of a) batch")
    max_restarts: int = Field(0, ge=0, le=1000, description="restarts of the worker group from the last checkpoint after a worker dies (xsharp run)")
    checkpoint_every: float = Field(30.0, gt=0, le=86_400, description="seconds between checkpoints when restarts are on")
    collective: Literal["auto", "ring", "shm", "nccl"] = Field(
        "auto", description="data_parallel: allreduce transport; auto: nccl for GPU buffers, shm on one node, else the ring over Ray's object store"
    )
    overlap: bool = Field(
        False,
        description="data_parallel on the ring: send finished layers' gradients while the backward pass goes on (off by default: on one 2-core node it cost 0.69-1.03x, as the ring's copies compete with compute)",
    )
    bucket_kb: int = Field(1024, ge=1, le=1 << 20, description="data_parallel overlap: gradients sent per message, at least (KiB)")

"""Request and response models: the only schema the API speaks besides JobSpec."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class JobOut(BaseModel):
    id: int
    name: str
    user: str
    state: str
    request: str | None = None
    priority: int
    mode: str
    resources: dict[str, Any]
    cpus: float
    gpus: float
    submitted: float
    queued_at: float
    started: float | None = None
    run_started: float | None = None
    finished: float | None = None
    runs: int
    failures: int
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class JobDetail(JobOut):
    spec: dict[str, Any]
    events: list[dict[str, Any]]


class MetricRow(BaseModel):
    ts: float
    phase: str
    layer: int | None = None
    epoch: int | None = None
    step: int | None = None
    loss: float | None = None
    val_accuracy: float | None = None
    samples_per_second: float | None = None


class Artifact(BaseModel):
    path: str
    size: int


class UserUsage(BaseModel):
    """A user's recent usage, decayed with the server's half-life: what orders users within a priority."""

    user: str
    cpu_hours: float
    gpu_hours: float
    share: float  # dominant share of the cluster, in cluster-hours: the smaller goes first


class ClusterOut(BaseModel):
    nodes: list[dict[str, Any]]
    total: dict[str, float]
    free: dict[str, float]
    jobs_by_state: dict[str, int]
    queue: list[JobOut]
    usage: list[UserUsage] = []  # least first; a user who is not an admin sees their own
    usage_half_life_hours: float = 24.0


class TrialOut(BaseModel):
    id: int
    params: dict[str, Any]
    state: str  # PENDING RUNNING SUCCEEDED STOPPED (early) FAILED
    metric: float | None = None  # validation accuracy at the last epoch run (with folds: the mean over folds)
    test_accuracy: float | None = None
    epochs: int = 0
    seconds: float = 0.0  # a running trial: its time so far
    error: str | None = None
    curve: list[float] = []  # validation accuracy per fine-tuning epoch
    fold_metrics: list[float] = []


class SearchOut(BaseModel):
    job: JobOut
    final: bool  # the table the finished search left (its search.json artifact); else the one so far
    settings: dict[str, Any]
    params: list[str]  # the searched fields, as spec paths
    seconds: float | None = None
    best: int | None = None  # the best finished trial (so far, while it runs)
    trials: list[TrialOut]


class ErrorOut(BaseModel):
    """Every 4xx answer: one line per problem, each naming the field or parameter (``model[1].rbm.hidden: must be > 0, got -3``)."""

    detail: list[str]


class ModelOut(BaseModel):
    """A registered model version and its lineage: the job that trained it, who, when, on what."""

    id: int
    name: str
    version: int
    user: str
    job_id: int
    path: str
    created: float
    dataset: str | None = None
    dataset_version: str | None = None
    data_path: str | None = None
    metrics: dict[str, Any] | None = None


class ModelDetail(ModelOut):
    spec: dict[str, Any]


class ModelInputOut(BaseModel):
    """What a model takes: ``kind`` (numbers, image, audio, text or table), one raw row's shape,
    the sample rate of an audio model, and what file an upload may be (null: JSON rows only)."""

    kind: str
    raw_shape: list[int]
    sample_rate: int | None = None
    uploads: str | None = None
    classes: list[str]
    engine: str  # onnxruntime (the model's ONNX export) or xsharp (its NumPy forward pass)


class PredictIn(BaseModel):
    """Raw rows, as the model's training data had them before its saved preprocessing: numbers
    nested as ``raw_shape`` (or flat), texts as strings, table rows as lists of numbers, strings and nulls."""

    model_config = {"extra": "forbid"}
    rows: list[Any]


class ClassScoreOut(BaseModel):
    index: int
    label: str
    probability: float


class PredictionOut(BaseModel):
    top: list[ClassScoreOut]  # most probable first


class PredictOut(BaseModel):
    model: int
    predictions: list[PredictionOut]  # one per row, in order


# --------------------------------------------------------------------------- the console's reads
class Me(BaseModel):
    name: str
    admin: bool


class ModuleInfo(BaseModel):
    kind: str
    summary: str
    pretrainable: bool
    solved: bool = False  # trained by a closed-form solve: one pass, always run (elm, elm_ae)
    options: dict[str, Any]  # the module's Options as JSON Schema


class Recipe(BaseModel):
    name: str
    kind: str  # job: a JobSpec (POST /v1/jobs); search: a hyper-parameter search (POST /v1/searches)
    description: str
    yaml: str
    spec: dict[str, Any] | None = None  # a job: the validated spec, defaults filled in; a search: as written
    error: str | None = None


class AutoPrior(BaseModel):
    low: float
    high: float
    log: bool
    integer: bool


class SpecSchema(BaseModel):
    jobspec: dict[str, Any]
    datasets: list[str]
    formats: list[str]
    search: dict[str, Any]  # the search: section as JSON Schema
    auto: dict[str, AutoPrior]  # option name -> the prior `auto` draws from (other options cannot be auto)


class PlanPhase(BaseModel):
    """One phase of a job's training: a pretrained (or solved) layer, or fine-tuning of the stack."""

    phase: str  # pretrain | finetune, as the job's progress and metric rows name it
    layer: int | None = None  # the module a pretraining phase trains
    kind: str | None = None  # that module's kind
    solve: bool = False  # a closed-form solve: one pass in batches of the module's solve_batch
    epochs: int
    batch_size: int
    start: float  # the share of the job's work done when this phase begins
    share: float  # this phase's share of the job's work


class TrainingPlan(BaseModel):
    """The phases a spec trains in, in order; each is its epochs of passes over the same training rows,
    so a phase's share of the work is its share of all the phases' epochs."""

    phases: list[PlanPhase]
    epochs: int  # all the phases' epochs


class ModeOut(BaseModel):
    name: str
    parallel: bool  # the spec's parallel section lays this mode out


# --------------------------------------------------------------------------- GPUs and dashboards
class GPU(BaseModel):
    hostname: str
    gpu: str
    uuid: str
    model: str
    utilization: float | None = None  # percent
    memory_used: float | None = None  # MiB
    memory_total: float | None = None  # MiB
    temperature: float | None = None  # C
    power: float | None = None  # W
    jobs: list[str] = []


class GPUsOut(BaseModel):
    exporters: int
    gpus: list[GPU]
    errors: list[str]


class Dashboard(BaseModel):
    uid: str
    title: str
    url: str

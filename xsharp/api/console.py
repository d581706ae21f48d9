"""The console's reads beyond the job API: who the caller is, the module library, what a spec
may hold (its JSON Schema, the execution modes), the phases a spec trains in, and the example
recipes. The console computes none of these itself: the spec's model and the trainer's plan answer."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from fastapi import APIRouter, Depends, Request

from xsharp.algos import datasets
from xsharp.algos.flat import FlatLayout
from xsharp.algos.modules import MODULES, build
from xsharp.algos.training import plan
from xsharp.cluster.store import User
from xsharp.searchspec import AUTO_PRIORS, SearchSettings, is_search
from xsharp.spec import MODES, SOLVE_MODES, JobSpec, SpecError, json_schema, layer_kind, load_spec

from .auth import current_user
from .schemas import AutoPrior, Me, ModeOut, ModuleInfo, PlanPhase, Recipe, SpecSchema, TrainingPlan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the repository's examples/, present in a source checkout

router = APIRouter(prefix="/v1", tags=["console"])


@router.get("/me", response_model=Me, summary="The user the token belongs to")
def me(user: User = Depends(current_user)) -> Me:
    return Me(name=user.name, admin=user.admin)


@lru_cache(maxsize=1)
def _modules() -> list[ModuleInfo]:
    return [
        ModuleInfo(
            kind=kind, summary=cls.summary, pretrainable=hasattr(cls, "pretrain_step"), solved=hasattr(cls, "solve"), options=cls.Options.model_json_schema()
        )
        for kind, cls in MODULES.items()
    ]


@router.get("/modules", response_model=list[ModuleInfo], summary="The module library, with each module's options as JSON Schema")
def modules(user: User = Depends(current_user)) -> list[ModuleInfo]:
    return _modules()


# --------------------------------------------------------------------------- what a spec may hold, and how it trains
@lru_cache(maxsize=1)
def _schema() -> SpecSchema:
    auto = {name: AutoPrior(low=lo, high=hi, log=log, integer=integer) for name, (lo, hi, log, integer) in AUTO_PRIORS.items()}
    return SpecSchema(
        jobspec=json_schema(), datasets=sorted(datasets.NAMED), formats=sorted(datasets.FORMATS), search=SearchSettings.model_json_schema(), auto=auto
    )


@router.get(
    "/spec/schema",
    response_model=SpecSchema,
    summary="The JobSpec and a search's settings as JSON Schema, the named datasets and file formats, the priors of `auto`",
)
def spec_schema(user: User = Depends(current_user)) -> SpecSchema:
    return _schema()


@router.get("/spec/modes", response_model=list[ModeOut], summary="The execution modes, and which of them the spec's parallel section lays out")
def spec_modes(user: User = Depends(current_user)) -> list[ModeOut]:
    # The modes outside SOLVE_MODES bring engines of their own (parameter server, pipeline stages): those are what `parallel` lays out.
    return [ModeOut(name=mode, parallel=mode not in SOLVE_MODES) for mode in MODES]


def training_plan(spec: JobSpec) -> TrainingPlan:
    """The phases :func:`xsharp.algos.training.plan` runs ``spec`` in (its defaults filled in by
    JobSpec), the phases of no epochs left out, each with its share of the job's work."""
    modules = [build(layer_kind(layer), getattr(layer, layer_kind(layer))) for layer in spec.model]
    no_parameters = FlatLayout([{} for _ in modules])  # the phases, not where their parameters lie
    phases = [p for p in plan(modules, no_parameters, spec.pretrain, spec.train, rows=0) if p.settings.epochs > 0]
    total = sum(p.settings.epochs for p in phases)
    out, done = [], 0
    for p in phases:
        epochs = p.settings.epochs
        out.append(
            PlanPhase(
                phase=p.name,
                layer=p.layer,
                kind=p.kind,
                solve=p.solve,
                epochs=epochs,
                batch_size=p.settings.batch_size,
                start=done / total,
                share=epochs / total,
            )
        )
        done += epochs
    return TrainingPlan(phases=out, epochs=total)


@router.post(
    "/spec/plan", response_model=TrainingPlan, summary="A JobSpec's training phases in order, with each one's epochs, batch size and share of the work"
)
def spec_plan(spec: JobSpec, user: User = Depends(current_user)) -> TrainingPlan:
    """Pretraining per pretrainable module (a closed-form solve per elm, elm_ae), then fine-tuning:
    what the console draws a job's progress and ETA from."""
    return training_plan(spec)


# --------------------------------------------------------------------------- recipes
def recipes_folder(recipes_dir: str | Path | None) -> Path | None:
    """The recipes folder the server was given, else the source checkout's examples/, if any."""
    return Path(recipes_dir) if recipes_dir else (EXAMPLES if EXAMPLES.is_dir() else None)


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


@router.get("/recipes", response_model=list[Recipe], summary="Example job specs to start from (read-only)")
def recipes(request: Request, user: User = Depends(current_user)) -> list[Recipe]:
    """The server's example specs (examples/*.yaml), each as text and as a spec."""
    folder: Path | None = request.app.state.recipes_dir
    out = []
    for path in sorted(folder.glob("*.yaml")) if folder and folder.is_dir() else []:
        text = path.read_text()
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            out.append(Recipe(name=path.stem, kind="job", description=_leading_comment(text), yaml=text, error=f"not valid YAML: {e}"))
            continue
        try:
            search = is_search(raw)
        except SpecError:  # e.g. `device: auto` read as a search prior; the job check below says what is wrong, if anything
            search = isinstance(raw, dict) and "search" in raw
        if search:
            out.append(Recipe(name=path.stem, kind="search", description=_leading_comment(text), yaml=text, spec=raw))
            continue
        try:
            spec, error = load_spec(path).to_dict(), None
        except SpecError as e:
            spec, error = None, "; ".join(e.problems)
        out.append(Recipe(name=path.stem, kind="job", description=_leading_comment(text), yaml=text, spec=spec, error=error))
    return out

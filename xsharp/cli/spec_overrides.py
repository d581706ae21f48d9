"""`--set KEY=VALUE`: one spec value overridden by its dotted path (`xsharp run`, `xsharp submit`)."""

from __future__ import annotations

import re

import yaml

from xsharp.spec import SpecError

SET_HELP = (
    "Override one spec value by its dotted path, VALUE read as YAML (repeatable; applied after the file and the other options), "
    "e.g. --set train.epochs=3 --set data.limit=500 --set model[0].rbm.hidden=64. The result is validated like the file."
)


def _set_path(key: str) -> list:
    """``model[0].rbm.hidden`` -> ["model", 0, "rbm", "hidden"]; ValueError for a malformed path."""
    steps: list = []
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if not m:
            raise ValueError("not a dotted path (NAME, NAME.NAME, NAME[INDEX].NAME)")
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return steps


def apply_sets(raw, sets: list[str] | None, source: str):
    """The spec ``raw`` (as read from its YAML) with each ``KEY=VALUE`` of ``--set`` applied.

    A missing section is created; a list is indexed (``model[0]``), and a module given by its
    name alone (``- softmax``) becomes a mapping when a field of it is set. The spec is validated
    afterwards by its usual parser; here only a malformed path or value is a SpecError."""
    if not sets:
        return raw
    if not isinstance(raw, dict):
        return raw  # the spec's own validation says it is not a mapping
    problems = []
    for item in sets:
        key, eq, text = item.partition("=")
        key = key.strip()
        where = f"--set {key or item}"
        if not eq or not key:
            problems.append(f"{where}: expected KEY=VALUE, e.g. --set train.epochs=3")
            continue
        try:
            steps = _set_path(key)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            problems.append(f"{where}: the value {text!r} is not valid YAML ({getattr(e, 'problem', e)})")
            continue
        problem = _assign(raw, steps, value)
        if problem:
            problems.append(f"{where}: {problem}")
    if problems:
        raise SpecError(problems, source)
    return raw


def _label(steps: list) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def _assign(node, steps: list, value) -> str | None:
    """Set ``value`` at ``steps`` under ``node``; a message when the path does not lead anywhere."""
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        here = _label(steps[:i]) or "the spec"
        if isinstance(step, int):
            if not isinstance(node, list):
                return f"{here} is not a list, so it has no [{step}]"
            if step >= len(node):
                return f"{here} has {len(node)} entries (indexes 0 to {len(node) - 1}), no [{step}]"
            if last:
                node[step] = value
                return None
            if isinstance(node[step], str) and isinstance(steps[i + 1], str) and steps[i + 1] == node[step]:
                node[step] = {node[step]: {}}  # `- softmax` is `- softmax: {}`
            node = node[step]
            continue
        if not isinstance(node, dict):
            if isinstance(node, str) and i > 0 and isinstance(steps[i - 1], int):
                return f"{here} is the module {node!r}, not {step!r}"
            return f"{here} is a value ({node!r}), not a section with fields"
        if last:
            node[step] = value
            return None
        child = node.get(step)
        if child is None:
            node[step] = child = [] if isinstance(steps[i + 1], int) else {}
        elif isinstance(child, str) and isinstance(steps[i + 1], str) and steps[i + 1] == child:
            node[step] = child = {child: {}}
        node = child
    return None

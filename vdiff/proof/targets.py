"""Value paths and targets of a proof preset (configs/proof/<device>/<variant>.yaml).

A value path names figures of one variant's run: `<eval>/<metric>.<key>` is a key of each of that
eval's sample.py jobs' metrics.json (nested keys by dots), one value per job; `train/<name>` is the
training run's last logged value of metric <name> (names hold slashes: `train/val/bpc`), and
`train/minutes`, `train/steps` its measured wall minutes and final step. `<variant>:<path>` reads
another variant's run, one the preset `needs` (an equal-minute comparison: `shakespeare_ar:train/val/bpc`).

A target reads `value`, optionally against a reference path (`ratio_to`: value / ref, `rel_diff_to`:
|value - ref| / |ref|, `abs_diff_to`: |value - ref|, job by job; a one-value side is broadcast),
`reduce`s the jobs' results (`first` (default), `last`, `max`, `min`) and checks `min` / `max`.
"""

from vdiff.utils.config import ConfigError

OPS = {
    "ratio_to": lambda v, r: v / r,
    "rel_diff_to": lambda v, r: abs(v - r) / abs(r),
    "abs_diff_to": lambda v, r: abs(v - r),
}
REDUCE = {"first": lambda xs: xs[0], "last": lambda xs: xs[-1], "max": max, "min": min}
TARGET_KEYS = {"label", "value", "reduce", "min", "max", *OPS}


def nested(d, key: str):
    """d["a"]["b"] for key "a.b", None where absent."""
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def lookup(record: dict, path: str, others: dict | None = None) -> list:
    """record: {"train": {name: value}, <eval>: [job metrics dicts]} -> the path's values (None where absent);
    `others` {variant: record} for a path `<variant>:...`."""
    if ":" in path.split("/", 1)[0]:
        variant, path = path.split(":", 1)
        record = (others or {}).get(variant) or {"train": {}}
    source, _, key = path.partition("/")
    if source == "train":
        return [record["train"].get(key)]
    return [nested(job, key) for job in record.get(source) or []]


def check_target(target: dict, where: str, evals, needs=()) -> None:
    """A target's keys and paths are valid for a preset whose evals are `evals` (another variant's
    paths, `<variant>:...`, for one of its `needs`), or ConfigError."""
    unknown = set(target) - TARGET_KEYS
    ops = [k for k in OPS if k in target]
    paths = [target.get("value"), *(target[k] for k in ops)]
    if unknown or "label" not in target or len(ops) > 1 or not ({"min", "max"} & set(target)):
        raise ConfigError(
            f"{where}: a target needs label, value, min and/or max and at most one of {', '.join(OPS)}"
            f"{f' (unknown: {sorted(unknown)})' if unknown else ''}"
        )
    if target.get("reduce", "first") not in REDUCE:
        raise ConfigError(f"{where}: reduce={target['reduce']} is not one of {', '.join(REDUCE)}")
    for path in paths:
        source, sep, key = str(path).partition("/")
        variant, colon, source = source.rpartition(":")
        if colon and variant not in needs:
            raise ConfigError(f"{where}: value path {path!r} reads {variant}, which is not in this preset's needs")
        allowed = [source] if colon else evals  # another variant's evals are checked when its record is read
        if not sep or not key or (source != "train" and source not in allowed):
            raise ConfigError(
                f"{where}: value path {path!r} must be train/<metric> or <eval>/<metric>.<key> with an eval of "
                f"{', '.join(evals)}"
            )


def _apply(op, v, r):
    if v is None or r is None:
        return None
    try:
        return float(OPS[op](v, r))
    except (ZeroDivisionError, TypeError):
        return None


def evaluate(target: dict, record: dict, others: dict | None = None) -> dict:
    """{label, measured, met, min, max}: the reduced measure of `target` on `record` (`others`: the other
    variants' records, by name; see the module doc)."""
    values = lookup(record, target["value"], others)
    op = next((k for k in OPS if k in target), None)
    if op:
        refs = lookup(record, target[op], others)
        n = max(len(values), len(refs))
        if min(len(values), len(refs)) == 0 or len({len(values), len(refs)} - {1}) > 1:
            values = []  # nothing measured, or the two evals' job counts differ
        else:
            values = [_apply(op, values[i % len(values)], refs[i % len(refs)]) for i in range(n)]
    measured = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    value = REDUCE[target.get("reduce", "first")](measured) if measured else None
    met = value is not None and value >= target.get("min", value) and value <= target.get("max", value)
    return {
        "label": target["label"],
        "measured": value,
        "met": met,
        **{k: target[k] for k in ("min", "max") if k in target},
    }

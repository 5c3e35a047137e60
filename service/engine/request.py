"""The one request model of a generation job, shared by the CLI, the HTTP service and Python.

A request either creates a dataset (``name`` and ``num_samples`` required, every other parameter
optional) or expands one (``expand_dataset_id`` and ``num_samples`` required). Validation uses
the parameter table through ``kernel.config``; nothing is coerced and every refusal names its
field. Whether an expansion may change a field is decided later, against the stored dataset
(``resolve_expansion``), because only the dataset knows its configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from heimdall_synth.kernel.config import CONFIG_FIELDS, ConfigError, GenerationConfig, check_value
from heimdall_synth.kernel.defaults import PARAMS_BY_NAME, names

JOB_FIELDS = names("job")
FILTER_FIELDS = names("filter")
#: May differ for one expansion job without allow_parameter_override (docs/GENERATION.md).
EXPANSION_MAY_CHANGE = FILTER_FIELDS + JOB_FIELDS
#: Never differ within a dataset, even with allow_parameter_override: the type decides the
#: dataset's columns, an iq_raw dataset's captures all have one shape and one format (an
#: IQ export is one samples x receivers x IQ-samples array), and the split rule must put every
#: sample of a spatial cell in the same split, whenever it was generated.
FIXED_FOR_DATASET = ("dataset_type", "iq_sample_rate_hz", "iq_duration_ms", "iq_format",
                     "split_train", "split_validation", "split_cell_m")


class ConflictError(Exception):
    """A request conflicts with what is stored (HTTP 409). ``fields`` names the fields."""

    def __init__(self, message: str, fields: list[str] | None = None, code: str = "conflict"):
        super().__init__(message)
        self.fields = fields or []
        self.code = code


class NotFoundError(Exception):
    """An id names nothing (HTTP 404)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotIQError(ValueError):
    """The dataset is not of type iq_raw, so it has no IQ (HTTP 409, naming dataset_type)."""

    field = "dataset_type"


@dataclass(frozen=True)
class GenerateRequest:
    """A validated request. ``given`` holds exactly the fields the caller sent (validated)."""

    num_samples: int
    given: Mapping[str, Any] = field(default_factory=dict)

    @property
    def expand_dataset_id(self) -> str | None:
        return self.given.get("expand_dataset_id")

    @property
    def is_expansion(self) -> bool:
        return self.expand_dataset_id is not None

    def get(self, name: str) -> Any:
        """The value sent, else the table's default (max_attempts' default is resolved by the
        job: 20 x num_samples)."""
        if name in self.given:
            return self.given[name]
        return PARAMS_BY_NAME[name].default

    @classmethod
    def from_dict(cls, d: Any) -> "GenerateRequest":
        if not isinstance(d, Mapping):
            raise ConfigError(None, "the request must be a JSON object")
        unknown = sorted((k for k in d if k not in PARAMS_BY_NAME), key=str)
        if unknown:
            raise ConfigError(str(unknown[0]), "unknown field")
        if "num_samples" not in d:
            raise ConfigError("num_samples", "is required")
        given = {k: check_field(k, v) for k, v in d.items()}
        if given.get("use_gpu") is True:
            from heimdall_synth.kernel.gpu import device_info
            if device_info() is None:
                # Refused, never silently run on the CPU. null (choose) and false run on the
                # CPU here, and the job's device says so.
                raise ConfigError("use_gpu", "true asks for a CUDA device, and this machine "
                                             "has none (numba-cuda, a driver and a device are "
                                             "needed: the gpu extra); send null or false")
        if given.get("expand_dataset_id") is None:
            given.pop("expand_dataset_id", None)
            if given.get("name") is None:
                raise ConfigError("name", "is required for a new dataset")
            # Validate the whole configuration now, so a refused request creates nothing.
            config_of(given)
        if given.get("max_attempts") is not None and given["max_attempts"] < given["num_samples"]:
            raise ConfigError("max_attempts", f"{given['max_attempts']} is fewer than "
                                              f"num_samples {given['num_samples']}")
        return cls(num_samples=given["num_samples"], given=given)

    def job_options(self) -> dict:
        """The execution knobs of this job, with their effective values."""
        n = self.num_samples
        return {
            "use_gpu": self.get("use_gpu"),
            "max_attempts": self.get("max_attempts") or 20 * n,
            "max_consecutive_rejections": self.get("max_consecutive_rejections"),
            "batch_size": self.get("batch_size"),
        }


def check_field(name: str, value: Any) -> Any:
    """``check_value`` (the parameter table), then: can PostgreSQL store it? Its text and jsonb
    hold neither NUL (U+0000) nor a lone UTF-16 surrogate (which JSON's "\\ud800" escapes
    let through); such text is refused here, naming the field, not failed on in the database."""
    value = check_value(name, value)
    _check_storable(name, value)
    return value


def _check_storable(where: str, value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError(where, f"must not contain a NUL character (U+0000, at position "
                                     f"{value.index(chr(0))}): PostgreSQL cannot store it")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(where, f"must be Unicode text: a lone surrogate "
                                     f"(U+{ord(value[exc.start]):04X}, at position {exc.start}) "
                                     "is not a character") from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_storable(f"{where}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_storable(f"{where}[{i}]", item)


def config_of(given: Mapping[str, Any]) -> GenerationConfig:
    """The GenerationConfig of a new dataset from the fields sent."""
    return GenerationConfig.from_dict({k: v for k, v in given.items() if k in CONFIG_FIELDS})


def resolve_expansion(request: GenerateRequest, stored: Mapping[str, Any], stored_seed: int
                      ) -> tuple[GenerationConfig, int, dict]:
    """The configuration and seed an expansion job runs with, and the overrides it records.

    Everything defaults to the dataset's stored configuration. Filters may differ for this job
    (recorded as overrides). A different value for a data-defining field, the seed or the type
    is refused with ConflictError naming the fields, unless allow_parameter_override is true.
    """
    base = GenerationConfig.from_dict(dict(stored))
    base_dict = base.to_dict()
    sent = {k: v for k, v in request.given.items() if k in CONFIG_FIELDS}
    if sent.get("dataset_type", base.dataset_type) != base.dataset_type:
        raise ConflictError(
            f"dataset_type cannot change within a dataset, even with allow_parameter_override "
            f"(it is {base.dataset_type!r}); generate a new dataset instead", ["dataset_type"],
            code="conflicting_override")
    candidate = GenerationConfig.from_dict({**base_dict, **sent}).to_dict()
    changed = sorted(k for k in CONFIG_FIELDS if candidate[k] != base_dict[k])
    if "seed" in request.given and request.given["seed"] != stored_seed:
        changed.append("seed")
    overrides = {k: {"dataset": stored_seed if k == "seed" else base_dict[k],
                     "job": request.given[k] if k == "seed" else candidate[k]} for k in changed}
    fixed = [k for k in changed if k in FIXED_FOR_DATASET]
    if fixed:
        raise ConflictError(
            f"{', '.join(fixed)} cannot change within a dataset, even with "
            "allow_parameter_override (they decide its columns and its IQ's shape); generate "
            "a new dataset instead", fixed, code="conflicting_override")
    defining = [k for k in changed if k not in EXPANSION_MAY_CHANGE]
    if defining and not request.get("allow_parameter_override"):
        raise ConflictError(
            f"an expansion cannot change what the dataset means: {', '.join(defining)} "
            "differ from the stored configuration (send allow_parameter_override: true to "
            "record the change on this job anyway)", defining, code="conflicting_override")
    seed = request.given["seed"] if "seed" in changed else stored_seed
    return GenerationConfig.from_dict(candidate), seed, overrides

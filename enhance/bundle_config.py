"""`BundleConfig`: a model bundle's JSON index as a dataclass, read strictly.

A subclass is a dataclass with a default for every field; it names its `FORMAT`, `VERSION`
and `WHAT` (how messages call it) and checks its values' ranges in `check`. Reading refuses
another format or version, unknown keys and values of another type than the default's (an
integer may stand for a float; a bool may not).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

from .errors import WeightsError


class BundleConfig:
    FORMAT: ClassVar[str]
    VERSION: ClassVar[int]
    WHAT: ClassVar[str]

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "version": self.VERSION, **asdict(self)}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise WeightsError(f"{path}: cannot read the {cls.WHAT} config ({error})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str):
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT or data.get("version") != cls.VERSION:
            raise WeightsError(f"{where}: not a version {cls.VERSION} {cls.FORMAT} config")
        fields = {key: value for key, value in data.items() if key not in ("format", "version")}
        defaults = asdict(cls())
        unknown = sorted(set(fields) - set(defaults))
        if unknown:
            raise WeightsError(f"{where}: unknown keys {unknown}")
        for key, value in fields.items():
            expected = type(defaults[key])
            if expected is float and type(value) is int:
                value = float(value)
            if type(value) is not expected:
                raise WeightsError(f"{where}: {key} must be {expected.__name__}, not {value!r}")
            fields[key] = value
        config = cls(**fields)
        config.check(where)
        return config

    def check(self, where: str) -> None:
        """Raises WeightsError, naming `where`, for a value out of its range."""
        raise NotImplementedError

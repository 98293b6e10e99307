"""Engines that run the per-file work of `enhance run` and `enhance compare` elsewhere than here.

The local engine (this process, or `--jobs` worker processes) lives in `enhance.runs`;
`ray_engine` runs the same work on a Ray cluster. Ray is an optional extra
(`pip install 'enhance[ray]'`): nothing here imports it until an engine is used.
"""

ENGINES = ("local", "ray")


def make_engine(name: str, *, address: str | None = None, jobs: int | None = None, num_cpus: float | None = None, num_gpus: float | None = None):
    """The engine the command line asked for: None for the local one (see `enhance.runs`), else a RayEngine."""
    from ..errors import EnhanceError

    if name == "local":
        given = [option for option, value in (("--address", address), ("--num-cpus", num_cpus), ("--num-gpus", num_gpus)) if value is not None]
        if given:
            raise EnhanceError(f"{', '.join(given)} need --engine ray")
        return None
    if name == "ray":
        from .ray_engine import RayEngine

        if jobs is not None and jobs < 1:
            raise EnhanceError("--jobs must be at least 1")
        return RayEngine(address=address, actors=jobs, num_cpus=1 if num_cpus is None else num_cpus, num_gpus=num_gpus or 0)
    raise EnhanceError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}")

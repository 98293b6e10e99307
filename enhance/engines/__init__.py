"""Engines that run the per-file work of `enhance run` and `enhance compare` elsewhere than here.

The local engine (this process, or `--jobs` worker processes) lives in `enhance.runs`;
`ray_engine` runs the same work on a Ray cluster. Ray is an optional extra
(`pip install 'enhance[ray]'`): nothing here imports it until an engine is used.
"""

ENGINES = ("local", "ray")

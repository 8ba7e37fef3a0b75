"""Config sections of the later lifecycle stages, one module each (pydantic only).

`mainsail.config.ProjectConfig` holds one field per section. Each module here imports nothing
but pydantic, so the project config loads in every runtime environment.
"""

"""Build step for the one C extension: socketkit._speedups, the per-message fast paths.

Optional: where it does not build (no C compiler, another platform), socketkit runs the same
code paths in pure Python (socketkit/_accel.py). Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "socketkit._speedups",
            ["src/socketkit/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
        )
    ]
)

"""Build steps beyond pyproject.toml: the one C extension, and the docs inside the package.

* ``socketkit._speedups``, the per-message fast paths. Optional: where it does not build (no C
  compiler, another platform), socketkit runs the same code paths in pure Python
  (socketkit/_accel.py).
* ``docs/*.md`` are copied into the built package as ``socketkit/_docs``, so that
  ``socketkit help TOPIC`` works in a pip-installed copy, which has no checkout.
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

DOCS = Path(__file__).resolve().parent / "docs"


class BuildWithDocs(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "socketkit" / "_docs"
        target.mkdir(parents=True, exist_ok=True)
        for page in sorted(DOCS.glob("*.md")):
            shutil.copyfile(page, target / page.name)


setup(
    cmdclass={"build_py": BuildWithDocs},
    ext_modules=[
        Extension(
            "socketkit._speedups",
            ["src/socketkit/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
        )
    ],
)

"""Build step of the churnml package (the metadata is in pyproject.toml).

The declarative configuration has one source, the project's top-level ``features/`` and
``models/`` folders. A built package (a wheel, ``pip install .``, ``pip install git+URL``)
must carry it, so ``build_py`` copies every ``*.yaml`` of both folders into the package as
``churnml/_defaults/features/`` and ``churnml/_defaults/models/`` (whole folders: a new
``models/<target>.yaml`` ships without a change here). Nothing is copied for an editable install,
which reads the project's files directly; ``churnml.config.config_root`` says how the
configuration is found.

The same step copies the BentoML service (``serving/service.py``) into ``churnml/_serving/``,
so ``churnml serve`` of an installed package has a service to run
(``churnml.commands.serve.serving_dir``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CONFIG_FOLDERS = ("features", "models")
PACKAGED_CONFIG = Path("churnml") / "_defaults"  # churnml.config.PACKAGED_CONFIG_DIR
# Written into a Bento's copy of features/ by serving/build_bento.py, never a default.
NOT_SHIPPED = {"serving_health.yaml"}
PACKAGED_SERVICE = Path("churnml") / "_serving"  # churnml.commands.serve.PACKAGED_SERVING_DIR
SERVICE_FILES = ("service.py",)  # what `bentoml serve service:ChurnService` imports


def config_files(folder: str) -> list[Path]:
    """The YAML files of a top-level configuration folder that a built package carries."""
    files = sorted(p for pattern in ("*.yaml", "*.yml") for p in (ROOT / folder).glob(pattern)
                   if p.is_file() and p.name not in NOT_SHIPPED)
    if not files:
        raise SystemExit(f"churnml build: no YAML files in {ROOT / folder}: the package needs "
                         "the project's features/ and models/ folders")
    return files


class BuildPyWithConfig(build_py):
    """``build_py`` that also copies ``features/*.yaml`` and ``models/*.yaml`` into the
    package (see the module docstring)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the top-level folders themselves
        for target in (PACKAGED_CONFIG, PACKAGED_SERVICE):
            if (Path(self.build_lib) / target).exists():  # a reused build/ folder may hold
                shutil.rmtree(Path(self.build_lib) / target)  # files removed since
        for source, dest in self._copies():
            self.mkpath(str(dest.parent))
            self.copy_file(str(source), str(dest))

    def _copies(self) -> list[tuple[Path, Path]]:
        build = Path(self.build_lib)
        copies = [(path, build / PACKAGED_CONFIG / folder / path.name)
                  for folder in CONFIG_FOLDERS for path in config_files(folder)]
        copies += [(ROOT / "serving" / name, build / PACKAGED_SERVICE / name)
                   for name in SERVICE_FILES]
        return copies

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        return outputs + [str(dest) for _, dest in self._copies()]


setup(cmdclass={"build_py": BuildPyWithConfig})

"""Build step: ship ``precompile-auto.pth`` into site-packages with the package.

Python runs an ``import`` line of any ``.pth`` file in site-packages at every interpreter
start; this one turns ``PRECOMPILE_AUTO`` on (``precompile/auto.py``) in every process that
has the variable set, and costs one ``os.environ`` lookup in every other (``precompile`` is
not imported). setuptools has no option that puts a file at the top of site-packages, so
``build_py`` writes it: into ``build_lib`` for a wheel (``pip install .``), and into the
editable wheel itself for ``pip install -e .`` (whose ``build_lib`` is not installed).
"""
from __future__ import annotations

import os

from setuptools.command.build_py import build_py

PTH_NAME = "precompile-auto.pth"
# One line; the values that mean "off" are settings.flag's.
PTH_LINE = ("import os; os.environ.get('PRECOMPILE_AUTO', '').strip().lower() not in "
            "('', '0', 'false', 'no', 'off') and __import__('precompile.auto').auto.boot()\n")


class BuildPyWithPth(build_py):
    """``build_py`` that also writes ``precompile-auto.pth`` where the wheel's top is."""

    def run(self) -> None:
        super().run()
        directory = self._wheel_top()
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, PTH_NAME), "w", encoding="utf-8") as fh:
            fh.write(PTH_LINE)

    def _wheel_top(self) -> str:
        if getattr(self, "editable_mode", False):
            # editable_wheel points ``install_lib`` at the unpacked wheel it is building
            return self.get_finalized_command("install").install_lib
        return self.build_lib

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs

"""What every Task offers, and the one check of options that do not belong to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BadInputError

# Option names whose command-line flag is spelled otherwise.
FLAGS = {"calibrate": "--no-calibrate", "json_path": "--json", "plot_path": "--plot", "out_csv": "--output"}


class Task:
    """A job lensml trains networks for. Subclasses name the options each command takes."""

    what: str = ""  # the data it reads, for messages
    train_options: frozenset[str] = frozenset()
    evaluate_options: frozenset[str] = frozenset()
    predict_options: frozenset[str] = frozenset()

    def check(self, command: str, options: Mapping[str, Any], data: str | Sequence[str] | None = None) -> None:
        """Refuse options another task owns (naming them, the task they belong to and this task's data),
        and output paths that would fail only after the work or overwrite the input `data`."""
        from ..io.tables import check_csv_output
        from ..plots import check_plot_path
        from . import TASKS

        allowed = getattr(self, f"{command}_options")
        foreign = sorted(k for k in options if k not in allowed)
        if foreign:
            flags = ", ".join(FLAGS.get(k, "--" + k.replace("_", "-")) for k in foreign)
            owners = [t.what for t in TASKS.values() if t is not self and set(foreign) <= getattr(t, f"{command}_options")]
            if not owners:
                raise BadInputError(f"{flags}: not an option of {command} (for {self.what})")
            verb = "applies" if len(foreign) == 1 else "apply"
            raise BadInputError(f"{flags} {verb} to {owners[0]}, not to {self.what}")
        if options.get("out_csv") and isinstance(data, (str, Path)):
            check_csv_output(options["out_csv"], data)
        if options.get("plot_path"):
            check_plot_path(options["plot_path"])

    def train(self, data: str, model: str, options: Mapping[str, Any], config_file: str | None = None,
              remove: bool = False, progress: bool = True) -> Path:
        raise NotImplementedError

    def evaluate(self, data: str | Sequence[str], models: Sequence[str], options: Mapping[str, Any], progress: bool = True) -> Any:
        raise NotImplementedError

    def predict(self, data: str, model: str, options: Mapping[str, Any], progress: bool = True) -> Any:
        raise NotImplementedError

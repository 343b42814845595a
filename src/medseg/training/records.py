"""What a training run leaves on disk: the resumable state (``last_state.json`` and the weights beside it),
``history.json`` / ``history.csv`` and the fold's ``summary.json``, and resuming from them."""

from __future__ import annotations

import csv
import json

from tqdm.auto import tqdm

from medseg.artifact import dump_json
from medseg.errors import DataValidationError
from medseg.training import distributed
from medseg.training.checkpoint import load_training_state, save_training_state


class RunRecords:
    """The part of :class:`~medseg.training.trainer.Trainer` that saves and resumes its state and writes its
    history and summary (only rank 0 writes when several processes train)."""

    def resume(self) -> bool:
        state = load_training_state(self.run_dir, self.model, self.optimizers, self.state_modules())
        # the raw value: a damaged epoch is reported below as a damaged state, not as a crash here
        found = distributed.all_gather_objects(None if state is None else state.get("epoch", -1))
        if len({repr(v) for v in found}) > 1:  # repr: a damaged value need not be hashable
            raise DataValidationError(
                self.run_dir,
                f"the processes found different training states here (epoch "
                f"per rank: {found}); every rank must see the same run folder — on several "
                "machines put output.root on a shared filesystem — or start over with --restart",
            )
        if state is None:
            return False
        try:
            self.scheduler.load_state_dict(state["scheduler"])
            self.early.load_state_dict(state["early_stopping"])
            self.history = list(state["history"])
            self.start_epoch = int(state["epoch"]) + 1
            self.global_step = int(self.history[-1].get("steps", 0)) if self.history else 0
            self.elapsed_before = float(state.get("elapsed_s", 0.0))
            self.stopped_by_time = bool(state.get("stopped_by_time", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(
                self.run_dir / "last_state.json",
                f"the saved training state is damaged (no "
                f"valid {exc}); resume is impossible: start this fold over with --restart",
            ) from exc
        return True

    def save_state(self, epoch: int, finished: bool = False) -> None:
        if not self.dist.is_main:
            return
        save_training_state(
            self.run_dir,
            self.model,
            self.optimizers,
            {
                "epoch": epoch,
                "fold": self.fold,
                "finished": finished,
                "scheduler": self.scheduler.state_dict(),
                "early_stopping": self.early.state_dict(),
                "history": self.history,
                "elapsed_s": round(self.elapsed(), 3),
                "stopped_by_time": self.stopped_by_time,
            },
            self.state_modules(),
        )

    def write_history(self) -> None:
        if not self.dist.is_main:
            return
        dump_json(self.history, self.run_dir / "history.json")
        if not self.history:
            return
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        tmp = self.run_dir / ".history.csv.tmp"
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        tmp.replace(self.run_dir / "history.csv")

    def time_shares(self) -> dict:
        """Wall time of this call of :meth:`fit` and the share of it spent validating and saving."""
        wall = self.wall_s
        if not wall:
            return {}
        rows = [r for r in self.history[self.start_epoch :] if "validation_time_s" in r]
        val = sum(float(r["validation_time_s"]) for r in rows) + float((self.final_val or {}).get("time_s", 0))
        share = val / wall
        if self.progress:
            tqdm.write(f"fold {self.fold}: {wall / 60:.1f} min, {100 * share:.0f} % of it validating and saving")
        return {"wall_s": round(wall, 2), "validation_s": round(val, 2), "validation_share": round(share, 4)}

    def selected_epoch(self) -> int:
        """The epoch whose weights are ``model.safetensors``: the best validated one, or the last one trained
        when there is no validation set."""
        if not self.has_validation:
            return int(self.history[-1]["epoch"]) if self.history else -1
        return self.early.best_epoch

    def summary(self, write: bool = True) -> dict:
        """The fold's summary (``summary.json``); ``write=False``: the one saved when it was trained, where there
        is one, and nothing written."""
        saved = self.run_dir / "summary.json"
        if not write and saved.is_file():
            try:
                return json.loads(saved.read_text())
            except (OSError, ValueError):
                pass
        selected = self.selected_epoch()
        best = next((r for r in self.history if r["epoch"] == selected), {})
        out = {
            "fold": self.fold,
            "run_dir": str(self.run_dir),
            "epochs_run": len(self.history),
            "best_epoch": selected,
            "best_val": best,
            "steps": int(self.history[-1].get("steps", 0)) if self.history else 0,
            "selected": "best validation" if self.has_validation else "last epoch (no validation set)",
            "stopped_by_time_limit": self.stopped_by_time,
        }
        out.update(self.time_shares())
        if self.final_val is not None:
            out["final_validation"] = self.final_val
        if self.dist.is_main and write:
            dump_json(out, self.run_dir / "summary.json")
        return out

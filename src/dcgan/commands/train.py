"""`dcgan train`: every TrainConfig field is a flag; --config FILE sets defaults; --resume RUN."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dcgan.config import FIELDS, LENGTHS, PRESETS, data_changes, preset_values, read_config_file, resolve_config
from dcgan.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a GAN", description=__doc__,
                                   argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings (flags override it)")
    parser.add_argument("--resume", metavar="RUN", help="continue a run folder (or its checkpoint-last.pt) exactly")
    parser.add_argument("--allow-new-data", action="store_true",
                        help="with --resume: continue on other data than the run's (fine-tuning); refused otherwise")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    recipes = {name: preset_values(name) for name in PRESETS}
    differing = {name for values in PRESETS.values() for name in values}
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = _field_help(name)
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = "LIST" if field.type == "list[str]" else field.type.upper()
            suffix = (" (" + ", ".join(f"{preset} {values[name]!r}" for preset, values in recipes.items()) + ")"
                      if name in differing else "")
            parser.add_argument(flag, metavar=kind, help=f"{help_text}{suffix}")
    parser.set_defaults(run=run)


def _field_help(name: str) -> str:
    """A TrainConfig field's help text (its metadata)."""
    return FIELDS[name].metadata.get("help", name.replace("_", " "))


def run(args: argparse.Namespace) -> int:
    given = {k: v for k, v in vars(args).items() if k in FIELDS}
    file_values = read_config_file(args.config) if getattr(args, "config", None) else {}
    resume_state, run_dir, lock = None, None, None
    if getattr(args, "resume", None):
        # The run folder is locked before anything in it is read, so that a run still writing it
        # cannot end in between. The saved config is the base; flags and --config change it (a
        # changed architecture then fails to load, naming the shapes). A new length replaces the old ones.
        from dcgan.checkpoint import load_checkpoint
        from dcgan.files import RunFolderLock
        from dcgan.training.run_dir import check_run_folder

        run_dir, checkpoint_path = check_run_folder(Path(args.resume))
        if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 writes the folder
            lock = RunFolderLock(run_dir)
        resume_state = load_checkpoint(checkpoint_path)
        saved = dict(resume_state["config"])
        if any(k in given or k in file_values for k in LENGTHS):
            saved.update({k: 0 for k in LENGTHS})
        given.setdefault("preset", saved.pop("preset"))
        file_values = {**saved, **file_values}
    config = resolve_config(file_values=file_values, overrides=given, resuming=resume_state is not None)
    if resume_state is not None and config.freeze_d != resume_state["config"].get("freeze_d", 0):
        raise UserError(f"{run_dir} was trained with --freeze-d {resume_state['config'].get('freeze_d', 0)}; "
                        f"a resume keeps it (leave --freeze-d out)")
    if resume_state is not None and (changes := data_changes(resume_state["config"], config)):
        if not getattr(args, "allow_new_data", False):
            raise UserError(f"{run_dir} was trained on other data ({'; '.join(changes)}): pass --allow-new-data "
                            f"to continue on the new data, or leave the data flags as the run had them")
        print(f"continuing {run_dir.name} on other data ({'; '.join(changes)})", flush=True)
    if getattr(args, "dry_run", False):
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if resume_state is None:
        from dcgan.training.run_dir import check_outdir

        check_outdir(config)
    from dcgan.training.loop import train  # torch is imported only once the config is valid

    train(config, run_dir=run_dir, resume_state=resume_state, lock=lock)
    return 0

"""The `medseg` command line (Typer).

    medseg data synth OUT.h5 [--pommier | --n-pairs N] [--crops DIR | --metaphase IMG]
    medseg data info PATH [--classes a,b | --n-classes N] [--mask-values 0,255]
    medseg data convert SERIES... -o OUT [--format hdf5|nifti] [--allow-gaps]
    medseg plan DATA [-o CONFIG.yaml] [--classes a,b,c] [--budget-gb G] [--set key=value ...]
    medseg train CONFIG [--fold K] [--data PATH] [--set key=value ...] [--restart]
    medseg train DATA [--classes a,b,c] [--budget-gb G] [--set key=value ...]   planned on the fly (medseg plan)
    medseg cv CONFIG [--folds 0,1,...] [--data PATH]         all folds, then the held-out test report
    medseg evaluate RUN [--data PATH] [--tta] [--trust-code] [--karyotype-vote soft|majority]
    medseg predict MODEL IMAGE... -o OUT [--folds K,...|all] [--tta] [--allow-gaps] [--trust-code]
    medseg predict SEMANTIC_RUN METAPHASE... -o OUT [--pair-model PAIR_RUN] [--karyotype-model KARYO_RUN]
    medseg predict RUN FOLDER --format submission -o OUT [--folds K,...|all]   UW-Madison submission.csv
    medseg serve [--model RUN ...] [--pair-model PAIR_RUN] [--karyotype-model KARYO_RUN] [--trust-code]
    medseg users add|list|passwd|remove
    medseg models
    medseg config show CONFIG [--set key=value ...]          the resolved config, each value's source

One module per command group (data, plan, train, evaluate, predict, serve, config), each command a thin layer:
parse the options, call the library, print. Errors: medseg's own (and the operating system's) become one
``error:`` line naming the file and the problem, exit code 2, in :class:`~medseg.cli._common.MedsegGroup` — one
handler for every command.
"""

from __future__ import annotations

from medseg.cli import config, data, evaluate, plan, predict, serve, train
from medseg.cli._common import HelpTyper, MedsegGroup

# Registered here, not where they are defined, so that this list is the order `medseg --help` shows them in:
# the steps of a project (plan, train, evaluate, predict), then the tools; the groups come last.
COMMANDS = (
    ("plan", plan.plan),
    ("train", train.train),
    ("cv", train.cv),
    ("evaluate", evaluate.evaluate_cmd),
    ("predict", predict.predict),
    ("evaluate-metaphases", evaluate.evaluate_metaphases_cmd),
    ("reproduce", evaluate.reproduce),
    ("models", config.models),
    ("serve", serve.serve),
)
GROUPS = (("data", data.data_app), ("users", serve.users_app), ("config", config.config_app))


def _build_app() -> HelpTyper:
    # rich_markup_mode=None: click's plain messages, which are never hard-wrapped (rich's error panels are).
    app = HelpTyper(
        cls=MedsegGroup,
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        help="medseg: medical image segmentation with the U-Net family.",
    )
    for name, command in COMMANDS:
        app.command(name)(command)
    for name, group in GROUPS:
        app.add_typer(group, name=name)
    return app


app = _build_app()

__all__ = ["app"]

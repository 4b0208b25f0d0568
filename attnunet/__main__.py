"""``python -m attnunet <train|evaluate|infer|synth|check|export> [key=value ...]``."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "train": "attnunet.cli.train",
    "evaluate": "attnunet.cli.evaluate",
    "infer": "attnunet.cli.infer",
    "synth": "attnunet.cli.synth",
    "check": "attnunet.cli.check",
    "export": "attnunet.cli.export",
}


# Lightning's DDP launcher restarts ``python -m attnunet`` with the original overrides but without
# the command word (Hydra must not see it), so the command travels to the workers in the environment.
COMMAND_ENV = "ATTNUNET_COMMAND"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        command = sys.argv.pop(1)
        os.environ[COMMAND_ENV] = command
    elif os.environ.get(COMMAND_ENV) in COMMANDS:
        command = os.environ[COMMAND_ENV]
    else:
        print(f"usage: python -m attnunet {{{','.join(COMMANDS)}}} [key=value ...]", file=sys.stderr)
        sys.exit(2)
    sys.argv[0] = f"attnunet-{command}"
    importlib.import_module(COMMANDS[command]).main()


if __name__ == "__main__":
    main()

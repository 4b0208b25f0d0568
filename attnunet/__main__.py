"""``python -m attnunet <train|evaluate|infer|synth> [key=value ...]``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "attnunet.cli.train",
    "evaluate": "attnunet.cli.evaluate",
    "infer": "attnunet.cli.infer",
    "synth": "attnunet.cli.synth",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m attnunet {{{','.join(COMMANDS)}}} [key=value ...]", file=sys.stderr)
        sys.exit(2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"attnunet-{command}"
    importlib.import_module(COMMANDS[command]).main()


if __name__ == "__main__":
    main()

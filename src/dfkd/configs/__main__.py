"""``python -m dfkd.configs [NAME ...]``: list the packaged presets, or print the path of each one named."""

import sys

from dfkd.configs import list_configs, resolve_config


def main(argv: list[str]) -> int:
    """Print the preset names, or each named preset's path; 2 when one is unknown."""
    if not argv:
        print("\n".join(list_configs()))
        return 0
    try:
        for name in argv:
            print(resolve_config(name))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

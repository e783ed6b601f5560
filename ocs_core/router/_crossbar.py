"""Run crossbar's command line under our interpreter with quiet imports (no bjdata traceback)."""
import sys

from ocs_core import _quiet_imports  # noqa: F401  (must run before crossbar imports autobahn)


def main() -> int:
    """Same as the ``crossbar`` console script: ``crossbar.run()`` with our argv."""
    from crossbar import run

    return run()


if __name__ == "__main__":
    sys.exit(main())

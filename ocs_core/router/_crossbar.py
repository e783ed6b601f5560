"""Run crossbar's command line under our interpreter (no ``crossbar`` script on PATH needed)."""
import sys


def main() -> int:
    """Same as the ``crossbar`` console script: ``crossbar.run()`` with our argv."""
    from crossbar import run

    return run()


if __name__ == "__main__":
    sys.exit(main())

"""Old name of generate_and_save_healpix_oslo_struct.py (the seed README prints both)."""

from generate_and_save_healpix_oslo_struct import build_parser, main  # noqa: F401
from utils.cli import run_main

if __name__ == "__main__":
    run_main(main)

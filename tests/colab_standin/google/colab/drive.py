"""``drive.mount``: Drive appears as ``<mountpoint>/MyDrive``, here the folder named by ``COLAB_STANDIN_DRIVE``."""

import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    my_drive = Path(mountpoint) / "MyDrive"
    if my_drive.exists() and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, call "
              f'drive.mount("{mountpoint}", force_remount=True).')
        return
    my_drive.parent.mkdir(parents=True, exist_ok=True)
    my_drive.symlink_to(os.environ["COLAB_STANDIN_DRIVE"], target_is_directory=True)
    print(f"Mounted at {mountpoint}")

#!/usr/bin/env python
"""Django's command-line utility for RSS Lab (``python manage.py migrate`` and friends)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")
    from labsite.secretkey import export_existing_secret_key

    # beside `make run` (e.g. `manage.py api_token create`), its key in var/secret_key
    export_existing_secret_key()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

"""The demo Django project served by ``make run``."""

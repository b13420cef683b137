"""Benchmarks that put `jobs` side by side with raw RQ and django-rq in one run: ``python -m bench``."""

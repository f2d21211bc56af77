"""The precompile benchmark suite: ``python -m bench`` (or ``make bench``, or
``python bench/run.py``). See bench/run.py."""

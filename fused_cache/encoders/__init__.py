"""Encoder plugins: the interface in ``base.py``, the list of encoders in ``registry.py``, one module each."""

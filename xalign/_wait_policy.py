"""Imported first by ``xalign/__init__.py``, before anything imports torch: OpenMP reads its
wait policy once, when torch starts it (:func:`xalign.threads.passive_wait_policy`)."""

from xalign.threads import passive_wait_policy

passive_wait_policy()

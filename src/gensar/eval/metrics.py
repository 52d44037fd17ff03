from gensar.metrics import *  # noqa: F401,F403  # shim for the old path; the lead removes it after merging

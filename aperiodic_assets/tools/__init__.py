"""Commands for people rather than for Dagster: the demo, the doctor, the dev launcher and the
UI screenshots. None of them is part of the code location.
"""

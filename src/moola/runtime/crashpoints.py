"""Named crash points of the live loop (issue 18): see ``moola.core.crashpoints``.

The implementation lives in ``moola.core`` so that every layer the loop runs through --
the journal in ``moola.tracking.livedb`` included, which may not import ``moola.runtime``
-- can place a point; this module is where the runtime and its tests name it.
"""

from moola.core.crashpoints import CRASH_POINTS, ENV_VAR, arm, crash_point, parse_target

__all__ = ["CRASH_POINTS", "ENV_VAR", "arm", "crash_point", "parse_target"]

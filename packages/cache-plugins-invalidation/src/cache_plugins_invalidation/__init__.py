"""Tag, event and dependency invalidation for the Caching Agent.

Installed (``caching-agent[invalidation]``), it registers itself: writes carry tags and
dependencies, category rules and events apply, and ``agent.invalidation_manager`` takes
runtime registrations. ``EventTrigger`` names the description's events.
"""

from cache_plugins_invalidation.events import EventTrigger
from cache_plugins_invalidation.registrations import InvalidationManager, Registration

__all__ = ["EventTrigger", "InvalidationManager", "Registration"]

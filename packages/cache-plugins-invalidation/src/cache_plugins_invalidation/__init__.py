"""Tag, event and dependency invalidation for the Caching Agent."""

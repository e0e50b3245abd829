"""What a caller may send: keys, patterns, tag and dependency names, values, within limits.

Every check raises a 4xx-kind error (:class:`InvalidKeyError`, :class:`InvalidValueError`)
naming what is wrong and the limit, before anything is read or written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cache_core import serialization
from cache_core.config import LimitsSection
from cache_core.errors import InvalidKeyError, InvalidValueError
from cache_core.globs import glob_features

# C0, DEL and C1 controls, and lone surrogates (text no UTF-8 can carry to L2).
BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class KeyRules:
    """The checks of :mod:`cache_core.key_rules` under one config's ``limits``."""

    def __init__(self, limits: LimitsSection) -> None:
        self.limits = limits

    def check_key(self, key: object) -> str:
        if not isinstance(key, str) or not key:
            raise InvalidKeyError("key must be a non-empty string")
        if len(key) > self.limits.max_key_length:
            raise InvalidKeyError(
                f"key is {len(key)} characters long; the limit is {self.limits.max_key_length}"
            )
        if BAD_KEY_CHARS.search(key):
            raise InvalidKeyError("key must not contain control characters or lone surrogates")
        return key

    def check_keys(self, keys: Sequence[object]) -> None:
        """:meth:`check_key` for each of ``keys``, in one pass over the valid ones."""
        if (
            all(type(key) is str for key in keys)
            and all(keys)
            and max(map(len, keys), default=0) <= self.limits.max_key_length  # type: ignore[arg-type]
            and not BAD_KEY_CHARS.search("".join(keys))  # type: ignore[arg-type]
        ):
            return
        for key in keys:  # one is bad: say which, as one check would
            self.check_key(key)

    def check_pattern(self, pattern: object) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidKeyError("pattern must be a non-empty string")
        if len(pattern) > self.limits.max_key_length:
            raise InvalidKeyError(
                f"pattern is {len(pattern)} characters long; "
                f"the limit is {self.limits.max_key_length}"
            )
        if BAD_KEY_CHARS.search(pattern):
            raise InvalidKeyError("pattern must not contain control characters or lone surrogates")
        return pattern

    def check_caller_pattern(self, pattern: object) -> str:
        """A pattern from a caller: bounded in length, wildcards and classes, so a hostile
        one is refused before it reaches L2."""
        checked = self.check_pattern(pattern)
        limits = self.limits
        if len(checked) > limits.max_pattern_length:
            raise InvalidKeyError(
                f"pattern is {len(checked)} characters long; "
                f"the limit is {limits.max_pattern_length}"
            )
        wildcards, has_class = glob_features(checked)
        if wildcards > limits.max_pattern_wildcards:
            raise InvalidKeyError(
                f"pattern has {wildcards} wildcards; the limit is {limits.max_pattern_wildcards}"
            )
        if has_class and not limits.allow_pattern_classes:
            raise InvalidKeyError(
                "pattern uses a [...] class; set limits.allow_pattern_classes to allow it"
            )
        return checked

    def encode(self, value: Any) -> bytes:
        data = serialization.encode(value)
        if len(data) > self.limits.max_value_bytes:
            raise InvalidValueError(
                f"value is {len(data)} bytes as JSON; the limit is {self.limits.max_value_bytes}"
            )
        return data

    def check_tags(self, tags: Sequence[str]) -> None:
        """The tags one write carries: valid names, at most ``limits.max_tags``."""
        self.check_names(tags, "tag", self.limits.max_tags, "limits.max_tags")

    def check_names(
        self, names: Sequence[str], what: str, limit: int | None = None, limit_name: str = ""
    ) -> None:
        """Valid names, at most ``limit`` (``limits.max_batch_size`` unless given)."""
        if isinstance(names, str):
            raise InvalidValueError(f"{what}s must be a list of strings, not one string")
        if limit is None:
            limit, limit_name = self.limits.max_batch_size, "limits.max_batch_size"
        if len(names) > limit:
            raise InvalidValueError(
                f"{len(names)} {what}s in one call; the limit is {limit_name} ({limit})"
            )
        longest = self.limits.max_key_length
        for name in names:
            if not isinstance(name, str) or not name or BAD_KEY_CHARS.search(name):
                raise InvalidValueError(
                    f"each {what} must be a non-empty string without control characters"
                )
            if len(name) > longest:
                # A tag names an index key: bounded like the keys it indexes.
                raise InvalidValueError(
                    f"a {what} is {len(name)} characters long; the limit is "
                    f"limits.max_key_length ({longest})"
                )

    def check_dependencies(self, dependencies: Sequence[str]) -> None:
        """The dependencies one write carries: keys, at most ``limits.max_dependencies``."""
        if isinstance(dependencies, str):
            raise InvalidValueError("dependencies must be a list of keys, not one string")
        if len(dependencies) > self.limits.max_dependencies:
            raise InvalidValueError(
                f"{len(dependencies)} dependencies on one write; the limit is "
                f"limits.max_dependencies ({self.limits.max_dependencies})"
            )
        for dependency in dependencies:
            self.check_key(dependency)

    def check_batch(self, size: int, what: str) -> None:
        """A batch of ``size`` keys or items, at most ``limits.max_batch_size``."""
        if size > self.limits.max_batch_size:
            raise InvalidValueError(
                f"{size} {what} in one batch; the limit is {self.limits.max_batch_size}"
            )

"""Registers this package's plugins with the Caching Agent.

Nothing is registered yet: the redis plugins land with their own issue. Until then the
package only reserves its entry point, so installing the extra already wires it in.
"""

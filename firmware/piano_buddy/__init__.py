"""Piano Buddy: an eight-button AI duet instrument.

Importing the package touches no hardware and loads no model; the parts are built by
:mod:`piano_buddy.app` from a :class:`piano_buddy.config.Config`.
"""

__version__ = "0.1.0"

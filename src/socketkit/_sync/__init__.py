"""The synchronous stream API: ``connect``, ``serve``, ``Stream``, ``Server``."""

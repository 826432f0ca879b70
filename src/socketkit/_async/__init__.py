"""The asyncio stream API (public as ``socketkit.aio``)."""

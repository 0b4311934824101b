"""The results page served by `stembot web`: listen to, compare and download a job's stems in a browser."""

from bot.web_pages.routes import ResultsPages

__all__ = ["ResultsPages"]

"""Announcement distribution service: releases in a folder become feeds, pages and bulletins."""

__version__ = "0.1.0"
